"""Official checkpoints load by name; adapters record their context and refuse other variants."""
from __future__ import annotations

import pytest
import torch

import oracle
from s3pot.core.errors import CheckpointError, S3potInputError
from s3pot.models import build_s3pot, guess_variant, read_adapter, save_adapter
from s3pot.models.registry import VARIANTS


def _official_tiny_sam():
    """The official ``_build_sam`` with the tiny variant's encoder settings."""
    args = VARIANTS["tiny"].encoder_args
    return oracle.build_sam()._build_sam(
        encoder_embed_dim=args["embed_dim"], encoder_depth=args["depth"],
        encoder_num_heads=args["num_heads"], encoder_global_attn_indexes=list(args["global_attn_indexes"]))


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    sam = _official_tiny_sam()
    path = tmp_path_factory.mktemp("ckpt") / "sam_tiny.pth"
    torch.save(sam.state_dict(), path)
    return path, sam


def test_official_tiny_checkpoint_loads_by_name(tiny_checkpoint):
    path, sam = tiny_checkpoint
    model = build_s3pot("tiny", checkpoint=path)
    ours = model.state_dict()
    for key, value in sam.state_dict().items():
        assert torch.equal(ours[key], value), key
    # FE starts as a copy of the decoder's transformer and tokens
    for key, value in sam.mask_decoder.transformer.state_dict().items():
        assert torch.equal(model.fe.transformer.state_dict()[key], value)
    assert torch.equal(model.fe.mask_tokens.weight, sam.mask_decoder.mask_tokens.weight)


@pytest.mark.slow
def test_official_vit_b_checkpoint_loads_and_runs(tmp_path):
    """``sam_vit_b_01ec64.pth`` as the official builder writes it (random init), end to end."""
    from s3pot.runtime.backends import ModelSpec, create_runner
    from s3pot.runtime.pipeline import Pipeline
    from skimage import data

    torch.manual_seed(0)
    sam = oracle.build_sam().build_sam_vit_b()
    path = tmp_path / "sam_vit_b_01ec64.pth"
    torch.save(sam.state_dict(), path)
    del sam
    assert guess_variant(torch.load(path, weights_only=True)) == "vit_b"
    pipeline = Pipeline(create_runner("torch", ModelSpec(variant="vit_b", checkpoint=path, device="cpu")))
    face = data.astronaut()
    parsing = torch.zeros(face.shape[:2], dtype=torch.uint8).numpy()
    parsing[100:300, 150:330] = 6  # skin
    seg = pipeline.segment(face, face, parsing)
    assert seg.occlusion.shape == face.shape[:2]
    assert len(seg.occlusion_tokens) + len(seg.face_tokens) > 0


def test_checkpoint_of_another_variant_is_refused(tiny_checkpoint):
    path, _ = tiny_checkpoint
    with pytest.raises(CheckpointError, match="expected the tiny_mobile SAM parameters"):
        build_s3pot("tiny_mobile", checkpoint=path)


def test_checkpoint_of_another_width_names_the_likely_variant(tmp_path):
    state = {"image_encoder.pos_embed": torch.zeros(1, 64, 64, 1280)}
    state.update({f"image_encoder.blocks.{i}.norm1.weight": torch.zeros(1280) for i in range(32)})
    path = tmp_path / "sam_vit_h.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="looks like vit_h"):
        build_s3pot("tiny", checkpoint=path)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04broken zip"])
def test_corrupt_checkpoint_is_refused(tmp_path, content):
    path = tmp_path / "broken.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="broken.pth"):
        build_s3pot("tiny", checkpoint=path)


class Evil:
    """An arbitrary object: ``weights_only=True`` must refuse to unpickle it."""


def test_pickled_object_checkpoint_is_refused(tmp_path):
    path = tmp_path / "pickled.pth"
    torch.save({"x": Evil()}, path)
    with pytest.raises(CheckpointError, match="pickled.pth") as info:
        build_s3pot("tiny", checkpoint=path)
    message = str(info.value)
    assert "pickled Python objects" in message and "\n" not in message
    assert "\x1b" not in message and "weights_only=False" not in message  # no advice to unpickle


def test_missing_checkpoint_and_weights_policy(tmp_path):
    with pytest.raises(S3potInputError, match="no such file"):
        build_s3pot("tiny", checkpoint=tmp_path / "absent.pth")
    with pytest.raises(S3potInputError, match="neither"):
        build_s3pot("tiny")
    with pytest.raises(S3potInputError, match="both"):
        build_s3pot("tiny", checkpoint=tmp_path / "x.pth", random_weights=True)
    with pytest.raises(S3potInputError, match="vit_b, vit_l"):
        build_s3pot("vit_x", random_weights=True)


def test_adapter_round_trip_and_refusal(tmp_path, tiny_model):
    model = build_s3pot("tiny", random_weights=True, seed=1)
    with torch.no_grad():
        model.sa.norm.weight.add_(1.5)
        model.fe.transformer.norm_final_attn.bias.add_(0.25)
    path = save_adapter(tmp_path / "adapter.pt", model, variant="tiny", normalization="unit",
                        face_set="authors", include_fe=True, meta={"epochs": 3})
    payload = read_adapter(path)
    assert payload["variant"] == "tiny" and payload["normalization"] == "unit"
    assert payload["face_set"] == [1, 2, 3, 5, 6, 9, 10] and payload["meta"] == {"epochs": 3}

    loaded = build_s3pot("tiny", random_weights=True, seed=2, adapter=path)
    assert torch.equal(loaded.sa.norm.weight, model.sa.norm.weight)
    assert torch.equal(loaded.fe.transformer.norm_final_attn.bias, model.fe.transformer.norm_final_attn.bias)

    with pytest.raises(CheckpointError, match="trained for variant 'tiny', expected 'tiny_mobile'"):
        build_s3pot("tiny_mobile", random_weights=True, adapter=path)
    sam_like = tmp_path / "not_adapter.pt"
    torch.save({"sa": {}}, sam_like)
    with pytest.raises(CheckpointError, match="expected an s3pot-adapter file"):
        build_s3pot("tiny", random_weights=True, adapter=sam_like)
    assert not list(tmp_path.glob(".*.tmp"))  # atomic save left nothing behind


def test_adapter_with_missing_fields_is_refused(tmp_path):
    path = tmp_path / "partial.pt"
    torch.save({"format": "s3pot-adapter", "version": 1, "variant": "tiny", "sa": {}}, path)
    with pytest.raises(CheckpointError, match="normalization='missing'"):
        read_adapter(path)


def test_adapter_meta_must_load_with_weights_only(tmp_path, tiny_model):
    with pytest.raises(S3potInputError, match="JSON-like"):
        save_adapter(tmp_path / "a.pt", tiny_model, variant="tiny", normalization="sam",
                     face_set="paper", meta={"data": tmp_path})
    with pytest.raises(S3potInputError, match="normalization"):
        save_adapter(tmp_path / "a.pt", tiny_model, variant="tiny", normalization="imagenet",
                     face_set="paper")
    assert not (tmp_path / "a.pt").exists()


def test_building_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    want = torch.rand(3)
    torch.manual_seed(123)
    build_s3pot("tiny", random_weights=True, seed=5)
    assert torch.equal(torch.rand(3), want)
