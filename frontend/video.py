"""Segmenting a video: every frame's face found and aligned, the pipeline run against one
reference, the masks pasted back, and a mask video and an overlay video written.

The reference is made once (a clean photo in the canonical FFHQ frame, or files) and every frame
is aligned to that frame too, so the pipeline's reference cache holds its embedding and the
encoder runs once per frame instead of twice. A generator's reference depends on the frame, so
with one the reference is made and encoded per frame. A frame without a face (or with one too small to cover a
token) is counted, written unchanged to the overlay (and empty to the mask video), and the run goes
on; any other error stops the run with nothing written.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from s3pot.core.errors import NoFaceTokensError, S3potInputError

log = logging.getLogger(__name__)

FOURCC = "mp4v"  # MPEG-4 Part 2: written by every OpenCV build's FFmpeg, read everywhere
DEFAULT_FPS = 25.0  # when the container does not say


@dataclass
class VideoReport:
    """What one video run did (also written as ``NAME_video.json``)."""

    video: str
    frames: int = 0
    size: tuple[int, int] = (0, 0)  # (width, height)
    fps_in: float = DEFAULT_FPS
    frames_without_face: list[int] = field(default_factory=list)
    frames_failed: dict[int, str] = field(default_factory=dict)
    seconds: float = 0.0
    references_encoded: int = 0
    reference_cache_hits: int = 0
    reference: str = ""
    outputs: list[str] = field(default_factory=list)

    @property
    def fps(self) -> float:
        """Frames processed per second of wall time."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "fps": round(self.fps, 3), "seconds": round(self.seconds, 3)}


def open_video(path: Path) -> cv2.VideoCapture:
    from s3pot.runtime.io import check_file

    check_file(path, "video")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise S3potInputError(f"video '{path}': expected a video OpenCV can read (MP4, AVI, MOV, "
                              "...), got a file it cannot open")
    return capture


class _Writers:
    """The mask and overlay videos, written under temporary names and moved into place only when
    the whole video is done."""

    def __init__(self, out: Path, name: str, fps: float, size: tuple[int, int]) -> None:
        self.final = [out / f"{name}_mask.mp4", out / f"{name}_overlay.mp4"]
        self.partial = [path.with_name(f".{path.stem}.partial.mp4") for path in self.final]
        self.created = None if out.exists() else out  # removed again if the run fails
        out.mkdir(parents=True, exist_ok=True)
        fourcc = cv2.VideoWriter_fourcc(*FOURCC)
        self.writers = [cv2.VideoWriter(str(path), fourcc, fps, size) for path in self.partial]
        if not all(writer.isOpened() for writer in self.writers):
            self.discard()
            raise S3potInputError(f"outputs in '{out}': OpenCV could not open an {FOURCC} MP4 writer")

    def write(self, mask: np.ndarray, overlay_rgb: np.ndarray) -> None:
        self.writers[0].write(cv2.cvtColor(np.where(mask, np.uint8(255), np.uint8(0)), cv2.COLOR_GRAY2BGR))
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
        if self.created is not None and not any(self.created.iterdir()):
            self.created.rmdir()


def segment_frame(pipeline, finder, source, fixed, rgb: np.ndarray):
    """One frame's pasted-back occlusion and visible-face masks (``H x W`` bool), or None when
    the frame shows no face."""
    faces = finder.find(rgb)
    if not faces:
        return None
    face = faces[0]
    reference, parsing = fixed if fixed is not None else source.for_face(rgb, face)
    seg = pipeline.segment(face.crop(rgb), reference, parsing)
    return face.alignment.paste_mask(seg.occlusion), face.alignment.paste_mask(seg.visible_face)


def segment_video(pipeline, finder, source, video: Path, out: Path, *, name: str | None = None,
                  progress=None, stamp_text: str | None = None) -> VideoReport:
    """Segment every frame of ``video`` into ``out``: ``NAME_mask.mp4`` and ``NAME_overlay.mp4``
    (same frame count, size and rate as the input). ``progress(iterable, total)`` wraps the frame
    loop (a progress bar); ``stamp_text`` is written on the overlay (random weights)."""
    from s3pot.runtime.visualize import overlay, stamp

    name = name or Path(video).stem
    capture = open_video(video)
    fps = capture.get(cv2.CAP_PROP_FPS) or DEFAULT_FPS
    size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    report = VideoReport(video=str(video), size=size, fps_in=float(fps), reference=source.describe())
    fixed = source.fixed(finder.size)
    encoded, hits = pipeline.stats.references_encoded, pipeline.stats.reference_cache_hits
    writers = _Writers(out, name, fps, size)
    start = time.perf_counter()
    try:
        for index, bgr in (progress or (lambda it, total: it))(_frames(capture), total):
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            try:
                masks = segment_frame(pipeline, finder, source, fixed, rgb)
            except NoFaceTokensError as exc:  # a face too small for one token is not fatal
                report.frames_failed[index] = str(exc)
                masks = None
            if masks is None:
                if index not in report.frames_failed:
                    report.frames_without_face.append(index)
                occlusion, shown = np.zeros(rgb.shape[:2], bool), rgb
            else:
                occlusion, visible = masks
                shown = overlay(rgb, occlusion, face_region=occlusion | visible)
            if stamp_text:
                shown = stamp(shown, stamp_text)
            writers.write(occlusion, shown)
            report.frames += 1
        if report.frames == 0:
            raise S3potInputError(f"video '{video}': expected at least one frame, got none decoded")
        report.seconds = time.perf_counter() - start
        report.outputs = [str(path) for path in writers.commit()]
    except BaseException:
        writers.discard()
        raise
    finally:
        capture.release()
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
