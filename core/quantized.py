"""The INT8 encoder of an export folder: where it lives and the record that vouches for it.

``s3pot quantize`` (:mod:`s3pot.export.openvino_int8`) writes OpenVINO's quantized encoder beside
the graphs it was made from, with a record, and the OpenVINO backend checks the record against
the export's manifest before it compiles anything::

    DIR/openvino/int8/encoder.xml      the quantized model (OpenVINO IR)
    DIR/openvino/int8/encoder.bin      its weights
    DIR/openvino/int8/encoder.json     the record

Record schema (``format`` ``s3pot-openvino-int8``, ``version`` 1)::

    stage                       "encoder"
    source_file, source_sha256  the FP32 graph quantized (as the export manifest records it)
    files                       {"encoder.xml": sha256, "encoder.bin": sha256}
    openvino_version, nncf_version
    method                      NNCF's settings (model type, preset, subset size, ...)
    calibration                 [{"name", "sha256"}] of the images that set the ranges
    check                       {"image", "rel_l2", "tolerance"}: the quantized encoder against
                                the FP32 graph on one image, in OpenVINO
    seconds, created, s3pot_version

Plain Python only: the runtime reads it on machines without NNCF.
"""
from __future__ import annotations

import json
from pathlib import Path

from .atomic import write_bytes_atomic
from .errors import ExportError
from .io_table import ENCODER
from .manifest import graph_entry, read_document, sha256_file

RECORD_FORMAT = "s3pot-openvino-int8"
RECORD_VERSION = 1
#: Where the INT8 encoder lives inside an export folder.
INT8_FOLDER = Path("openvino") / "int8"
STAGE = ENCODER.name
REQUIRED = ("stage", "source_file", "source_sha256", "files", "openvino_version", "nncf_version",
            "method", "calibration", "check", "created")
#: The quantized encoder's largest accepted relative L2 error against the FP32 graph (one image).
INT8_TOLERANCE = 0.05


def int8_dir(folder) -> Path:
    return Path(folder) / INT8_FOLDER


def int8_paths(folder) -> dict[str, Path]:
    """``xml``, ``bin`` and ``record`` paths of the INT8 encoder of export folder ``folder``."""
    base = int8_dir(folder)
    return {"xml": base / f"{STAGE}.xml", "bin": base / f"{STAGE}.bin",
            "record": base / f"{STAGE}.json"}


def int8_present(folder) -> bool:
    """Whether ``folder`` has an INT8 encoder (its record and files; not yet checked)."""
    return all(path.is_file() for path in int8_paths(folder).values())


def write_record(folder, record: dict) -> Path:
    data = {"format": RECORD_FORMAT, "version": RECORD_VERSION, **record}
    return write_bytes_atomic(int8_paths(folder)["record"], (json.dumps(data, indent=1) + "\n").encode())


def check_int8(folder, manifest: dict) -> dict:
    """The record of ``folder``'s INT8 encoder after checking that it was quantized from this
    folder's FP32 encoder and that its files are the ones quantized. Every refusal names the file,
    what was expected and what came, and says how to make it again."""
    folder = Path(folder)
    paths = int8_paths(folder)
    hint = f"quantize it again with `s3pot quantize --model {folder}`"
    if not paths["record"].is_file():
        raise ExportError(f"export folder '{folder}': expected an INT8 encoder "
                          f"({INT8_FOLDER / paths['record'].name}), got none: make it with "
                          f"`s3pot quantize --model {folder}`")
    record = read_document(paths["record"], "INT8 record", RECORD_FORMAT, RECORD_VERSION, REQUIRED,
                           hint)
    source = graph_entry(manifest, STAGE, "fp32")
    if record["source_sha256"] != source["sha256"]:
        raise ExportError(f"INT8 record '{paths['record']}': expected it quantized from this "
                          f"folder's {source['file']} (sha256 {source['sha256'][:12]}...), got one "
                          f"from sha256 {str(record['source_sha256'])[:12]}... (exported again "
                          f"since?): {hint}")
    for name, digest in record["files"].items():
        path = paths["record"].parent / name
        if not path.is_file():
            raise ExportError(f"INT8 encoder '{path}': expected the file its record lists, got "
                              f"none: {hint}")
        if sha256_file(path) != digest:
            raise ExportError(f"INT8 encoder '{path}': expected sha256 {digest[:12]}... as "
                              "recorded, got another (changed since it was quantized): " + hint)
    return record
