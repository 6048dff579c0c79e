"""Official SAM / MobileSAM checkpoints and S3POT adapter files.

Official checkpoints are plain state dicts named by SAM's parameter names
(``image_encoder.*``, ``prompt_encoder.*``, ``mask_decoder.*``); they load into
:class:`~.s3pot.S3POT` by name, after which the FE block is re-initialised from the decoder.

An adapter holds what S3POT trains (the SA layer, optionally the FE block) and records the
variant, pixel normalisation and face set it was trained with; it refuses to load into another
variant, and the runtime runs it with its own normalisation and face set.
"""
from __future__ import annotations

import io
import json
import logging
import pickle
import re
from pathlib import Path

import torch

from s3pot.core.atomic import write_bytes_atomic
from s3pot.core.errors import CheckpointError, S3potInputError
from s3pot.core.spec import NORMALIZATIONS, resolve_face_set

log = logging.getLogger(__name__)

#: Terminal colour codes, which torch puts into some of its messages.
_ANSI = re.compile(r"\x1b\[[0-9;]*m")

ADAPTER_FORMAT = "s3pot-adapter"
ADAPTER_VERSION = 1


def read_state_dict(path, what: str = "checkpoint") -> dict:
    """``torch.load(weights_only=True)`` with one clear error per failure mode."""
    path = Path(path)
    if not path.is_file():
        raise S3potInputError(f"{what} '{path}': expected an existing file, got "
                              f"{'a directory' if path.is_dir() else 'no such file'}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # what weights_only=True raises for pickled Python objects
        raise CheckpointError(
            f"{what} '{path}': expected a state dict of tensors, got a file holding pickled "
            "Python objects, which is not loaded (loading it would run code from the file)") from None
    except Exception as exc:  # torch raises several types for corrupt files
        detail = _ANSI.sub("", str(exc).splitlines()[0]) if str(exc) else "no detail"
        raise CheckpointError(
            f"{what} '{path}': expected a PyTorch state dict saved with torch.save, could not read "
            f"it ({type(exc).__name__}: {detail.strip()})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{what} '{path}': expected a dict, got {type(data).__name__}")
    return data


def guess_variant(state_dict: dict) -> str | None:
    """Name the official variant a SAM state dict belongs to, from its encoder's shapes."""
    from .registry import VARIANTS

    pos = state_dict.get("image_encoder.pos_embed")
    if pos is not None and hasattr(pos, "shape"):
        depth = len({k.split(".")[2] for k in state_dict if k.startswith("image_encoder.blocks.")})
        for v in VARIANTS.values():
            if v.encoder == "vit" and v.encoder_args["embed_dim"] == pos.shape[-1] \
                    and v.encoder_args["depth"] == depth:
                return v.name
        return f"a ViT encoder of width {pos.shape[-1]} and depth {depth}"
    if any(k.startswith("image_encoder.layers.") for k in state_dict):
        return "mobile_sam" if "image_encoder.layers.3.blocks.1.attn.qkv.weight" in state_dict \
            else "a TinyViT encoder"
    return None


def load_sam_checkpoint(model, path, *, variant: str) -> None:
    """Load an official SAM (or MobileSAM) checkpoint into ``model``'s SAM parts, strictly."""
    state = read_state_dict(path, "checkpoint")
    if any(k.startswith("model.") for k in state) and not any(k.startswith("image_encoder.") for k in state):
        state = {k[len("model."):]: v for k, v in state.items()}
    expected = {f"{prefix}.{k}": v for prefix, module in model.sam_modules().items()
                for k, v in module.state_dict().items()}
    _check_keys(state, expected, path, variant)
    for prefix, module in model.sam_modules().items():
        sub = {k[len(prefix) + 1:]: v for k, v in state.items() if k.startswith(prefix + ".")}
        module.load_state_dict(sub, strict=True)
    model.fe.load_from_mask_decoder(model.mask_decoder)
    log.info("loaded %s checkpoint %s (%d tensors)", variant, path, len(state))


def _check_keys(state: dict, expected: dict, path, variant: str) -> None:
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [(k, tuple(expected[k].shape), tuple(state[k].shape)) for k in expected
             if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(expected[k].shape)]
    if not (missing or unexpected or wrong):
        return
    guess = guess_variant(state)
    hint = f"; it looks like {guess}" if guess and guess != variant else ""
    details = []
    if wrong:
        k, want, got = wrong[0]
        details.append(f"{len(wrong)} tensors of another shape (e.g. {k}: expected {want}, got {got})")
    if missing:
        details.append(f"{len(missing)} missing (e.g. {missing[0]})")
    if unexpected:
        details.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
    raise CheckpointError(f"checkpoint '{path}': expected the {variant} SAM parameters, got "
                          f"{', '.join(details)}{hint}")


def save_adapter(path, model, *, variant: str, normalization: str, face_set, include_fe: bool = False,
                 meta: dict | None = None) -> Path:
    """Write ``model``'s SA (and FE) weights with their training context, atomically.

    ``meta`` (epochs, losses, data, ...) must be JSON-like (str, numbers, bool, None, lists, dicts)
    so that the file loads with ``torch.load(weights_only=True)``.
    """
    path = Path(path)
    if normalization not in NORMALIZATIONS:
        raise S3potInputError(f"adapter normalization: expected one of {sorted(NORMALIZATIONS)}, "
                              f"got {normalization!r}")
    try:
        json.dumps(meta or {}, allow_nan=True)
    except TypeError as exc:
        raise S3potInputError(f"adapter meta: expected JSON-like values, got {exc}") from None
    payload = {
        "format": ADAPTER_FORMAT, "version": ADAPTER_VERSION, "variant": variant,
        "normalization": normalization, "face_set": list(resolve_face_set(face_set)),
        "sa": {k: v.detach().cpu() for k, v in model.sa.state_dict().items()},
        "fe": {k: v.detach().cpu() for k, v in model.fe.state_dict().items()} if include_fe else None,
        "meta": dict(meta or {}),
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return write_bytes_atomic(path, buffer.getvalue())


def read_adapter(path) -> dict:
    """An adapter's payload, its format checked (no weights loaded anywhere)."""
    data = read_state_dict(path, "adapter")
    if data.get("format") != ADAPTER_FORMAT:
        raise CheckpointError(f"adapter '{path}': expected an {ADAPTER_FORMAT} file (format "
                              f"{ADAPTER_FORMAT!r}), got {data.get('format', 'no format field')!r}")
    if data.get("version") != ADAPTER_VERSION:
        raise CheckpointError(f"adapter '{path}': expected version {ADAPTER_VERSION}, "
                              f"got {data.get('version')!r}")
    fields = {
        "variant": isinstance(data.get("variant"), str),
        "normalization": data.get("normalization") in NORMALIZATIONS,
        "face_set": _valid_face_set(data.get("face_set")),
        "sa": isinstance(data.get("sa"), dict),
        "fe": data.get("fe") is None or isinstance(data.get("fe"), dict),
    }
    bad = [name for name, ok in fields.items() if not ok]
    if bad:
        raise CheckpointError(f"adapter '{path}': expected valid fields variant, normalization "
                              f"({'/'.join(NORMALIZATIONS)}), face_set, sa (and optional fe), got "
                              + ", ".join(f"{name}={data.get(name, 'missing')!r}"[:80] for name in bad))
    return data


def _valid_face_set(value) -> bool:
    try:
        resolve_face_set(value)
    except (S3potInputError, TypeError, ValueError):
        return False
    return isinstance(value, (list, tuple))


def load_adapter(model, path, *, variant: str) -> dict:
    """Load an adapter's SA (and FE) weights into ``model``; returns its payload (normalisation,
    face set, meta). Refuses an adapter trained for another variant."""
    data = read_adapter(path)
    if data["variant"] != variant:
        raise CheckpointError(f"adapter '{path}': trained for variant {data['variant']!r}, "
                              f"expected {variant!r} (the model it is loaded into)")
    _load_part(model.sa, data["sa"], path, "sa")
    if data.get("fe") is not None:
        _load_part(model.fe, data["fe"], path, "fe")
    model.trained_context = {"normalization": data["normalization"],
                             "face_set": tuple(data["face_set"]), "source": f"adapter '{path}'"}
    log.info("loaded adapter %s (%s, normalisation %s, face set %s)", path, data["variant"],
             data["normalization"], data["face_set"])
    return data


def _load_part(module, state: dict, path, part: str) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"adapter '{path}': its {part} weights do not fit this model: "
                              f"{str(exc).splitlines()[0]}") from None
