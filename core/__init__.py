"""What every layer of s3pot shares, importing nothing heavier than NumPy: SPEC's constants
(:mod:`.spec`), the project's exceptions (:mod:`.errors`), atomic file and folder writes
(:mod:`.atomic`), the stage IO table (:mod:`.io_table`), the export manifest (:mod:`.manifest`), the
engine sidecar and engine paths (:mod:`.sidecar`), the GPU query (:mod:`.gpu`) and TensorRT imported
on demand (:mod:`.tensorrt`).

Models, kernels, export, runtime and benchmarks all import from here; nothing here imports them.
"""
