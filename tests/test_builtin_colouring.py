"""The built-in run's input colouring (training/builtin/colouring.py): the curves, their units,
where they are drawn (the collate, exact resume) and where they are applied (training steps only)."""
import math
from types import SimpleNamespace

import pytest
import torch

from hear_codec import encodecmae as emae
from training.builtin import colouring
from training.builtin.corpus import SyntheticCorpus
from training.encodecmae import module as encodecmae_module
from training.encodecmae.masking import MaskingCollate, frames_for


def test_curves_are_smooth_bounded_and_reproducible():
    gen = torch.Generator().manual_seed(0)
    curves = colouring.draw_curves(512, 256, 6.0, gen)
    assert curves.shape == (512, 256)
    assert curves.abs().max() <= colouring.COMPONENTS * 6.0
    assert curves.abs().max() > 6.0  # the components add up: some curves go well past one component's depth
    # A few dB of colour per clip, not a whisper nor a wall (a tilt and a bump of up to 6 dB: about 2.8).
    assert 2.0 < curves.std(dim=1).mean() < 6.0
    # Smooth: cosine k changes by at most pi k / 255 of its amplitude from one bin to the next, so
    # neighbouring bins differ by a fraction of a dB.
    slope = 6.0 * math.pi * sum(range(1, colouring.COMPONENTS + 1)) / 255
    assert (curves[:, 1:] - curves[:, :-1]).abs().max() < slope
    # Each clip its own curve, and the same ones again from the same seed.
    assert curves.std(dim=0).min() > 1.0
    assert torch.equal(colouring.draw_curves(512, 256, 6.0, torch.Generator().manual_seed(0)), curves)
    assert torch.equal(colouring.draw_curves(4, 256, 0.0), torch.zeros(4, 256))
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="depth_db"):
            colouring.draw_curves(2, 256, bad)


def test_a_flat_curve_of_d_db_is_the_clip_d_db_louder():
    """The unit conversion: the front end's log-mel is ln(power), normalised by mel_std, so adding
    ``in_feature_units`` of a flat +6 dB is the same as making the waveform 6 dB louder (in every
    bin above the energy floor, which no gain moves)."""
    cfg = emae.preset("tiny")
    front_end = emae.MelFrontEnd(cfg.mel_mean, cfg.mel_std)
    wav = torch.randn(1, 24000, generator=torch.Generator().manual_seed(1)) * 0.1
    louder = front_end(wav * 10 ** (6.0 / 20))
    coloured = front_end(wav) + colouring.in_feature_units(torch.full((1, 256), 6.0), cfg.mel_std)[:, None, :]
    floored = louder == louder.min()  # mel bins narrower than the FFT's spacing hold Kaldi's energy floor
    assert 0 < floored.float().mean() < 0.05
    assert torch.allclose(coloured[~floored], louder[~floored], atol=1e-3)


def _items(n=8):
    corpus = SyntheticCorpus(n, seconds=2.0, seed=1)
    return [dict(corpus[i], seed=i) for i in range(n)]


def _colouring(depth_db=6.0, until=1.0):
    return colouring.Colouring(colouring.ColourConfig(depth_db, until), emae.preset("tiny").mel_std)


def test_the_collate_draws_the_curves_from_the_items_seeds_after_the_masks():
    items = _items()
    plain = MaskingCollate("mel256", 48000)(items)
    coloured = MaskingCollate("mel256", 48000, augment=_colouring())(items)
    assert "augment" not in plain
    assert coloured["augment"].shape == (8, emae.MelFrontEnd.input_dim)
    assert torch.equal(coloured["mask"], plain["mask"])  # colouring changes no mask
    again = MaskingCollate("mel256", 48000, augment=_colouring())(items)
    assert torch.equal(again["augment"], coloured["augment"])  # a function of the items (exact resume)
    other = MaskingCollate("mel256", 48000, augment=_colouring())([dict(it, seed=it["seed"] + 100) for it in items])
    assert not torch.equal(other["augment"], coloured["augment"])
    with pytest.raises(ValueError, match="above 0 dB"):
        _colouring(0.0)


def test_the_first_share_of_a_runs_steps_are_coloured_and_the_rest_clean():
    coloured = [s for s in range(2400) if colouring.is_coloured_step(s, 2400, 0.75)]
    assert coloured == list(range(1800))  # the built-in run: steps 0-1799 coloured, the last 600 clean
    assert all(colouring.is_coloured_step(s, 10, 1.0) for s in range(10))
    assert [colouring.is_coloured_step(s, 4, 0.5) for s in range(4)] == [True, True, False, False]
    assert colouring.is_coloured_step(5000, None, 0.75)  # no trainer attached: no known end, so coloured


class BatchCodes(torch.nn.Module):
    """A target source that reads each batch's own ``codes``: 8 streams of 16 codes."""

    name, weights, vocab_size = "batch-codes", (0.125,) * 8, 16

    def forward(self, batch, features):
        return batch["codes"][..., : features.shape[1]]


def test_only_training_steps_colour_the_input_and_the_targets_stay_the_clean_clips(monkeypatch):
    cfg = emae.preset("tiny", chunk_seconds=2.0, vocab_size=16)
    module = encodecmae_module.EncodecMAEModule(cfg, BatchCodes(), augment=_colouring(until=1.0))
    module.log = lambda *a, **k: None  # no trainer attached
    batch = MaskingCollate("mel256", 48000, augment=module.augment)(_items(4))
    t = frames_for("mel256", 48000)
    batch["codes"] = torch.randint(0, 16, (4, 8, t), generator=torch.Generator().manual_seed(2))
    inputs, targets = [], []
    real_forward, real_loss = module.model.forward, encodecmae_module.encodecmae_loss
    module.model.forward = lambda *a, **k: (inputs.append(k["features"]), real_forward(*a, **k))[1]
    monkeypatch.setattr(encodecmae_module, "encodecmae_loss", lambda logits, tg, *a: (targets.append(tg),
                                                                                     real_loss(logits, tg, *a))[1])
    clean, _ = module.targets_and_features(batch)
    module._step(batch, "train")
    module._step(batch, "val")
    expected = clean + colouring.in_feature_units(batch["augment"], cfg.mel_std)[:, None, :]
    assert torch.allclose(inputs[0], expected) and not torch.allclose(inputs[0], clean)
    assert torch.equal(inputs[1], clean)
    assert torch.equal(targets[0], batch["codes"]) and torch.equal(targets[1], batch["codes"])

    # Past the run's coloured share (step 3 of 4, the first half coloured) a training step is clean too.
    inputs.clear()
    module.augment = _colouring(until=0.5)
    monkeypatch.setattr(module, "_trainer", SimpleNamespace(max_steps=4, global_step=3), raising=False)
    module._step(batch, "train")
    assert torch.equal(inputs[0], clean)
    module._trainer.global_step = 1
    module._step(batch, "train")
    assert torch.allclose(inputs[1], expected)
