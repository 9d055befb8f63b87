"""The transfer check (training/builtin/transfer_check.py): its probes, verdicts and the summary over
runs. Its held-out families: test_builtin_transfer_families.py; the check end to end on a 2-step run:
tests/test_pretrain.py (it needs a training run)."""
import subprocess
import sys

import numpy as np
import pytest

from hear_codec import cli
from training.builtin import transfer_check as TC


def test_stratified_probe_draws_use_k_per_class_and_separate_separable_data():
    rng = np.random.default_rng(0)
    y = np.arange(120) % 4
    pool, test = np.arange(80), np.arange(80, 120)
    separable = np.eye(4)[y] * 3 + 0.1 * rng.standard_normal((120, 4))
    scores = TC.probe_draws(separable, y, pool, test, 1, draws=5)
    assert len(scores) == 5 and scores.min() == 1.0
    noise = rng.standard_normal((120, 4))
    assert TC.probe_draws(noise, y, pool, test, 2, draws=5).mean() < 0.5  # chance 0.25
    assert len(TC.probe_draws(noise, y, pool, test, 20, draws=5)) == 1  # the whole pool
    with pytest.raises(ValueError, match="21 labelled clips per class"):
        TC.probe_draws(noise, y, pool, test, 21, draws=5)



def test_unstratified_probe_draws_hold_every_class_and_separate_separable_data():
    """The learning check's label budgets: n clips in all from the pool, each draw holding every class."""
    rng = np.random.default_rng(0)
    y = np.arange(120) % 4
    pool, test = np.arange(80), np.arange(80, 120)
    separable = np.eye(4)[y] * 3 + 0.1 * rng.standard_normal((120, 4))
    assert TC.probe_draws(separable, y, pool, test, 8, draws=5, stratified=False).min() == 1.0
    noise = rng.standard_normal((120, 4))
    assert TC.probe_draws(noise, y, pool, test, 8, draws=5, stratified=False).mean() < 0.5  # chance is 0.25
    assert len(TC.probe_draws(noise, y, pool, test, 80, draws=5, stratified=False)) == 1  # the whole pool
    with pytest.raises(ValueError, match="cannot hold all 4 classes"):
        TC.probe_draws(noise, y, pool, test, 3, draws=5, stratified=False)

def test_verdict_needs_a_gap_larger_than_the_spread():
    init = np.array([0.5, 0.6, 0.7])  # std 0.082
    assert TC.verdict(init, init + 0.1) == "better (> std)"
    assert TC.verdict(init, init + 0.05) == "better, within std"
    assert TC.verdict(init, init - 0.01) == "**not better**"


def test_class_separation_is_centroid_distance_over_within_class_spread():
    # two features, three classes; class 2 sits between 0 and 1 on feature 0 but far away on feature 1
    x = np.array([[0.0, 0.0], [0.0, 0.0], [2.0, 0.0], [2.0, 0.0], [1.0, 3.0], [1.0, 3.0]])
    x = np.concatenate([x + [0.5, 0.5], x - [0.5, 0.5]])  # each class: two clips +-0.5 from its centroid
    y = np.array([0, 0, 1, 1, 2, 2] * 2)
    sep = TC.class_separation(x, y)
    # standardised: feature 0 has std sqrt(2/3 + 1/4), feature 1 sqrt(2 + 1/4); within = 0.25/var0 + 0.25/var1
    var0, var1 = 2 / 3 + 0.25, 2 + 0.25
    within = 0.25 / var0 + 0.25 / var1
    assert sep.shape == (3, 3) and np.allclose(np.diag(sep), 0) and np.allclose(sep, sep.T)
    assert np.isclose(sep[0, 1], (4 / var0) / within)
    assert np.isclose(sep[0, 2], (1 / var0 + 9 / var1) / within)
    assert sep[0, 2] > sep[0, 1]


def test_closer_pairs_lists_the_pairs_training_brought_together():
    init = np.array([[0.0, 1.0, 2.0, 15], [1.0, 0.0, 1.0, 1], [2.0, 1.0, 0.0, 1], [15, 1, 1, 0]])
    # (0, 1): 1 -> 0.5, closer; (1, 2): 1 -> 0.85, not by enough; (0, 3): 15 -> 10, closer but far apart
    trained = np.array([[0.0, 0.5, 2.5, 10], [0.5, 0.0, 0.85, 1], [2.5, 0.85, 0.0, 1], [10, 1, 1, 0]])
    results = {"noise_events": {"separation": {"init": init, "trained": trained}}, "vowels": {}}  # vowels: none stored
    assert TC.closer_pairs(results) == [("noise_events", "impacts", "crackle", 1.0, 0.5)]


def _results(gaps_at_2: dict, spread: float = 0.05) -> dict:
    """Transfer results with init scores around 0.5 (std ``spread``) and trained = init + gap."""
    init = 0.5 + spread * np.array([-1.0, 1.0])  # std = spread
    return {family: {"init": {2: init, 24: np.array([0.9])}, "trained": {2: init + gap, 24: np.array([0.95])},
                     "log-mel": {2: init, 24: np.array([0.9])}, "chance": 0.25,
                     "separation": {"init": np.eye(2), "trained": 2 * np.eye(2)}}
            for family, gap in gaps_at_2.items()}


def test_summary_over_runs_gives_each_gap_its_verdict_and_the_mean_and_std(tmp_path):
    runs = {"s0": _results({"pitch": 0.08, "vowels": 0.2}), "s1": _results({"pitch": -0.02, "vowels": 0.1}),
            "s2": _results({"pitch": 0.03})}  # s2 has no vowels: only the families every run has
    for name, results in runs.items():
        (tmp_path / name).mkdir()
        TC.write_results(tmp_path / name, results)
    read = {name: TC.read_results(tmp_path / name) for name in runs}
    assert np.allclose(read["s0"]["pitch"]["trained"][2], runs["s0"]["pitch"]["trained"][2])
    assert np.allclose(read["s0"]["pitch"]["separation"]["trained"], runs["s0"]["pitch"]["separation"]["trained"])
    table = TC.summarise_runs(read)
    # gaps 0.08 (> std 0.05), -0.02, 0.03: mean 0.030, std 0.041; one of three runs better beyond the spread
    assert "| pitch | 2 | +0.080*, -0.020, +0.030 | +0.030 ± 0.041 | 1 of 3 |" in table
    assert "| pitch | 24 | +0.050, +0.050, +0.050 | +0.050 ± 0.000 | n/a (one fit) |" in table
    assert "vowels" not in table


def test_summary_refuses_a_missing_run_or_check_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="run folder not found"):
        TC.read_results(tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match="has no transfer_check.json: run python -m training.builtin.learning_check"):
        TC.read_results(tmp_path)
    for damaged in ('{"pitch": {"init": {"2": [0.5', '{"pitch": {"log-mel": {"2": [0.5]}}}', '[1, 2]',
                    '{"pitch": {"init": {"2": []}, "trained": {"2": [0.5]}}}',
                    '{"pitch": {"init": {"2": [NaN]}, "trained": {"2": [0.5]}}}'):
        (tmp_path / "transfer_check.json").write_text(damaged)
        with pytest.raises(cli.UserError, match="transfer_check.json is damaged or not a transfer check"):
            TC.read_results(tmp_path)
    (tmp_path / "transfer_check.json").unlink()
    # as a command: one line on stderr, status 2, no traceback
    proc = subprocess.run([sys.executable, "-m", "training.builtin.transfer_check", str(tmp_path / "nothing")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.startswith("error: run folder not found"), proc.stderr
    assert "Traceback" not in proc.stderr
