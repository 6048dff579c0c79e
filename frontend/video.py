"""Segmenting a video: every frame's face found and aligned, the pipeline run against one
reference, the masks pasted back, and a mask video and an overlay video written.

The reference is made once (a clean photo in the canonical FFHQ frame, or files) and every frame
is aligned to that frame too, so the pipeline's reference cache holds its embedding and the
encoder runs once per frame instead of twice. A generator's reference depends on the frame, so
with one the reference is made and encoded per frame. A frame without a face is counted, written
unchanged to the overlay (and empty to the mask video), and the run goes on; any other error
stops the run with nothing written.

Each frame's crop is then registered onto the fixed reference by intensity (OpenCV's ECC, as
:class:`~s3pot.frontend.references.PhotoReference` registers a reference onto one target): the
frame moves, not the reference, so the reference's pixels, and its cached embedding, stay the same.
"""
from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from s3pot.core.errors import S3potInputError

log = logging.getLogger(__name__)

FOURCC = "mp4v"  # MPEG-4 Part 2: written by every OpenCV build's FFmpeg, read everywhere
DEFAULT_FPS = 25.0  # when the container does not say


@dataclass
class VideoReport:
    """What one video run did (also written as ``NAME_video.json``)."""

    video: str
    frames: int = 0
    frames_expected: int | None = None  # what the container announced, when it did
    size: tuple[int, int] = (0, 0)  # (width, height)
    fps_in: float = DEFAULT_FPS
    frames_without_face: list[int] = field(default_factory=list)
    seconds: float = 0.0
    references_encoded: int = 0
    reference_cache_hits: int = 0
    reference: str = ""
    outputs: list[str] = field(default_factory=list)

    @property
    def fps(self) -> float:
        """Frames processed per second of wall time."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def segmented(self) -> int:
        return self.frames - len(self.frames_without_face)

    @property
    def truncated(self) -> bool:
        """Fewer frames decoded than the container announced (a cut or damaged file)."""
        return self.frames_expected is not None and self.frames < self.frames_expected

    def as_dict(self) -> dict:
        return {**asdict(self), "fps": round(self.fps, 3), "seconds": round(self.seconds, 3)}


def open_video(path: Path) -> cv2.VideoCapture:
    from s3pot.runtime.io import check_file

    check_file(path, "video")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise S3potInputError(f"video '{path}': expected a video OpenCV can read (MP4, AVI, MOV, "
                              "...), got a file it cannot open (not a video, damaged, or no frames)")
    return capture


def _first_missing(folder: Path) -> Path | None:
    """The outermost folder on the way to ``folder`` that does not exist yet, or None."""
    missing = None
    for path in [folder, *folder.parents]:
        if path.exists():
            return missing
        missing = path
    return missing


class _Writers:
    """The mask and overlay videos, written under temporary names and moved into place only when
    the whole video is done; on failure the partial files and the folders made for them go."""

    def __init__(self, out: Path, name: str, fps: float, size: tuple[int, int]) -> None:
        self.size = size
        self.final = [out / f"{name}_mask.mp4", out / f"{name}_overlay.mp4"]
        self.partial = [path.with_name(f".{path.stem}.partial.mp4") for path in self.final]
        self.created = _first_missing(out)
        out.mkdir(parents=True, exist_ok=True)
        fourcc = cv2.VideoWriter_fourcc(*FOURCC)
        self.writers = [cv2.VideoWriter(str(path), fourcc, fps, size) for path in self.partial]
        if not all(writer.isOpened() for writer in self.writers):
            self.discard()
            raise S3potInputError(f"outputs in '{out}': OpenCV could not open an {FOURCC} MP4 writer")

    def write(self, index: int, mask: np.ndarray, overlay_rgb: np.ndarray) -> None:
        """Frame ``index``: ``mask`` ``H x W`` bool and ``overlay_rgb`` ``H x W x 3`` uint8, at
        the video's size (a writer silently drops frames of another size)."""
        if overlay_rgb.shape[1::-1] != self.size:
            raise S3potInputError(f"frame {index}: expected {self.size[0]}x{self.size[1]} like the "
                                  f"video's header, got {overlay_rgb.shape[1]}x{overlay_rgb.shape[0]}")
        mask_bgr = cv2.cvtColor(np.where(mask, np.uint8(255), np.uint8(0)), cv2.COLOR_GRAY2BGR)
        self.writers[0].write(mask_bgr)
        self.writers[1].write(cv2.cvtColor(overlay_rgb, cv2.COLOR_RGB2BGR))

    def commit(self) -> list[Path]:
        for writer in self.writers:
            writer.release()
        for partial, final in zip(self.partial, self.final):
            os.replace(partial, final)
        return self.final

    def discard(self) -> None:
        for writer in self.writers:
            writer.release()
        for path in self.partial:
            path.unlink(missing_ok=True)
        if self.created is not None:
            shutil.rmtree(self.created, ignore_errors=True)  # only folders this run made


def check_reference(pipeline, fixed, source) -> None:
    """A fixed reference must mark face tokens under the pipeline's face set; checked once, since
    every frame would fail alike."""
    from s3pot.core.errors import NoFaceTokensError

    reference, parsing = fixed
    try:
        pipeline.prepare(reference, reference, parsing)
    except NoFaceTokensError as exc:
        raise S3potInputError(f"reference {source.describe()}: {exc}") from None


def align_to_reference(face, rgb: np.ndarray, reference: np.ndarray, parsing: np.ndarray):
    """The frame's crop alignment, refined by intensity so that its crop lines up with a fixed
    ``reference`` (``S x S x 3``, parsing ``S x S``): the reference stays the same pixels (its
    embedding stays cached) and the frame moves onto it. Falls back to the landmarks' alignment
    when ECC does not converge."""
    from .align import Alignment
    from .references import compose, register

    correction = register(reference, face.crop(rgb), parsing > 0)
    if correction is None:
        return face.alignment
    return Alignment(matrix=compose(correction, face.alignment.matrix), size=face.alignment.size,
                     source_size=face.alignment.source_size)


def segment_frame(pipeline, finder, source, fixed, rgb: np.ndarray):
    """One frame's pasted-back occlusion and visible-face masks (``H x W`` bool), or None when
    the frame shows no face."""
    faces = finder.find(rgb)
    if not faces:
        return None
    face = faces[0]
    if fixed is not None:
        reference, parsing = fixed
        alignment = align_to_reference(face, rgb, reference, parsing)
    else:
        (reference, parsing), alignment = source.for_face(rgb, face), face.alignment
    seg = pipeline.segment(alignment.crop(rgb), reference, parsing)
    return alignment.paste_mask(seg.occlusion), alignment.paste_mask(seg.visible_face)


def segment_video(pipeline, finder, source, video: Path, out: Path, *, name: str | None = None,
                  progress=None, stamp_text: str | None = None) -> VideoReport:
    """Segment every frame of ``video`` into ``out``: ``NAME_mask.mp4`` and ``NAME_overlay.mp4``
    (same frame count, size and rate as the input). ``progress(iterable, total)`` wraps the frame
    loop (a progress bar); ``stamp_text`` is written on the overlay (random weights)."""
    name = name or Path(video).stem
    capture = open_video(video)
    try:
        return _segment_frames(pipeline, finder, source, capture, video, out, name, progress,
                               stamp_text)
    finally:
        capture.release()


def _segment_frames(pipeline, finder, source, capture, video, out, name, progress, stamp_text):
    from s3pot.runtime.visualize import overlay, stamp

    fps = capture.get(cv2.CAP_PROP_FPS) or DEFAULT_FPS
    size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    announced = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    report = VideoReport(video=str(video), size=size, fps_in=float(fps), reference=source.describe(),
                         frames_expected=announced if announced > 0 else None)
    fixed = source.fixed(finder.size)
    if fixed is not None:
        check_reference(pipeline, fixed, source)
    encoded, hits = pipeline.stats.references_encoded, pipeline.stats.reference_cache_hits
    writers = _Writers(out, name, fps, size)
    start = time.perf_counter()
    try:
        for index, bgr in (progress or (lambda it, total: it))(_frames(capture), report.frames_expected):
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            masks = segment_frame(pipeline, finder, source, fixed, rgb)
            if masks is None:
                report.frames_without_face.append(index)
                occlusion, shown = np.zeros(rgb.shape[:2], bool), rgb
            else:
                occlusion, visible = masks
                shown = overlay(rgb, occlusion, face_region=occlusion | visible)
            writers.write(index, occlusion, stamp(shown, stamp_text) if stamp_text else shown)
            report.frames += 1
        if report.frames == 0:
            raise S3potInputError(f"video '{video}': expected at least one frame, got none decoded")
        report.seconds = time.perf_counter() - start
        report.outputs = [str(path) for path in writers.commit()]
    except BaseException:
        writers.discard()
        raise
    report.references_encoded = pipeline.stats.references_encoded - encoded
    report.reference_cache_hits = pipeline.stats.reference_cache_hits - hits
    return report


def _frames(capture):
    index = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            return
        yield index, frame
        index += 1
