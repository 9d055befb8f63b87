"""The transfer check's pieces: held-out families (training/transfer_families.py) and its probes.

The check end to end on a 2-step run is in tests/test_pretrain.py (it needs a training run)."""
import numpy as np
import pytest

from training import transfer_check as TC
from training import transfer_families as TF


@pytest.mark.parametrize("family", sorted(TF.FAMILIES))
def test_every_family_makes_balanced_deterministic_clips(family):
    classes = len(TF.FAMILIES[family])
    wavs, labels = TF.make_task(family, 2 * classes, seed=3, seconds=0.5, sr=16000)
    assert wavs.shape == (2 * classes, 8000) and wavs.dtype == np.float32
    assert np.bincount(labels).tolist() == [2] * classes
    assert np.isfinite(wavs).all() and np.abs(wavs).max() <= 0.7 + 1e-6
    assert (np.abs(wavs).max(axis=1) >= 0.1 - 1e-6).all()  # peak-normalised: no silent clip
    again, _ = TF.make_task(family, 2 * classes, seed=3, seconds=0.5, sr=16000)
    assert np.array_equal(wavs, again)
    other, _ = TF.make_task(family, 2 * classes, seed=4, seconds=0.5, sr=16000)
    assert not np.allclose(wavs, other)


def test_unknown_family_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown held-out family 'speech'"):
        TF.make_task("speech", 4, seed=0)


def test_held_out_registers_hold_no_pitch_of_the_built_in_corpus():
    from training import data as D

    corpus = set(D.TONE_HZ) | set(D.NOTE_HZ) | set(D.CARRIER_HZ)
    for centre in TF.REGISTER_CENTRES:
        low, high = centre * 2 ** (-TF.REGISTER_SPREAD / 12), centre * 2 ** (TF.REGISTER_SPREAD / 12)
        assert not any(low <= f <= high for f in corpus), centre


def test_stratified_probe_draws_use_k_per_class_and_separate_separable_data():
    rng = np.random.default_rng(0)
    y = np.arange(120) % 4
    pool, test = np.arange(80), np.arange(80, 120)
    separable = np.eye(4)[y] * 3 + 0.1 * rng.standard_normal((120, 4))
    scores = TC.stratified_probe_draws(separable, y, pool, test, per_class=1, draws=5)
    assert len(scores) == 5 and scores.min() == 1.0
    noise = rng.standard_normal((120, 4))
    assert TC.stratified_probe_draws(noise, y, pool, test, per_class=2, draws=5).mean() < 0.5  # chance 0.25
    assert len(TC.stratified_probe_draws(noise, y, pool, test, per_class=20, draws=5)) == 1  # the whole pool
    with pytest.raises(ValueError, match="21 labelled clips per class"):
        TC.stratified_probe_draws(noise, y, pool, test, per_class=21, draws=5)


def test_verdict_needs_a_gap_larger_than_the_spread():
    init = np.array([0.5, 0.6, 0.7])  # std 0.082
    assert TC.verdict(init, init + 0.1) == "better (> std)"
    assert TC.verdict(init, init + 0.05) == "better, within std"
    assert TC.verdict(init, init - 0.01) == "**not better**"
