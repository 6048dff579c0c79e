"""Quantize an export folder's encoder to INT8 for OpenVINO (NNCF post-training quantization).

Reads DIR/manifest.json and DIR/encoder.onnx (written by `s3pot export`) and writes
DIR/openvino/int8/encoder.xml and .bin (OpenVINO IR) with encoder.json: the graph it was made
from, NNCF's settings, the calibration faces and its error against the FP32 graph, which must stay
within 5% (relative L2) or nothing is written. `s3pot segment --backend openvino --precision int8`
runs it, the other stages in BF16 (FP32 on CPUs without BF16).

Calibration: a few aligned face crops like the ones you will segment (--calibration), or the three
public-domain faces shipped with s3pot. ViT-B takes about 60 s on 2 cores with three faces. The
INT8 encoder pays on CPUs with VNNI or AMX. SAM's neck stays in floating point; SmoothQuant is off
unless --smooth-quant is given. Needs openvino and nncf (in the bench extra).
"""
from __future__ import annotations

import sys
from pathlib import Path


def add_arguments(parser) -> None:
    parser.add_argument("--model", type=Path, required=True, metavar="DIR",
                        help="export folder written by `s3pot export`")
    parser.add_argument("--calibration", type=Path, nargs="+", metavar="IMAGE",
                        help="face images that set the activation ranges (default: the three "
                             "faces in s3pot/export/calibration/)")
    parser.add_argument("--smooth-quant", type=float, metavar="ALPHA",
                        help="SmoothQuant's alpha for the matrix products (default: off; measured "
                             "worse on random weights, may pay on a real checkpoint)")


def run(args) -> int:
    from s3pot.export.openvino_int8 import quantize_encoder
    from s3pot.runtime.io import check_file

    for path in args.calibration or ():
        check_file(path, "--calibration image")
    record = quantize_encoder(args.model, calibration=args.calibration,
                              smooth_quant=args.smooth_quant, say=lambda message: print(message, file=sys.stderr, flush=True))
    print(f"INT8 encoder written to {args.model / 'openvino' / 'int8'} (relative L2 "
          f"{record['check']['rel_l2']:.2e} against FP32; OpenVINO {record['openvino_version']}, "
          f"NNCF {record['nncf_version']})")
    return 0
