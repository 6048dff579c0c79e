"""Install s3pot-rt: the repository's top-level folders become one import namespace, ``s3pot``.

``core/ export/ runtime/ kernels/ models/ benchmarks/ training/ frontend/`` install as
``s3pot.core``, ``s3pot.export``, ``s3pot.runtime``, ``s3pot.kernels``, ``s3pot.models``,
``s3pot.benchmarks`` (with the sample face ``s3pot bench`` runs on), ``s3pot.training`` and
``s3pot.frontend`` (with MediaPipe's face models); ``s3pot`` itself is a namespace package, so
nothing generic lands at the top of site-packages.
"""
from setuptools import find_packages, setup

FOLDERS = ("core", "export", "runtime", "kernels", "models", "benchmarks", "training", "frontend")

setup(
    name="s3pot-rt",
    version="0.1.0",
    description="Deployment runtime for S3POT face-occlusion segmentation (PyTorch, ONNX Runtime, TensorRT)",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=[f"s3pot.{folder}{'.' + sub if sub else ''}"
              for folder in FOLDERS for sub in ["", *find_packages(folder)]],
    package_dir={f"s3pot.{folder}": folder for folder in FOLDERS},
    package_data={"s3pot.benchmarks": ["data/*.jpg", "data/*.png", "data/*.npy", "data/*.md"],
                  "s3pot.export": ["calibration/*.jpg", "calibration/*.md"],
                  "s3pot.frontend": ["models/*.tflite", "models/*.md", "models/*.txt"]},
    # The base install runs exported graphs (s3pot segment --backend onnxruntime --model DIR):
    # no torch, no onnx. Each extra adds one job's packages.
    install_requires=[
        "numpy>=1.24",
        "opencv-python-headless>=5.0",  # no GUI libraries needed in a slim container; 4.x decoded
                                        # truncated JPEGs with only a warning
        "onnxruntime-gpu>=1.18",  # falls back to the CPU provider where there is no GPU
        "numba>=0.59",  # prompt-selection kernels (CPU, and CUDA with numba-cuda on a GPU)
        "tqdm>=4.60",
    ],
    extras_require={
        # The PyTorch reference backend, the models, export (s3pot export) and training.
        # torch==2.13.0 is what these machines install without a GPU wheel download; any 2.x with
        # scaled_dot_product_attention works.
        "torch": ["torch>=2.1", "onnx>=1.16", "onnxsim>=0.4.36"],
        # TensorRT engines: s3pot build and --backend tensorrt (an NVIDIA driver is needed to
        # install and run them). cuda-python gives the runtime its CUDA graphs. numba-cuda (0.30.4,
        # the newest) compiles no kernel under numpy 2.5, which removed np.row_stack.
        "gpu": ["tensorrt>=10", "polygraphy>=0.49", "cuda-python>=12", "numba-cuda>=0.10",
                "numpy<2.5"],
        # Parity oracle and test tools; segment-anything is imported without its torchvision-bound
        # package __init__ (see benchmarks/official_sam.py).
        "test": ["pytest>=8", "pytest-xdist>=3", "segment-anything==1.0", "scikit-image>=0.22",
                 "polygraphy>=0.49"],
        # Training (s3pot train, s3pot fit-image) beside the torch extra: the training curve.
        "train": ["matplotlib>=3.7"],
        # The front end (s3pot prepare, s3pot segment --video): MediaPipe's face models, shipped in
        # s3pot.frontend, run by Google's LiteRT.
        "face": ["ai-edge-litert>=1.2"],
        # OpenVINO runs the exported graphs on the CPU, FP32, BF16 or with the INT8 encoder
        # (--backend openvino); NNCF makes that encoder (s3pot quantize).
        "openvino": ["openvino>=2025.0"],
        "quantize": ["openvino>=2025.0", "nncf>=3.0"],
        # Benchmarks: charts, OpenVINO beside ONNX Runtime, onnxslim beside onnxsim, and the
        # official segment-anything modules, which the authors' code (the baseline) runs, and
        # NNCF for the INT8 encoder.
        "bench": ["matplotlib>=3.7", "openvino>=2025.0", "onnxslim>=0.1.80",
                  "segment-anything==1.0", "nncf>=3.0"],
    },
    entry_points={"console_scripts": ["s3pot = s3pot.runtime.cli:main"]},
)
