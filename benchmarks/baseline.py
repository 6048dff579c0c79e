"""S3POT run the authors' way: the baseline every figure of ``s3pot bench`` is a ratio against.

How the authors run the method (their README and SPEC.md): PyTorch eager in FP32; the image and the
reference go through the encoder in two separate calls; the cosine similarity and the initial
prompt in PyTorch; FE once per image; greedy matching by sorting every entry of the ``N_f x 4096``
similarity matrix and scanning the sorted list in a Python loop; prompt lists built in Python
loops; SAM's bilinear upsampling in PyTorch. It is written here, on the same decoded inputs and
the same weights as the pipeline, so that the pipeline's gains are measured and not assumed; its
prompts must equal the pipeline's (``s3pot bench`` checks that in every run).

SAM's parts (image encoder, prompt encoder, mask decoder, and the two-way transformer FE runs) are
the official ``segment-anything`` modules, which the authors' code builds on, loaded with the
weights of the :class:`s3pot.models.S3POT` under test (:mod:`.official_sam`); FE's output tokens
and the SA layer are S3POT's own blocks, whose code the authors have not released.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from s3pot.core.io_table import (DECODER, ENCODER, FE, IMAGE_EMBEDDINGS, INITIAL_POINT, PIXELS,
                                 POINT_COORDS, POINT_LABELS, SA, SPARSE_PROMPTS)
from s3pot.core.spec import GRID_SIZE, IMAGE_SIZE, LABEL_NEGATIVE, LABEL_POSITIVE, TOKEN_CENTERS

#: Timings keys shared with :class:`s3pot.runtime.pipeline.Pipeline`.
STAGE_KEYS = ("preprocess", ENCODER.name, "initial_prompt", FE.name, "prompt_selection", SA.name,
              DECODER.name, "postprocess")


@dataclass
class BaselineResult:
    """What the baseline gives for one sample (the fields :class:`Segmentation` has in common)."""

    occlusion: np.ndarray  # H x W bool
    low_res_logits: np.ndarray  # 256 x 256 float32
    initial_token: int
    occlusion_tokens: np.ndarray  # P_O, ascending
    face_tokens: np.ndarray  # P_N, ascending
    timings: dict = field(default_factory=dict)
    #: stage -> (feeds, outputs) as the IO table names them, for per-stage accuracy checks
    stage_io: dict = field(default_factory=dict)


def authors_greedy(sim: np.ndarray) -> np.ndarray:
    """Greedy matching the authors' way: sort all ``R x C`` entries (value descending, then flat
    index, SPEC's order), then accept free pairs in a Python loop. Returns ``R`` column indices."""
    num_rows, num_cols = sim.shape
    order = np.argsort(-sim.ravel(), kind="stable")
    row_free = [True] * num_rows
    col_free = [True] * num_cols
    match = np.full(num_rows, -1, dtype=np.int64)
    matched = 0
    for flat in order:
        row, col = divmod(int(flat), num_cols)
        if row_free[row] and col_free[col]:
            match[row] = col
            row_free[row] = col_free[col] = False
            matched += 1
            if matched == num_rows:
                break
    return match


class AuthorsPipeline:
    """S3POT driven the authors' way: the official SAM modules with the weights of ``model`` (an
    :class:`~s3pot.models.S3POT` of ``variant``), FP32, on the CPU or a GPU. ``segment`` takes a
    :class:`~s3pot.runtime.preprocess.Prepared` sample, so that it sees exactly the pixels the
    pipeline sees."""

    def __init__(self, model, variant: str, device: str = "cpu") -> None:
        import torch

        from s3pot.models.registry import get_variant

        from .official_sam import official_parts

        self.torch = torch
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        self.sam = official_parts(self.model, get_variant(variant))
        for part in ("image_encoder", "prompt_encoder", "mask_decoder", "fe_transformer"):
            getattr(self.sam, part).to(self.device)

    @property
    def modules(self) -> str:
        """Where SAM's parts come from, for the report."""
        return (f"SAM's prompt encoder, mask decoder and two-way transformer from segment-anything, "
                f"image encoder from {self.sam.encoder_source}; FE tokens and SA from s3pot")

    def time_own_encoder(self, prepared) -> float:
        """Seconds of one call of the S3POT model's own PyTorch encoder on the sample's image, the
        same computation as the official module's (tested to 1e-5), for the report: how much of
        the baseline's encoder time is the official module's way of computing it."""
        from s3pot.runtime.backends.torch.runner import fp32_math

        image = self.torch.from_numpy(prepared.pixels[0:1]).to(self.device)
        with self.torch.inference_mode(), fp32_math():
            start = time.perf_counter()
            self.model.encode(image)
            self._sync()
            return time.perf_counter() - start

    def encode(self, pixels):
        """``1 x 3 x 1024 x 1024`` to ``1 x 256 x 64 x 64``, one image a call."""
        return self.sam.image_encoder(pixels)

    def enhance(self, embeddings, point):
        """FE as SAM's decoder runs its transformer: the output tokens and the point prompt's
        embedding against the image tokens; the updated image tokens, ``4096 x 256``."""
        labels = self.torch.full(point.shape[:2], LABEL_POSITIVE, dtype=self.torch.int64,
                                 device=self.device)
        sparse, dense = self.sam.prompt_encoder(points=(point, labels), boxes=None, masks=None)
        fe = self.model.fe
        tokens = self.torch.cat([fe.iou_token.weight, fe.mask_tokens.weight], dim=0)[None]
        tokens = self.torch.cat([tokens, sparse], dim=1)
        _, keys = self.sam.fe_transformer(embeddings + dense, self.sam.prompt_encoder.get_dense_pe(),
                                          tokens)
        return keys[0]

    def reweight(self, points, labels):
        """SAM's point embedding (with its padding point), then S3POT's SA layer."""
        sparse, _ = self.sam.prompt_encoder(points=(points, labels), boxes=None, masks=None)
        return self.model.sa(sparse)

    def decode(self, embeddings, prompts):
        """SAM's mask decoder, single-mask output: ``1 x 1 x 256 x 256`` logits."""
        _, dense = self.sam.prompt_encoder(points=None, boxes=None, masks=None)
        masks, _ = self.sam.mask_decoder(
            image_embeddings=embeddings, image_pe=self.sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=prompts, dense_prompt_embeddings=dense,
            multimask_output=False)
        return masks

    def _sync(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)

    def segment(self, prepared, timings: dict | None = None, record: bool = False) -> BaselineResult:
        from s3pot.runtime.backends.torch.runner import fp32_math  # (TF32 off, as on every FP32 path)

        torch = self.torch
        timings = {} if timings is None else timings
        io: dict = {}

        def clock(stage: str, start: float) -> float:
            self._sync()
            now = time.perf_counter()
            timings[stage] = timings.get(stage, 0.0) + now - start
            return now

        with torch.inference_mode(), fp32_math():
            start = time.perf_counter()
            image = torch.from_numpy(prepared.pixels[0:1]).to(self.device)  # 1 x 3 x 1024 x 1024
            reference = torch.from_numpy(prepared.pixels[1:2]).to(self.device)
            z = self.encode(image)  # 1 x 256 x 64 x 64
            z_r = self.encode(reference)
            start = clock(ENCODER.name, start)

            # initial prompt: cosine similarity per token, best face token (first on a tie)
            face = torch.from_numpy(prepared.face_mask.reshape(-1)).to(self.device)  # 4096
            cosine = torch.nn.functional.cosine_similarity(z[0], z_r[0], dim=0).reshape(-1)
            cosine = torch.where(face, cosine, torch.full_like(cosine, -float("inf")))
            token = int(torch.argmax(cosine))
            start = clock("initial_prompt", start)

            point = torch.tensor([[list(TOKEN_CENTERS[token])]], dtype=torch.float32,
                                 device=self.device)  # 1 x 1 x 2
            z_e = self.enhance(z, point)  # 4096 x 256
            z_re = self.enhance(z_r, point)
            start = clock(FE.name, start)

            # prompt selection: S = R . Z_e^T in PyTorch, then the sorted scan in Python
            face_rows = [t for t in range(GRID_SIZE * GRID_SIZE) if bool(face[t])]
            unit_e = torch.nn.functional.normalize(z_e, dim=1)
            unit_r = torch.nn.functional.normalize(z_re[face_rows], dim=1)
            sim = (unit_r @ unit_e.T).cpu().numpy()  # N_f x 4096
            match = authors_greedy(sim)
            matched = set(int(c) for c in match)
            occlusion_tokens, face_tokens = [], []
            for t in face_rows:
                (face_tokens if t in matched else occlusion_tokens).append(t)
            start = clock("prompt_selection", start)

            coords, labels = [], []
            for t in occlusion_tokens:
                coords.append(list(TOKEN_CENTERS[t]))
                labels.append(LABEL_POSITIVE)
            for t in face_tokens:
                coords.append(list(TOKEN_CENTERS[t]))
                labels.append(LABEL_NEGATIVE)
            points = torch.tensor([coords], dtype=torch.float32, device=self.device)  # 1 x N x 2
            point_labels = torch.tensor([labels], dtype=torch.float32, device=self.device)
            prompts = self.reweight(points, point_labels)  # 1 x (N + 1) x 256
            start = clock(SA.name, start)

            low_res = self.decode(z, prompts)  # 1 x 1 x 256 x 256
            start = clock(DECODER.name, start)

            full = torch.nn.functional.interpolate(low_res, (IMAGE_SIZE, IMAGE_SIZE),
                                                   mode="bilinear", align_corners=False)
            logits = torch.nn.functional.interpolate(full, prepared.input_size, mode="bilinear",
                                                     align_corners=False)[0, 0]
            occlusion = (logits > 0).cpu().numpy()
            clock("postprocess", start)

            if record:
                host = lambda t: t.detach().float().cpu().numpy()  # noqa: E731
                io = {
                    ENCODER.name: ({PIXELS: prepared.pixels[0:1]}, host(z)),
                    FE.name: ({IMAGE_EMBEDDINGS: np.concatenate([host(z), host(z_r)]),
                               INITIAL_POINT: np.repeat(host(point), 2, axis=0)},
                              np.stack([host(z_e), host(z_re)])),
                    SA.name: ({POINT_COORDS: host(points), POINT_LABELS: host(point_labels)},
                              host(prompts)),
                    DECODER.name: ({IMAGE_EMBEDDINGS: host(z), SPARSE_PROMPTS: host(prompts)},
                                   host(low_res)),
                }
        return BaselineResult(
            occlusion=occlusion, low_res_logits=low_res.reshape(low_res.shape[-2:]).cpu().numpy(),
            initial_token=token, occlusion_tokens=np.array(occlusion_tokens, dtype=np.int64),
            face_tokens=np.array(face_tokens, dtype=np.int64), timings=timings, stage_io=io)
