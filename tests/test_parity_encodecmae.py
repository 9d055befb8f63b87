"""Parity with the official EnCodecMAE code (habla-liaa/encodecmae @ 2dd6759) on its reference outputs.

The fixtures hold random-weight "mel256-ec" and "ec-ec" models (D=64, 2+1 layers), their gin
config, a test waveform, and every intermediate tensor of the official forward passes.
"""
from __future__ import annotations

import pytest
import torch

from conftest import ENCODECMAE_FIXTURES, assert_log_mel_close, require_fixture
from hear_codec import codec as codec_lib
from hear_codec.convert import config_from_gin, convert_state_dict
from hear_codec.encodecmae import EncodecMAE
from training.encodecmae.losses import encodecmae_loss

TOL = 1e-4


def rel_err(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return float((ours.float() - ref.float()).abs().max() / ref.float().abs().max().clamp(min=1e-12))


@pytest.fixture(scope="module")
def shared_codec():
    d = torch.load(require_fixture(ENCODECMAE_FIXTURES / "encodec_random_shared.pt"), weights_only=True)
    codec = codec_lib.load_codec("offline")  # skeleton; every weight used is overwritten below
    codec.encoder.load_state_dict({k: v.float() for k, v in d["encoder_state_dict_fp16"].items()})
    quantizer_state = {k: v.float() for k, v in d["quantizer_state_dict"].items()}
    missing, unexpected = codec.quantizer.load_state_dict(quantizer_state, strict=False)
    assert not unexpected and all(not k.startswith(tuple(f"vq.layers.{i}." for i in range(8))) for k in missing)
    return codec, d


@pytest.fixture(scope="module", params=["mel_small", "ec_small"])
def official(request, shared_codec):
    codec, shared = shared_codec
    ref = torch.load(require_fixture(ENCODECMAE_FIXTURES / f"{request.param}.pt"), weights_only=True)
    config = config_from_gin(ref["config"]["gin_text"])
    state = convert_state_dict(ref["state_dict"], config)
    if config.front_end == "ec":
        state.update({"front_end.encoder." + k: v.float() for k, v in shared["encoder_state_dict_fp16"].items()})
    model = EncodecMAE(config)
    model.load_state_dict(state, strict=True)
    return model.eval(), codec, ref


def test_config_read_from_gin(official):
    model, _, ref = official
    dims = ref["config"]["dims"]
    c = model.config
    assert (c.dim, c.num_layers, c.num_heads, c.decoder_layers, c.decoder_heads, c.ff_dim) == (
        dims["model_dim"], dims["num_encoder_layers"], dims["num_encoder_heads"], dims["num_decoder_layers"],
        dims["num_decoder_heads"], dims["ff_dim"])
    assert c.front_end == ("mel256" if "mel" in dims["input"] else "ec")


def test_parameter_count_matches_official(official):
    model, _, ref = official
    ours = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("front_end."))
    assert ours == ref["num_params_trainable_excl_encodec"]


@torch.no_grad()
def test_eval_forward_matches(official):
    model, _, ref = official
    wav = ref["waveform"]
    features = model.input_features(wav)
    if model.config.front_end == "mel256":  # the fbank's own bound (see conftest)
        assert_log_mel_close(features, ref["input_features"])
    else:
        assert rel_err(features, ref["input_features"]) < TOL
    assert rel_err(model.input_proj(features), ref["projected_features"]) < TOL
    layers = torch.stack(model.embed_layers(wav))  # [L, B, T, D]
    assert layers.shape == ref["encoder_activations"].shape
    assert rel_err(layers, ref["encoder_activations"]) < TOL
    assert rel_err(layers[:, 0], ref["extract_features_layer_all"]) < TOL
    assert rel_err(layers[-1], ref["visible_embeddings"]) < TOL
    out = model(wav)
    assert rel_err(out["decoder_in"], ref["decoder_in"]) < TOL
    assert rel_err(out["decoder_out"], ref["decoder_out"]) < TOL
    assert rel_err(out["logits"], ref["eval_logits"]) < TOL


@torch.no_grad()
def test_ec_front_end_streams_before_combination(official):
    """Per-layer x0 / x1 streams (what self-training reads) match too."""
    model, _, ref = official
    x = model.position(model.input_proj(model.input_features(ref["waveform"])))
    _, x0_streams, x1_last = model.encoder(x, return_layers=True)
    assert rel_err(torch.stack(x0_streams), ref["encoder_activations_branch0_no_postnorm"]) < TOL
    assert rel_err(x1_last, ref["encoder_activations_branch1_no_postnorm"][-1]) < TOL


def _targets(model, codec, wav):
    """8 EnCodec streams [B, 8, T_codec] and the encoder features they quantize [B, T_codec, 128]."""
    features = model.input_features(wav) if model.config.front_end == "ec" else codec.encode_features(wav)
    return codec.quantize_features(features, 8), features


def assert_codes_match_up_to_ties(codec, features, ours, ref, max_mismatch=0.01):
    """Codes equal the reference except where the first differing stream was a near-tie.

    A 1e-6 difference in encoder features (another conv kernel, another batch size) can flip an
    argmin between two almost equidistant codewords, and every later stream then differs.
    ours, ref: [B, S, T]; features [B, T, 128].
    """
    differs = (ours != ref).any(dim=1)  # [B, T]
    assert differs.float().mean() <= max_mismatch, f"{int(differs.sum())} frames differ"
    layers = codec.quantizer.vq.layers
    for b, t in torch.nonzero(differs).tolist():
        s = int(torch.nonzero(ours[b, :, t] != ref[b, :, t])[0])
        residual = features[b, t].clone()
        for i in range(s):
            residual -= layers[i]._codebook.embed[ours[b, i, t]]
        embed = layers[s]._codebook.embed
        d_ours = (residual - embed[ours[b, s, t]]).norm()
        d_ref = (residual - embed[ref[b, s, t]]).norm()
        assert abs(d_ours - d_ref) <= 1e-4 * d_ours, f"frame {t} stream {s}: not a tie ({d_ours} vs {d_ref})"


@torch.no_grad()
def test_target_codes_and_eval_loss_match(official):
    model, codec, ref = official
    wav = ref["waveform"]
    codes, features = _targets(model, codec, wav)
    assert_codes_match_up_to_ties(codec, features, codes, ref["eval_target_codes"].transpose(0, 1))
    out = model(wav)
    t = out["logits"].shape[1]
    no_mask = torch.zeros(1, t, dtype=torch.bool)
    losses = encodecmae_loss(out["logits"], codes[..., :t], no_mask, no_mask, model.config.codec_stream_weights,
                             model.config.masked_loss_weight)
    expected = ref["eval_losses"]
    assert abs(float(losses["loss"]) - expected["loss"]) < TOL * expected["loss"]
    assert abs(float(losses["unmasked_loss"]) - expected["unmasked_loss"]) < TOL * expected["unmasked_loss"]
    assert float(losses["masked_loss"]) == 0.0


@torch.no_grad()
def test_masked_training_forward_matches(official):
    model, codec, ref = official
    wav, mask = ref["train_waveform"], ref["train_non_visible_mask"]
    for row, idx in zip(mask, ref["train_masked_indices"]):
        assert torch.equal(torch.nonzero(row).flatten(), idx)
    out = model(wav, mask=mask)
    assert rel_err(out["encoder_out"], ref["train_visible_embeddings"]) < TOL
    assert rel_err(out["decoder_in"], ref["train_decoder_in_unmasked"]) < TOL
    assert (out["decoder_in"][mask] == 0).all()  # no mask token: masked slots are exactly zero
    assert rel_err(out["decoder_out"], ref["train_decoder_out"]) < TOL
    codes, features = _targets(model, codec, wav)
    assert_codes_match_up_to_ties(codec, features, codes, ref["train_target_codes"].transpose(0, 1))
    codes = ref["train_target_codes"].transpose(0, 1)  # the loss is compared on the official targets
    padding = torch.zeros_like(mask)
    losses = encodecmae_loss(out["logits"], codes, mask, padding, model.config.codec_stream_weights,
                             model.config.masked_loss_weight)
    for key in ("loss", "masked_loss", "unmasked_loss"):
        assert abs(float(losses[key]) - ref["train_losses"][key]) < TOL * ref["train_losses"][key], key
    for i in range(8):
        weighted = model.config.codec_stream_weights[i] * losses["masked_ce_per_stream"][i]
        assert abs(float(weighted) - ref["train_losses"][f"masked_loss_q{i}"]) < 1e-4
