"""A training or validation set: every sample checked, encoded once (through the embedding
cache) and given its prompts, before the first epoch.

Every sample is decoded and checked first, which is cheap; a dataset with a bad sample (a missing
or corrupt file, a parsing map without face tokens) is refused with all of them listed, before
the encoder runs on anything. Then the samples go through the encoder, or come from the cache,
and get their prompts. From there on, an epoch reads only each image's embedding from disk.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from s3pot.core.errors import S3potInputError
from s3pot.runtime.datasets import Sample, find_samples, load_ground_truth
from s3pot.runtime.preprocess import Prepared, prepare_inputs

from .steps import SamplePrompts, sample_prompts

log = logging.getLogger(__name__)


@dataclass
class TrainSample:
    """What training keeps of one sample: its files, its cache keys, its prompts."""

    files: Sample
    image_key: str
    reference_key: str
    input_size: tuple[int, int]  # (H, W) of the image as loaded
    prompts: SamplePrompts

    @property
    def name(self) -> str:
        return self.files.name

    def ground_truth(self) -> np.ndarray | None:
        """The occlusion ground truth at the image's size, or None without one."""
        return load_ground_truth(self.files, self.input_size)


@dataclass
class SampleSet:
    """The samples of one folder, and a digest of what they are (names and image keys) that a
    resumed run checks against."""

    root: Path
    samples: list[TrainSample]

    @property
    def digest(self) -> str:
        digest = hashlib.sha256()
        for s in self.samples:
            digest.update(f"{s.name}|{s.image_key}|{s.reference_key}|".encode())
            digest.update(s.prompts.occlusion_tokens.astype("<i8").tobytes() + b"|")
            digest.update(s.prompts.face_tokens.astype("<i8").tobytes() + b"\n")
        return digest.hexdigest()

    def __len__(self) -> int:
        return len(self.samples)


def prepare_sample(sample: Sample, normalization: str, face_set) -> Prepared:
    """The sample's files decoded, checked, resized and normalised (the runtime's preprocessing)."""
    return prepare_inputs(sample.image, sample.reference, sample.parsing,
                          normalization=normalization, face_set=face_set)


def check_samples(root, normalization: str, face_set, what: str) -> list[Sample]:
    """The samples of ``root`` (either SPEC layout), each decoded and checked; raises one error
    listing every sample that cannot be used."""
    samples = find_samples(root)
    problems = []
    for sample in samples:
        try:
            prepared = prepare_sample(sample, normalization, face_set)
            if sample.gt is not None:
                load_ground_truth(sample, prepared.input_size)
        except S3potInputError as exc:
            problems.append(f"{sample.name}: {exc}")
    if problems:
        raise S3potInputError(f"{what} '{root}': expected usable samples, got {len(problems)} "
                              f"that are not: " + "; ".join(problems))
    return samples


def load_sample_set(root, cache, runner, *, normalization: str, face_set, selector: str = "auto",
                    what: str = "--data", progress=None) -> SampleSet:
    """Every sample of ``root`` checked, encoded (or read from ``cache``) and prompted.

    ``progress``: wraps the sample list (a tqdm factory, say) while the encoder runs.
    """
    samples = check_samples(root, normalization, face_set, what)
    loaded = []
    for sample in (progress(samples) if progress else samples):
        prepared = prepare_sample(sample, normalization, face_set)
        keys = [cache.key(pixels) for pixels in prepared.pixels]
        embeddings = np.stack(cache.fetch(list(prepared.pixels), keys))  # 2 x 256 x 64 x 64: Z, Z_r
        loaded.append(TrainSample(files=sample, image_key=keys[0], reference_key=keys[1],
                                  input_size=prepared.input_size,
                                  prompts=sample_prompts(runner, embeddings, prepared.face_mask, selector)))
    log.info("%s: %d samples, encoder ran on %d images, %d came from the cache", root,
             len(loaded), cache.stats.encoded, cache.stats.hits)
    return SampleSet(root=Path(root), samples=loaded)
