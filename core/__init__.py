"""What every layer of s3pot shares, importing nothing heavier than NumPy: SPEC's constants
(:mod:`.spec`), the project's exceptions (:mod:`.errors`), atomic file and folder writes
(:mod:`.atomic`), the stage IO table (:mod:`.io_table`) and the export manifest (:mod:`.manifest`).

Models, kernels, export, runtime and benchmarks all import from here; nothing here imports them.
"""
