"""The export manifest: what an export folder holds and how it was made.

``s3pot export`` writes ``manifest.json`` beside the four ONNX graphs; ``s3pot build`` and the
runtime backends read it, so that variant, normalisation and face set travel with the graphs and a
missing or altered file is refused before anything runs. Schema (``format`` ``s3pot-export``,
``version`` 1)::

    variant, normalization, face_set          what the graphs compute and need as input
    weights: {kind, seed | checkpoint{name, sha256}, adapter{name, sha256} | null}
    opset, ir_version                         of every graph
    io                                        the stage IO table (s3pot.core.io_table)
    graphs: {stage: {precision: {file, sha256, bytes, nodes, external_data: [..]}}}
    checks: {stage: {precision: {rel_l2, tolerance, ...}}}
    tools: {package: version}
    export_seconds: {stage: seconds}
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .atomic import write_bytes_atomic
from .errors import ExportError
from .io_table import STAGES, table_json

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "s3pot-export"
MANIFEST_VERSION = 1
PRECISIONS = ("fp32", "fp16")
REQUIRED_FIELDS = ("variant", "normalization", "face_set", "weights", "opset", "ir_version", "io",
                   "graphs")


def sha256_file(path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_document(path: Path, what: str, fmt: str, version: int, required, hint: str = "") -> dict:
    """A JSON document of s3pot's (manifest, engine sidecar): parsed, its ``format``, ``version``
    and ``required`` fields checked; every refusal names the file and ends with ``hint``."""
    hint = f": {hint}" if hint else ""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ExportError(f"{what} '{path}': expected JSON, could not read it ({exc}){hint}") from None
    if not isinstance(data, dict) or data.get("format") != fmt:
        got = data.get("format", "no format field") if isinstance(data, dict) else type(data).__name__
        raise ExportError(f"{what} '{path}': expected format {fmt!r}, got {got!r}{hint}")
    if data.get("version") != version:
        raise ExportError(f"{what} '{path}': expected version {version}, "
                          f"got {data.get('version')!r}{hint}")
    missing = [name for name in required if name not in data]
    if missing:
        raise ExportError(f"{what} '{path}': expected fields {list(required)}, missing {missing}{hint}")
    return data


def write_manifest(folder, manifest: dict) -> Path:
    """Write ``manifest`` (format and version added) as ``folder/manifest.json``, atomically."""
    data = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, **manifest}
    return write_bytes_atomic(Path(folder) / MANIFEST_NAME,
                              (json.dumps(data, indent=1, sort_keys=False) + "\n").encode())


def read_manifest(folder) -> dict:
    """The manifest of export folder ``folder``, its format, version and fields checked."""
    folder = Path(folder)
    path = folder / MANIFEST_NAME
    if not folder.is_dir():
        raise ExportError(f"export folder '{folder}': expected a folder written by `s3pot export`, "
                          f"got {'a file' if folder.exists() else 'no such folder'}")
    if not path.is_file():
        raise ExportError(f"export folder '{folder}': expected {MANIFEST_NAME} (written by "
                          "`s3pot export`), got none")
    data = read_document(path, "manifest", MANIFEST_FORMAT, MANIFEST_VERSION, REQUIRED_FIELDS)
    if data["io"] != table_json():
        raise ExportError(f"manifest '{path}': its stage IO table differs from this s3pot's "
                          "(exported by another version); export again")
    return data


def graph_entry(manifest: dict, stage: str, precision: str = "fp32") -> dict:
    """The manifest's record of one graph, or a clear error naming what the folder lacks."""
    if stage not in STAGES:
        raise ExportError(f"stage {stage!r}: expected one of {', '.join(STAGES)}")
    if stage not in manifest["graphs"]:
        raise ExportError(f"export: expected a graph of stage {stage!r}, got only stages "
                          f"{sorted(manifest['graphs']) or 'none'} (exported with --stages; "
                          "export all four)")
    graphs = manifest["graphs"][stage]
    if precision not in graphs:
        raise ExportError(f"export: expected a {precision} graph of stage {stage!r}, got only "
                          f"{sorted(graphs) or 'none'} (export with --precision {precision})")
    return graphs[precision]


def verify_graph(folder, manifest: dict, stage: str, precision: str = "fp32") -> Path:
    """Path of one graph after checking that it and its external data exist and hash as recorded."""
    folder = Path(folder)
    entry = graph_entry(manifest, stage, precision)
    for name, digest in [(entry["file"], entry["sha256"]),
                         *[(d["file"], d["sha256"]) for d in entry.get("external_data", [])]]:
        path = folder / name
        if not path.is_file():
            raise ExportError(f"export folder '{folder}': expected {name} (listed in "
                              f"{MANIFEST_NAME}), got no such file")
        actual = sha256_file(path)
        if actual != digest:
            raise ExportError(f"'{path}': expected sha256 {digest[:16]}... (recorded in "
                              f"{MANIFEST_NAME}), got {actual[:16]}...; the file was changed after "
                              "export, export again")
    return folder / entry["file"]
