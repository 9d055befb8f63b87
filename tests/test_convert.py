"""Importing published EnCodecMAE files: detection, both layouts, every variant, errors, the CLI.

Parity uses the official reference outputs in ../shared/fixtures/encodecmae_official/ (random
weights, code 2dd6759): the fixture's state_dict and gin text are written out as a published v2
file, loaded through ``hear_codec.load_model`` (content detection) and compared with the official
activations. Variants without reference data (v1 layout, self-trained heads, sizes other than the
fixture's) are checked by round trips with official key names and shapes.
"""
from __future__ import annotations

import argparse
import subprocess
import sys

import pytest
import torch

import hear_codec
from hear_codec.checkpoint import CheckpointError, UnknownFormatError, detect, load_checkpoint
from hear_codec.convert import (UnsupportedVariant, check_on_dummy_input, config_from_gin, convert_file,
                                convert_state_dict, gin_layout, main)
from hear_codec.encodecmae import EncodecMAE
from hear_codec.gin import parse_gin
from conftest import ENCODECMAE_FIXTURES, assert_user_error, require_fixture, run_module
from official_encodecmae_helpers import (REPO, official_attention, official_state, v1_block_gin, v1_gin, v2_gin,
                                         v2_to_v1_state)

TOL = 1e-4


def rel_err(ours, ref) -> float:
    return float((ours.float() - ref.float()).abs().max() / ref.float().abs().max().clamp(min=1e-12))


def fixture(name):
    return torch.load(require_fixture(ENCODECMAE_FIXTURES / name), weights_only=True)


@pytest.fixture(scope="module")
def encodec_state():
    shared = fixture("encodec_random_shared.pt")
    return {k: v.float() for k, v in shared["encoder_state_dict_fp16"].items()}


def reference(variant, encodec_state=None):
    """(fixture dict, the official v2 state_dict as a published file holds it)."""
    ref = fixture(f"{variant}_small.pt")
    state = dict(ref["state_dict"])
    if variant == "ec":
        state.update({"wav_encoder.encoder.model." + k: v for k, v in encodec_state.items()})
    # Published files also carry the training-target codec; the importer must drop it.
    state["target_encoder.model.vq.layers.0._codebook.embed"] = torch.zeros(1024, 128)
    return ref, state


def write_v2(path, gin_text, state):
    torch.save({"imports": "encodecmae.models: encodecmae.models\n", "config": gin_text, "state_dict": state}, path)
    return path


# ---------------------------------------------------------------------------------------------
# parity with the official outputs, through the published-file path
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["mel", "ec"])
def test_published_v2_file_reproduces_official_activations(variant, encodec_state, tmp_path):
    ref, state = reference(variant, encodec_state)
    src = write_v2(tmp_path / "published.bin", ref["config"]["gin_text"], state)  # the name says nothing
    assert detect(src)[0] == "encodecmae-v2"
    hear = hear_codec.load_model(src, sample_rate=48000)
    model = hear.model
    assert model.config.codec_weights == "pretrained"
    assert (model.config.front_end == "mel256") == (variant == "mel")
    with torch.no_grad():
        features = model.input_features(ref["waveform"])  # the EnCodec pass (ec) is the slow part: once
        x = model.position(model.input_proj(features))
        final, streams, _ = model.encoder(x, None, return_layers=True)
        out = model(ref["waveform"], features=features)
    assert rel_err(torch.stack(streams[:-1] + [final]), ref["encoder_activations"]) < TOL
    assert rel_err(out["logits"], ref["eval_logits"]) < TOL
    # ... and again after `convert` wrote our format and load_model read it back: same weights.
    dst = tmp_path / "ours.ckpt"
    convert_file(src, dst)
    assert detect(dst)[0] == "hear_codec"
    again = hear_codec.load_model(dst).model
    assert again.metadata["layout"] == "v2" and "MODEL_DIM=64" in again.metadata["gin_config"]
    assert again.config == model.config
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in again.state_dict().items())


def test_v1_layout_of_the_same_weights_reproduces_official_activations(encodec_state, tmp_path):
    """v1 names (feat_projector, one shared positional encoder, wav_encoder.model) + config_str-style gin."""
    ref, state = reference("ec", encodec_state)
    assert torch.equal(state["masker.positional_encoder.scale"], state["decoder.positional_encoder.scale"])
    dims = ref["config"]["dims"]
    text = v1_gin(dim=dims["model_dim"], layers=dims["num_encoder_layers"], heads=dims["num_encoder_heads"],
                  dec_layers=dims["num_decoder_layers"], dec_heads=dims["num_decoder_heads"], ff=dims["ff_dim"])
    folder = tmp_path / "encodecmae-base"
    folder.mkdir()
    torch.save({"state_dict": v2_to_v1_state(state)}, folder / "model.pt")
    (folder / "config.gin").write_text(text)
    assert detect(folder / "model.pt")[0] == "encodecmae-v1"  # or its model.pt with config.gin beside it
    assert detect(folder)[0] == "encodecmae-v1"
    model = hear_codec.load_model(folder).model
    with torch.no_grad():
        out = model(ref["waveform"])
    assert rel_err(out["encoder_out"], ref["visible_embeddings"]) < TOL
    assert rel_err(out["logits"], ref["eval_logits"]) < TOL
    v2 = convert_state_dict(state, config_from_gin(ref["config"]["gin_text"]), "v2")
    v1 = convert_state_dict(v2_to_v1_state(state), config_from_gin(text), "v1")
    assert v1.keys() == v2.keys() and all(torch.equal(v1[k], v2[k]) for k in v1)


# ---------------------------------------------------------------------------------------------
# variants without reference data: official names and shapes from the config, round trips
# ---------------------------------------------------------------------------------------------
def test_v2_self_trained_head_predicts_the_kmeans_stream_only(tmp_path):
    text = v2_gin("mel256", dim=32, heads=4, st=True)
    config = config_from_gin(text)
    assert (config.num_codec_streams, config.num_kmeans_streams, config.num_streams) == (0, 1, 1)
    assert tuple(config.codec_stream_weights) == (1.0,)
    state = official_state("v2", 32, 2, 1, 64, 256, streams=1)
    model = hear_codec.load_model(write_v2(tmp_path / "st.pt", text, state)).model
    wav = torch.randn(1, 24000, generator=torch.Generator().manual_seed(0)) * 0.1
    with torch.no_grad():
        out = model(wav)
    assert out["logits"].shape[2:] == (1, 1024)
    expected = out["decoder_out"] @ state["head.layer.weight"].T + state["head.layer.bias"]
    assert rel_err(out["logits"].flatten(2), expected) < TOL


def test_v1_self_trained_keeps_eight_codec_streams_plus_kmeans(tmp_path):
    text = v1_gin(dim=32, heads=4, extra_targets=1)
    config = config_from_gin(text)
    assert (config.front_end, config.num_codec_streams, config.num_kmeans_streams) == ("ec", 8, 1)
    assert len(config.codec_stream_weights) == 9
    from hear_codec.codec import build_encoder

    enc = {k: v for k, v in build_encoder().state_dict().items()}
    state = official_state("v1", 32, 2, 1, 64, 128, streams=8, extra_streams=1, codec_encoder_state=enc)
    ours = convert_state_dict(state, config, "v1")
    assert torch.equal(ours["head.weight"][:8 * 1024], state["head.layer.weight"])
    assert torch.equal(ours["head.weight"][8 * 1024:], state["extra_head.layer.weight"])
    assert torch.equal(ours["position.scale"], ours["decoder_position.scale"])
    model = EncodecMAE(config)
    model.load_state_dict(ours, strict=True)


@pytest.mark.parametrize("dim,heads", [(48, 12), (48, 3), (1024 // 8, 16), (50, 4)])
def test_head_layout_permutation_matches_official_attention(dim, heads):
    """Sizes beyond the fixture's: ours (head-major) computes what the official (head-fastest) does.

    (50, 4) is the large recipe's case in miniature: heads of width 12 over 48 of 50 channels.
    """
    text = v2_gin("mel256", dim=dim, heads=heads, dec_heads=heads, ff=32, layers=1)
    config = config_from_gin(text)
    assert (config.dim, config.num_heads, config.decoder_heads) == (dim, heads, heads)
    state = official_state("v2", dim, 1, 1, 32, 256, streams=8, seed=dim + heads, heads=heads, dec_heads=heads)
    ours = convert_state_dict(state, config, "v2")
    model = EncodecMAE(config)
    model.load_state_dict(ours, strict=True)
    x = torch.randn(2, 7, dim, generator=torch.Generator().manual_seed(1))
    p = "visible_encoder.encoder_layers.0.att_layer."
    ref = official_attention(x, *(state[p + f"{w}.weight"] for w in ("wq", "wk", "wv", "wo")), heads)
    with torch.no_grad():
        assert rel_err(model.encoder.layers[0].attention(x), ref) < TOL


def test_large_and_small_sizes_come_from_the_config_text():
    small = config_from_gin(v2_gin("mel256", dim=768, layers=10, heads=12, dec_layers=2, dec_heads=12, ff=4096,
                                   extra="NUM_ENCODER_LAYERS=5\n"))
    assert (small.dim, small.num_layers, small.num_heads, small.ff_dim) == (768, 5, 12, 4096)
    # The official large recipe: MODEL_DIM=1024, NUM_ENCODER_LAYERS=20, heads left at 12 -> 85-wide heads.
    large_text = v2_gin("mel256", dim=1024, layers=20, heads=12, dec_layers=2, dec_heads=12, ff=4096)
    large = config_from_gin(large_text)
    assert (large.dim, large.num_layers, large.num_heads) == (1024, 20, 12)
    assert EncodecMAE(large).encoder.layers[0].attention.wq.weight.shape == (12 * 85, 1024)
    large16 = config_from_gin(v2_gin("mel256", dim=1024, layers=20, heads=16, dec_layers=2, dec_heads=16, ff=4096))
    assert (large16.dim, large16.num_layers, large16.num_heads) == (1024, 20, 16)


@pytest.mark.parametrize("extra", [0, 1])
def test_v1_config_str_and_block_styles_give_the_same_config(extra):
    a = config_from_gin(v1_gin(dim=40, layers=3, heads=5, ff=80, extra_targets=extra))
    b = config_from_gin(v1_block_gin(dim=40, layers=3, heads=5, ff=80, extra_targets=extra))
    assert a == b
    assert (a.front_end, a.dim, a.num_layers, a.num_heads, a.ff_dim, a.num_kmeans_streams) == ("ec", 40, 3, 5, 80, extra)


def test_gin_parser_reads_both_official_styles():
    b = parse_gin(v1_gin(dim=40))
    assert b["MODEL_DIM"] == "40"
    assert b["EncodecMAE.positional_encoder"] == "@tasks.models.transformers.SinusoidalPositionalEmbeddings"
    assert b["EncodecMAE.quantizer_weights"].startswith("[0.22407463,") and b["EncodecMAE.quantizer_weights"].endswith("]")
    assert gin_layout(v1_gin()) == "v1" and gin_layout(v2_gin()) == "v2"
    c = config_from_gin(v2_gin("ec", dim=40, heads=5, ff=80))
    assert (c.front_end, c.dim, c.num_heads, c.ff_dim, c.num_streams) == ("ec", 40, 5, 80, 8)


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("extra,match", [
    ("encodecmae.tasks.features.MelspectrogramProcessor.num_mel_bins=128", "num_mel_bins=128"),
    ("encodecmae.models.encoders.WavEncoder.encoder=@encodecmae.models.encoders.SEANetEncoder", "SEANetEncoder"),
    ("encoder/encodecmae.models.transformers.TransformerEncoder.norm_type='prenorm'", "prenorm"),
    ("encodecmae.models.targets.EncodecQuantizer.return_only_last=True", "return_only_last"),
    ("encoder/encodecmae.models.transformers.MultiHeadAttention.q_bias=True", "q_bias"),
])
def test_unsupported_variants_fail_listing_what_is_supported(extra, match):
    with pytest.raises(UnsupportedVariant, match=match) as err:
        config_from_gin(v2_gin("mel256", extra=extra))
    assert "hear_codec reads these published EnCodecMAE variants" in str(err.value)
    assert isinstance(err.value, CheckpointError)


def test_damaged_and_foreign_files_give_clear_errors(tmp_path):
    good = write_v2(tmp_path / "good.pt", v2_gin(), official_state("v2", 32, 2, 1, 64, 256, streams=8))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated, damaged, or not a torch file"):
        hear_codec.load_model(truncated)
    text = tmp_path / "notes.txt"
    text.write_text("not a model\n" * 20)
    with pytest.raises(CheckpointError, match="truncated, damaged, or not a torch file"):
        hear_codec.load_model(text)
    foreign = tmp_path / "foreign.pt"
    torch.save({"model": {"layer.weight": torch.zeros(2)}}, foreign)
    with pytest.raises(UnknownFormatError, match="not a hear_codec checkpoint nor a published EnCodecMAE") as err:
        hear_codec.load_model(foreign)
    assert "published EnCodecMAE v2 file" in str(err.value) and "v1 folder" in str(err.value)
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    torch.save({"state_dict": official_state("v1", 32, 2, 1, 64, 128, streams=8)}, lonely / "model.pt")
    with pytest.raises(UnknownFormatError, match="config.gin"):
        hear_codec.load_model(lonely / "model.pt")
    with pytest.raises(UnknownFormatError, match="model.pt and config.gin"):
        hear_codec.load_model(tmp_path)


def test_weights_that_disagree_with_the_config_are_rejected(tmp_path):
    state = official_state("v2", 32, 2, 1, 64, 256, streams=8)
    with pytest.raises(CheckpointError, match="does not match its gin config"):
        hear_codec.load_model(write_v2(tmp_path / "a.pt", v2_gin(st=True), state))  # 1-stream config, 8-stream head
    state["visible_encoder.encoder_layers.0.att_layer.rotary.freqs"] = torch.zeros(4)
    with pytest.raises(UnsupportedVariant, match="rotary"):
        hear_codec.load_model(write_v2(tmp_path / "b.pt", v2_gin(), state))


def test_pickled_objects_are_not_executed(tmp_path):
    path = tmp_path / "pickled.pt"
    torch.save({"config": v2_gin(), "state_dict": {}, "extra": argparse.Namespace(a=1)}, path)  # not weights-only
    with pytest.raises(CheckpointError, match="--allow-pickle"):
        detect(path)


# ---------------------------------------------------------------------------------------------
# command line and hear-validator
# ---------------------------------------------------------------------------------------------
def test_cli_help_and_refusal_to_overwrite(tmp_path):
    out = subprocess.run([sys.executable, "-m", "hear_codec.convert", "--help"], capture_output=True, text=True,
                         cwd=REPO, timeout=120)
    assert out.returncode == 0 and "SRC" in out.stdout.upper() and "config.gin" in out.stdout
    existing = tmp_path / "exists.ckpt"
    existing.write_text("x")
    with pytest.raises(SystemExit):
        main([str(existing), str(existing)])
    assert_user_error(run_module("hear_codec.convert", tmp_path / "missing.pt", tmp_path / "out.ckpt"), "not found")


def test_conversion_ends_with_a_check_on_a_dummy_input(tmp_path):
    """The written checkpoint must reproduce the converted model; non-finite outputs are refused."""
    config = config_from_gin(v2_gin("mel256", dim=32, heads=4, st=True))
    torch.manual_seed(0)
    converted, other = EncodecMAE(config).eval(), EncodecMAE(config).eval()
    check_on_dummy_input(converted, converted, "same.pt")
    with pytest.raises(CheckpointError, match="does not reproduce the converted model"):
        check_on_dummy_input(converted, other, "src.pt")
    with torch.no_grad():
        other.head.bias[0] = float("nan")
    with pytest.raises(CheckpointError, match=r"src.pt: on a dummy input .*finite: False"):
        check_on_dummy_input(other, other, "src.pt")
    src = write_v2(tmp_path / "st.pt", v2_gin("mel256", dim=32, heads=4, st=True),
                   official_state("v2", 32, 2, 1, 64, 256, streams=1))
    convert_file(src, tmp_path / "ours.ckpt")
    with pytest.raises(CheckpointError, match="already a hear_codec checkpoint"):
        convert_file(tmp_path / "ours.ckpt", tmp_path / "again.ckpt")


def test_cli_converted_checkpoint_passes_hear_validator(tmp_path):
    ref, state = reference("mel")
    src = write_v2(tmp_path / "mel256-ec-small_random.pt", ref["config"]["gin_text"], state)
    dst = tmp_path / "converted.ckpt"
    out = subprocess.run([sys.executable, "-m", "hear_codec.convert", str(src), str(dst)], capture_output=True,
                         text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "mel256" in out.stdout
    model = load_checkpoint(dst)
    with torch.no_grad():
        assert rel_err(torch.stack(model.embed_layers(ref["waveform"])), ref["encoder_activations"]) < TOL
    validator = REPO / ".venv" / "bin" / "hear-validator"
    if not validator.exists():
        validator = type(REPO)(sys.executable).parent / "hear-validator"
    assert validator.exists(), "hear-validator is not installed next to the interpreter; run `make venv`"
    run = subprocess.run([str(validator), "hear_codec", "--model", str(dst)], capture_output=True, text=True,
                         cwd=REPO, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
