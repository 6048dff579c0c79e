"""TensorRT engines from an export folder: ``s3pot build``.

=================  ========================================================================
module             job
=================  ========================================================================
:mod:`.recipe`     what to build for TensorRT 10 (weak typing) and 11 (strong typing only)
:mod:`.timing_cache`  the timing cache kept between builds, keyed by GPU and TensorRT version
:mod:`.builder`    parse, configure, profile, build; engine + sidecar written atomically
:mod:`.commands`   the equivalent ``trtexec`` and ``polygraphy convert`` command lines
=================  ========================================================================

Shared with the runtime and re-exported here: :mod:`s3pot.core.tensorrt` (``tensorrt`` imported on
demand, with the install command when it is missing), :mod:`s3pot.core.gpu` (the GPU's name and
compute capability) and :mod:`s3pot.core.sidecar` (where engines go, what their sidecars say).

Importing this package needs neither TensorRT, nor a GPU, nor torch; TensorRT is imported by the
functions that call it.
"""
from __future__ import annotations

from s3pot.core.gpu import GpuInfo, query_gpu
from s3pot.core.sidecar import engine_dir, engine_path
from s3pot.core.tensorrt import INSTALL_HINT, import_tensorrt, major_of, tensorrt_major

from .builder import StageResult, build_engines
from .commands import commands_for, format_commands
from .recipe import Recipe, recipe_for

__all__ = ["GpuInfo", "INSTALL_HINT", "Recipe", "StageResult", "build_engines", "commands_for",
           "engine_dir", "engine_path", "format_commands", "import_tensorrt", "major_of",
           "query_gpu", "recipe_for", "tensorrt_major"]
