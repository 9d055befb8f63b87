"""AudioFormer (hear_codec/audioformer.py): token layout, model shapes, checkpoints, HEAR (real
hear-validator). Its MLM masking and loss: test_audioformer_masking.py, test_audioformer_losses.py."""
import copy
import dataclasses
import os
import subprocess

import pytest
import torch

import hear_codec
from hear_codec import audioformer as af
from hear_codec.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from training.audioformer.losses import mlm_loss
from training.audioformer.masking import mlm_mask

from conftest import tool


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---- token layout ----
def test_token_layout_and_special_tokens():
    codes = torch.tensor([[[5, 6, 7], [1, 2, 3]]])  # [B=1, Q=2, T=3]
    tokens = af.codes_to_tokens(codes)
    assert tokens.tolist() == [[[af.BOA, 5, 6, 7, af.EOA], [af.BOA, 1, 2, 3, af.EOA]]]
    # specials sit above the 1024 codes and are distinct
    assert af.CODEBOOK_SIZE == 1024 and sorted({af.PAD, af.BOA, af.EOA, af.MASK}) == [1024, 1025, 1026, 1027]
    assert af.VOCAB_SIZE == 1028


def test_token_layout_with_lengths_pads_after_eoa():
    codes = torch.arange(8).view(2, 1, 4)
    tokens = af.codes_to_tokens(codes, lengths=torch.tensor([4, 2]))
    assert tokens[0, 0].tolist() == [af.BOA, 0, 1, 2, 3, af.EOA]
    assert tokens[1, 0].tolist() == [af.BOA, 4, 5, af.EOA, af.PAD, af.PAD]
    assert af.token_padding_mask(tokens)[1, 0].tolist() == [False] * 4 + [True] * 2


def test_token_layout_rejects_bad_codes():
    with pytest.raises(ValueError, match="codes must be in"):
        af.codes_to_tokens(torch.tensor([[[1024]]]))
    with pytest.raises(ValueError, match="batch, codebooks, frames"):
        af.codes_to_tokens(torch.zeros(3, 4, dtype=torch.long))


# ---- model ----
def tiny(**overrides):
    return af.preset("tiny", codec_weights="offline", **overrides)


@pytest.fixture(scope="module")
def offline_codec():
    from hear_codec.codec import load_codec

    return load_codec("offline", seed=0)


@pytest.fixture(scope="module")
def tiny_model(offline_codec):
    return af.new_model(tiny(), offline_codec, seed=0).eval()


def test_presets_and_config_validation():
    base = af.preset("base")
    assert (base.dim, base.num_layers, base.num_heads, base.ff_dim, base.num_codebooks) == (768, 12, 12, 3072, 4)
    assert not base.shared_backbone and base.mask_prob == 0.25
    with pytest.raises(ValueError, match="unknown AudioFormer preset"):
        af.preset("huge")
    with pytest.raises(ValueError, match="max_positions"):
        af.preset("tiny", chunk_seconds=30.0)
    with pytest.raises(ValueError, match="embedding"):
        af.preset("tiny", embedding="mean")
    with pytest.raises(ValueError, match="unknown AudioFormer config keys"):
        af.AudioFormerConfig.from_dict({"dimm": 3})


@pytest.mark.parametrize("shared", [False, True])
def test_mlm_forward_shapes_and_backbone_count(offline_codec, shared):
    model = af.new_model(tiny(shared_backbone=shared), offline_codec)
    assert len(model.backbones) == (1 if shared else 4)
    tokens = af.codes_to_tokens(torch.randint(0, 1024, (2, 4, 10)))
    out = model(tokens)
    assert out["logits"].shape == (2, 4, 12, 1024) and out["hidden"].shape == (2, 4, 12, 64)
    mask = mlm_mask(tokens, 0.25, torch.Generator().manual_seed(0))
    masked = model(tokens, mask)["logits"]  # the head only on the masked positions
    for c in range(4):
        assert torch.allclose(masked[c], out["logits"][:, c][mask[:, c]], atol=1e-5)
    assert torch.allclose(mlm_loss(masked, tokens, mask)["loss"], mlm_loss(out["logits"], tokens, mask)["loss"])
    if shared:  # a shared backbone still tells codebooks apart: same codes, different codebook -> different states
        same = af.codes_to_tokens(torch.full((1, 4, 5), 7))
        states = model(same)["hidden"]
        assert not torch.allclose(states[0, 0], states[0, 1])


def test_codec_is_frozen_and_cut_to_four_codebooks(tiny_model, offline_codec):
    assert len(tiny_model.codec.quantizer.vq.layers) == 4
    assert len(offline_codec.quantizer.vq.layers) == 32  # the caller's codec is left alone
    assert not any(p.requires_grad for p in tiny_model.codec.parameters())
    tiny_model.train()
    assert not tiny_model.codec.training
    tiny_model.eval()


def test_embed_layers_frames_and_hear_framing(tiny_model, rng):
    wav = torch.rand(2, 24000 + 5, generator=rng) - 0.5
    layers = tiny_model.embed_layers(wav)
    assert len(layers) == 2 and layers[-1].shape == (2, 76, 64)  # ceil(24005 / 320) frames
    codes = tiny_model.encode_codes(wav)
    hidden = tiny_model.backbone_states(af.codes_to_tokens(codes)[:, 0], 0)
    assert torch.allclose(layers[-1], hidden[:, 1:-1])  # BOA and EOA dropped
    model = hear_codec.HearModel(tiny_model, sample_rate=48000)
    assert model.frame_times_ms(3).tolist() == pytest.approx([160 / 24, 480 / 24, 800 / 24])


def test_concat_embedding(offline_codec, rng):
    model = af.new_model(tiny(embedding="concat"), offline_codec).eval()
    assert model.embedding_dim == 4 * 64
    assert model.embed_layers(torch.rand(1, 3200, generator=rng) - 0.5)[-1].shape == (1, 10, 256)


def test_checkpoint_round_trip_and_hear(tiny_model, tmp_path, rng):
    path = save_checkpoint(tmp_path / "af.pt", tiny_model, {"note": "random"})
    loaded = load_checkpoint(path)
    assert loaded.family == "audioformer" and loaded.config == tiny_model.config
    wav = torch.rand(1, 8000, generator=rng) - 0.5
    assert torch.equal(loaded.encode_codes(wav), tiny_model.encode_codes(wav))  # the codec travels with it
    hear = hear_codec.load_model(path, sample_rate=16000)
    audio = torch.rand(2, 16000, generator=rng) - 0.5
    emb, ts = hear_codec.get_timestamp_embeddings(audio, hear)
    assert emb.shape == (2, 75, 64) and emb.dtype == torch.float32 and ts.shape == (2, 75)
    assert torch.allclose(hear_codec.get_scene_embeddings(audio, hear), emb.mean(1))
    assert hear.scene_embedding_size == hear.timestamp_embedding_size == 64
    # bad input as for the other families
    with pytest.raises(ValueError, match="NaN"):
        hear_codec.get_scene_embeddings(torch.full((1, 100), float("nan")), hear)
    # weights that do not fit the stored config are a clear error
    mislabelled = copy.copy(tiny_model)  # the same weights, saved under a config with another width
    mislabelled.config = dataclasses.replace(tiny_model.config, dim=32)
    save_checkpoint(tmp_path / "bad.pt", mislabelled)
    with pytest.raises(CheckpointError, match="do not match"):
        load_checkpoint(tmp_path / "bad.pt")


def test_long_audio_is_chunked(tiny_model, rng):
    hear = hear_codec.HearModel(tiny_model, sample_rate=16000)
    audio = torch.rand(1, 16000 * 5, generator=rng) - 0.5  # 5 s > the tiny preset's 4 s chunks
    assert len(hear.chunk_plan(24000 * 5).chunks) > 1
    emb, ts = hear.timestamp_embeddings(audio)
    assert emb.shape == (1, 375, 64) and torch.isfinite(emb).all()
    assert torch.allclose(ts[0, 1:] - ts[0, :-1], torch.full((374,), 320 / 24), atol=1e-2)


@pytest.mark.slow
def test_hear_validator_passes(tiny_model, tmp_path):
    path = save_checkpoint(tmp_path / "audioformer-tiny.pt", tiny_model)
    result = subprocess.run([tool("hear-validator"), "hear_codec", "--model", str(path), "--device", "cpu"],
                            capture_output=True, text=True, timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Looks good" in result.stdout or "successfully" in result.stdout.lower(), result.stdout[-2000:]


def test_codes_are_computed_in_fp32_under_autocast(tiny_model, rng):
    """Under bf16 autocast the codes equal those computed outside it (a bf16 codec changes tokens)."""
    wav = torch.rand(1, 4800, generator=rng) - 0.5
    fp32_codes = tiny_model.encode_codes(wav)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(tiny_model.encode_codes(wav), fp32_codes)
