"""TensorRT engines from an export folder: ``s3pot build``.

=================  ========================================================================
module             job
=================  ========================================================================
:mod:`.lazy`       import ``tensorrt`` on demand, with the install command when it is missing
:mod:`.recipe`     what to build for TensorRT 10 (weak typing) and 11 (strong typing only)
:mod:`.device`     the GPU's name and compute capability (cuda-python, else nvidia-smi)
:mod:`.timing_cache`  the timing cache kept between builds, keyed by GPU and TensorRT version
:mod:`.builder`    parse, configure, profile, build; engine + sidecar written atomically
:mod:`.commands`   the equivalent ``trtexec`` and ``polygraphy convert`` command lines
=================  ========================================================================

Importing this package needs neither TensorRT, nor a GPU, nor torch; TensorRT is imported by the
functions that call it.
"""
from __future__ import annotations

from .builder import StageResult, build_engines, engine_dir, engine_path
from .commands import commands_for, format_commands
from s3pot.core.gpu import GpuInfo, query_gpu
from .lazy import INSTALL_HINT, import_tensorrt, major_of, tensorrt_major
from .recipe import Recipe, recipe_for

__all__ = ["GpuInfo", "INSTALL_HINT", "Recipe", "StageResult", "build_engines", "commands_for",
           "engine_dir", "engine_path", "format_commands", "import_tensorrt", "major_of",
           "query_gpu", "recipe_for", "tensorrt_major"]
