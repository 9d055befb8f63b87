"""The transfer check (training/transfer_check.py): its probes and verdicts. Its held-out families:
test_transfer_families.py; the check end to end on a 2-step run: tests/test_pretrain.py (it needs a
training run)."""
import numpy as np
import pytest

from training import transfer_check as TC


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
