"""Finding samples on disk in the two layouts SPEC.md names, and reading their ground truth.

- **flat** (the authors' README): one folder holding ``NAME.png|jpg|jpeg``, ``NAME_ref.png``,
  ``NAME_parsing_mask.npy`` and optionally ``NAME_gt.png``.
- **folders** (the authors' dataset): one folder per sample (numbered) holding one ``.jpg`` (the
  image), one ``Reference*.png``, one ``*parsing_mask.npy`` and optionally one LabelMe /
  X-AnyLabeling ``.json`` whose shapes outline the occlusion.

A sample with a missing part is an error, listing every such sample: skipping it silently would
drop it from an evaluation unnoticed.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from s3pot.core.errors import S3potInputError

from .io import PathLike, load_mask
from .preprocess import resize_nearest

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
PARSING_SUFFIX = "_parsing_mask.npy"  # flat layout: NAME + this
FOLDER_PARSING_SUFFIX = "parsing_mask.npy"  # folders layout: any name ending so
REFERENCE_SUFFIX = "_ref"
GT_SUFFIX = "_gt"
#: Sub-pixel precision of polygon rasterisation (cv2.fillPoly ``shift``): 1/16 pixel.
_POLY_SHIFT = 4


@dataclass(frozen=True)
class Sample:
    """The files of one sample. ``gt``: a mask image (nonzero = occlusion), a LabelMe ``.json``,
    or ``None`` when the sample has no ground truth."""

    name: str
    image: Path
    reference: Path
    parsing: Path
    gt: Path | None = None


def natural_key(text: str) -> list:
    """Sort key ordering embedded numbers numerically: ``"2" < "10"``, ``"img2" < "img10"``."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part.lower())
            for part in re.split(r"(\d+)", text) if part]


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def _stem_base(path: Path, marker: str) -> str | None:
    """``NAME`` when ``path``'s stem is ``NAME + marker``, else None."""
    stem = path.stem
    return stem[:-len(marker)] if stem.endswith(marker) and len(stem) > len(marker) else None


def _flat_samples(root: Path) -> tuple[list[Sample], list[str]]:
    """Samples of the flat layout in ``root``, and a description of each incomplete one; none of
    either when ``root`` holds no reference or parsing file."""
    parts: dict[str, dict[str, Path]] = {}
    for path in root.iterdir():
        if path.name.startswith(".") or not path.is_file():
            continue
        if path.name.endswith(PARSING_SUFFIX) and len(path.name) > len(PARSING_SUFFIX):
            parts.setdefault(path.name[:-len(PARSING_SUFFIX)], {})["parsing"] = path
        elif _is_image(path):
            for role, marker in (("reference", REFERENCE_SUFFIX), ("gt", GT_SUFFIX)):
                base = _stem_base(path, marker)
                if base is not None:
                    parts.setdefault(base, {})[role] = path
                    break
            else:
                parts.setdefault(path.stem, {})["image"] = path
    if not any("parsing" in found or "reference" in found for found in parts.values()):
        return [], []  # loose images alone (a preview, a README figure) are not this layout
    samples, incomplete = [], []
    for name, found in parts.items():
        missing = [f"{name}{expected}" for role, expected in (
            ("image", ".png|.jpg|.jpeg"), ("reference", f"{REFERENCE_SUFFIX}.png"),
            ("parsing", PARSING_SUFFIX)) if role not in found]
        if missing:
            incomplete.append(f"{name} (missing {', '.join(missing)})")
        else:
            samples.append(Sample(name, found["image"], found["reference"], found["parsing"], found.get("gt")))
    return samples, incomplete


def _folder_sample(folder: Path) -> tuple[Sample | None, str | None]:
    """The sample of one folder of the folders layout, or a description of what is wrong with it;
    ``(None, None)`` for a folder holding no image, reference or parsing file (not a sample)."""
    files = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
    roles = {
        "image (*.jpg)": [p for p in files if p.suffix.lower() in (".jpg", ".jpeg")],
        "reference (Reference*.png)": [p for p in files if p.name.lower().startswith("reference")
                                       and p.suffix.lower() == ".png"],
        f"parsing (*{FOLDER_PARSING_SUFFIX})": [p for p in files if p.name.endswith(FOLDER_PARSING_SUFFIX)],
        "ground truth (*.json)": [p for p in files if p.suffix.lower() == ".json"],
    }
    found = list(roles.values())
    if not any(found[:3]):
        return None, None
    problems = []
    for role, paths in roles.items():
        if len(paths) > 1:
            problems.append(f"{len(paths)} files for the {role}: {', '.join(sorted(p.name for p in paths))}")
        elif not paths and not role.startswith("ground truth"):
            problems.append(f"missing {role}")
    if problems:
        return None, f"{folder.name} ({'; '.join(problems)})"
    image, reference, parsing, gt = (paths[0] if paths else None for paths in found)
    return Sample(folder.name, image, reference, parsing, gt), None


def find_samples(root: PathLike) -> list[Sample]:
    """Every sample under ``root``, in natural order of name; the layout is detected.

    Files directly in ``root`` are read as the flat layout, sub-folders holding an image, a
    ``Reference*.png`` or a parsing ``.npy`` as the folders layout. Raises
    :class:`S3potInputError` when ``root`` holds neither, or listing every incomplete sample.
    """
    root = Path(root)
    if not root.is_dir():
        raise S3potInputError(f"dataset '{root}': expected a folder, got "
                              f"{'a file' if root.exists() else 'no such folder'}")
    samples, incomplete = _flat_samples(root)
    for folder in root.iterdir():
        if not folder.is_dir() or folder.name.startswith("."):
            continue
        sample, problem = _folder_sample(folder)
        if sample is not None:
            samples.append(sample)
        elif problem is not None:
            incomplete.append(problem)
    if incomplete:
        raise S3potInputError(
            f"dataset '{root}': expected complete samples, got {len(incomplete)} incomplete: "
            + "; ".join(sorted(incomplete, key=natural_key)))
    if not samples:
        raise S3potInputError(
            f"dataset '{root}': expected NAME.png|jpg + NAME_ref.png + NAME{PARSING_SUFFIX} files, or "
            f"one folder per sample holding a .jpg, a Reference*.png and a *{FOLDER_PARSING_SUFFIX}; "
            "found neither")
    samples.sort(key=lambda s: natural_key(s.name))
    logger.info("found %d samples in %s", len(samples), root)
    return samples


def _scaled_points(points: np.ndarray, source: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """``N x 2`` ``(x, y)`` points from a ``source`` = ``(H, W)`` image to one of ``size``, half-pixel."""
    scale = np.array([size[1] / source[1], size[0] / source[0]])
    return (points + 0.5) * scale - 0.5


def _shape_polygon(shape: dict, where: str) -> np.ndarray | None:
    """A LabelMe shape's outline as ``N x 2`` ``(x, y)`` float points, or None for an area-less shape."""
    kind = shape.get("shape_type") or "polygon"  # LabelMe writes null for polygons in old files
    try:
        points = np.asarray(shape["points"], dtype=np.float64).reshape(-1, 2)
    except (KeyError, TypeError, ValueError) as err:
        raise S3potInputError(f"{where}: expected 'points' as a list of [x, y], got {shape.get('points')!r}") from err
    if kind in ("polygon", "rotation") and len(points) >= 3:
        return points
    if kind == "rectangle" and len(points) in (2, 4):
        (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
        return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    if kind == "circle" and len(points) == 2:
        centre, edge = points
        radius = float(np.hypot(*(edge - centre)))
        angles = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        return centre + radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    if kind in ("point", "line", "linestrip", "polygon", "rotation"):
        logger.warning("%s: ignoring a %s with %d points (no area)", where, kind, len(points))
        return None
    raise S3potInputError(
        f"{where}: expected shape_type polygon, rectangle, rotation or circle, got {kind!r} "
        f"with {len(points)} points")


def load_labelme(path: PathLike, size: tuple[int, int] | None = None) -> np.ndarray:
    """Rasterise every area shape of a LabelMe / X-AnyLabeling ``.json`` (whatever its label) as an
    ``H x W`` bool occlusion mask.

    ``size`` = ``(H, W)``: the mask's size; points are scaled from the file's
    ``imageHeight`` x ``imageWidth`` when those differ. ``None``: the file's own size.
    """
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise S3potInputError(f"ground truth '{path}': expected a LabelMe JSON file, got {err}") from err
    if not isinstance(document, dict) or not isinstance(document.get("shapes"), list):
        raise S3potInputError(f"ground truth '{path}': expected a LabelMe JSON object with a 'shapes' list")
    try:
        source = (int(document["imageHeight"]), int(document["imageWidth"]))
    except (KeyError, TypeError, ValueError):
        source = None
    if size is None and source is None:
        raise S3potInputError(f"ground truth '{path}': expected imageHeight and imageWidth, got none "
                              "(pass the image size)")
    size = tuple(size) if size is not None else source
    mask = np.zeros(size, np.uint8)
    for index, shape in enumerate(document["shapes"]):
        if not isinstance(shape, dict):
            raise S3potInputError(f"ground truth '{path}' shape {index}: expected an object, got {shape!r}")
        polygon = _shape_polygon(shape, f"ground truth '{path}' shape {index}")
        if polygon is None:
            continue
        if source is not None and source != size:
            polygon = _scaled_points(polygon, source, size)
        fixed = np.rint(polygon * (1 << _POLY_SHIFT)).astype(np.int32)  # cv2 wants fixed-point ints
        cv2.fillPoly(mask, [fixed], 1, lineType=cv2.LINE_8, shift=_POLY_SHIFT)
    return mask.astype(bool)


def load_ground_truth(sample: Sample, size: tuple[int, int] | None = None) -> np.ndarray | None:
    """The sample's ground-truth occlusion as ``H x W`` bool at ``size`` = ``(H, W)`` (the image's
    size; ``None``: as stored), or ``None`` when the sample has none.

    A mask image of another size is resized by nearest neighbour, with a warning.
    """
    if sample.gt is None:
        return None
    if sample.gt.suffix.lower() == ".json":
        return load_labelme(sample.gt, size)
    mask = load_mask(sample.gt)
    if size is not None and mask.shape != tuple(size):
        logger.warning("ground truth '%s' is %s, the image %s: resizing it (nearest)",
                       sample.gt, mask.shape, tuple(size))
        mask = resize_nearest(mask, size)
    return mask
