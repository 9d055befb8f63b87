"""EnCodecMAE (hear_codec/encodecmae.py): the presets' shapes and sizes, padding. Parity with the
official code: test_parity_encodecmae.py; through the HEAR API: test_api.py."""
import pytest
import torch

from conftest import noise
from hear_codec import encodecmae


@pytest.mark.parametrize("name", ["tiny", "small", "base"])
@pytest.mark.parametrize("front_end", ["mel256", "ec"])
def test_presets_forward_shapes(name, front_end):
    config = encodecmae.preset(name, front_end=front_end)
    model = encodecmae.EncodecMAE(config).eval()
    wav = noise(1, 0.5, 24000)
    t = model.num_frames(wav.shape[1])
    mask = torch.zeros(1, t, dtype=torch.bool)
    mask[0, ::2] = True
    with torch.no_grad():
        out = model(wav, mask=mask)
        layers = model.embed_layers(wav)
    assert out["logits"].shape == (1, t, 8, 1024)
    assert out["encoder_out"].shape == (1, t - int(mask.sum()), config.dim)
    assert len(layers) == config.num_layers and layers[-1].shape == (1, t, config.dim)


def test_large_preset_builds():
    model = encodecmae.EncodecMAE(encodecmae.preset("large"))
    assert model.config.dim == 1024 and len(model.encoder.layers) == 20
    # One FFN per stack (shared by all layers, as in the official code).
    assert sum(p.numel() for p in model.encoder.parameters()) == (
        20 * (4 * 1024 * 1020 + 4 * 1024) + 2 * 1024 * 4096 + 4096 + 1024 + 2 * 1024)  # 12 heads of 85


def test_padding_does_not_change_valid_frames():
    model = encodecmae.EncodecMAE(encodecmae.preset("tiny")).eval()
    wav = noise(1, 1.0, 24000)
    t = model.num_frames(wav.shape[1])
    padded = torch.nn.functional.pad(wav, (0, 24000))
    t_pad = model.num_frames(padded.shape[1])
    padding = torch.arange(t_pad)[None] >= t
    mask = torch.zeros(1, t_pad, dtype=torch.bool)
    mask[0, 10:25] = True
    with torch.no_grad():
        a = model(wav, mask=mask[:, :t])["logits"]
        b = model(padded, mask=mask, padding_mask=padding)["logits"][:, :t]
    assert torch.allclose(a, b, atol=1e-4)


@pytest.mark.parametrize("front_end", ["mel256", "ec"])
def test_num_frames_is_what_the_front_end_makes(front_end):
    """The one framing rule (used by the HEAR API and by training's masks) counts the frames the
    front end really makes."""
    model = encodecmae.EncodecMAE(encodecmae.preset("tiny", front_end=front_end)).eval()
    for n in (637, 954, 955, 956, 24000, 24001, 48000):
        with torch.no_grad():
            made = model.input_features(torch.rand(1, n) - 0.5).shape[1]
        assert made == model.num_frames(n) == encodecmae.num_frames(front_end, n), n
