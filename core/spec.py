"""The constants SPEC.md fixes, defined once: token grid, parsing labels, pixel normalisation.

Plain Python and NumPy only, so every layer (models, kernels, runtime, export) can import it.
"""
from __future__ import annotations

import numpy as np

IMAGE_SIZE = 1024  # every image is resized (not cropped) to IMAGE_SIZE x IMAGE_SIZE
PATCH_SIZE = 16  # pixels per token side
GRID_SIZE = IMAGE_SIZE // PATCH_SIZE  # 64 tokens per side
NUM_TOKENS = GRID_SIZE * GRID_SIZE  # 4096, raster order t = y * GRID_SIZE + x
PROMPT_DIM = 256  # SAM's prompt / image-embedding width
LOW_RES_SIZE = 4 * GRID_SIZE  # 256: the mask decoder's logit resolution

#: The authors' 12-class parsing scheme.
PARSING_LABELS = (
    "background", "lip", "eyebrows", "eyes", "hair", "nose", "skin", "ears",
    "below-face", "mouth", "eye-glass", "ear-rings",
)
NUM_PARSING_LABELS = len(PARSING_LABELS)
#: The paper's face set F: lip, eyebrows, eyes, nose, skin, mouth.
PAPER_FACE_SET = (1, 2, 3, 5, 6, 9)
#: The authors' code also counts eye-glass as face.
AUTHORS_FACE_SET = (1, 2, 3, 5, 6, 9, 10)
FACE_SETS = {"paper": PAPER_FACE_SET, "authors": AUTHORS_FACE_SET}

#: Pixel normalisations an encoder / adapter may have been trained with, as (mean, std) on
#: 0..255 RGB: SAM's own, and the authors' 0..1 RGB fed un-normalised.
NORMALIZATIONS = {
    "sam": ((123.675, 116.28, 103.53), (58.395, 57.12, 57.375)),
    "unit": ((0.0, 0.0, 0.0), (255.0, 255.0, 255.0)),
}


def token_centers() -> np.ndarray:
    """Pixel centre ``(x, y)`` of every token in raster order: ``NUM_TOKENS x 2`` float32."""
    ys, xs = np.divmod(np.arange(NUM_TOKENS), GRID_SIZE)
    return np.stack([xs, ys], axis=1).astype(np.float32) * PATCH_SIZE + PATCH_SIZE / 2


def resolve_face_set(face_set) -> tuple[int, ...]:
    """A face set given by name (``"paper"``, ``"authors"``) or as label ids, as a sorted tuple."""
    from .errors import S3potInputError

    if isinstance(face_set, str):
        if face_set not in FACE_SETS:
            raise S3potInputError(
                f"face set {face_set!r}: expected one of {sorted(FACE_SETS)} or label ids, got {face_set!r}")
        return FACE_SETS[face_set]
    labels = tuple(sorted({int(v) for v in face_set}))
    bad = [v for v in labels if not 0 <= v < NUM_PARSING_LABELS]
    if not labels or bad:
        raise S3potInputError(
            f"face set: expected label ids in 0..{NUM_PARSING_LABELS - 1}, got {list(face_set)!r}")
    return labels


def face_token_mask(parsing: np.ndarray, face_set=PAPER_FACE_SET) -> np.ndarray:
    """Token-level face mask ``M_f``: ``GRID_SIZE x GRID_SIZE`` bool.

    ``parsing`` is the reference's label map already resized (nearest) to ``IMAGE_SIZE x IMAGE_SIZE``;
    a token is face when the label at its centre pixel is in ``face_set``.
    """
    from .errors import S3potInputError

    if parsing.shape != (IMAGE_SIZE, IMAGE_SIZE):
        raise S3potInputError(
            f"parsing mask: expected {IMAGE_SIZE}x{IMAGE_SIZE} after resize, got {parsing.shape}")
    centre = PATCH_SIZE // 2
    centres = parsing[centre::PATCH_SIZE, centre::PATCH_SIZE]  # 64 x 64
    return np.isin(centres, resolve_face_set(face_set))


def resolve_context(normalization: str | None, face_set, trained: dict | None,
                    default_normalization: str = "sam") -> tuple[str, tuple[int, ...]]:
    """Normalisation and face set to run with: an adapter runs as it was trained (``trained``:
    its ``normalization``, ``face_set`` and ``source``), and an explicit request that contradicts
    it is refused; without an adapter, the request, else the defaults (``sam``, ``paper``)."""
    from .errors import S3potInputError

    if normalization is not None and normalization not in NORMALIZATIONS:
        raise S3potInputError(f"normalization {normalization!r}: expected one of "
                              f"{', '.join(NORMALIZATIONS)}")
    requested_faces = None if face_set is None else resolve_face_set(face_set)
    if trained is None:
        return normalization or default_normalization, requested_faces or PAPER_FACE_SET
    if normalization is not None and normalization != trained["normalization"]:
        raise S3potInputError(f"normalization {normalization!r}: {trained['source']} was trained "
                              f"with {trained['normalization']!r}")
    if requested_faces is not None and requested_faces != tuple(trained["face_set"]):
        raise S3potInputError(f"face set {list(requested_faces)}: {trained['source']} was trained "
                              f"with face set {list(trained['face_set'])}")
    return trained["normalization"], tuple(trained["face_set"])


#: SAM's point labels. S3POT prompts occlusion tokens as positive, face tokens as negative.
LABEL_PAD, LABEL_NEGATIVE, LABEL_POSITIVE = -1, 0, 1


def prompt_points(occlusion_tokens: np.ndarray, face_tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SPEC stage 5: occlusion tokens (positive) first, then face tokens (negative), each group in
    the order given (raster order from the kernels), at the token centres.

    Returns ``N x 2`` float32 points ``(x, y)`` in 1024-pixel space and ``N`` float32 labels (as in
    SAM's own ONNX export and the stage IO table).
    """
    tokens = np.concatenate([occlusion_tokens, face_tokens]).astype(np.int64)
    labels = np.concatenate([np.full(len(occlusion_tokens), LABEL_POSITIVE, np.float32),
                             np.full(len(face_tokens), LABEL_NEGATIVE, np.float32)])
    return TOKEN_CENTERS[tokens], labels


#: :func:`token_centers` computed once, read-only: ``NUM_TOKENS x 2`` float32 ``(x, y)``.
TOKEN_CENTERS = token_centers()
TOKEN_CENTERS.flags.writeable = False
