"""Caption metrics: CIDEr-D against a hand computation, unavailable metrics reported with a reason."""
import math

import pytest

from training.enclap import metrics
from training.enclap.metrics import MetricResult, evaluate_captions, selection_metric, simple_tokenize

PREDICTIONS = {"dog": "dog barks", "rain": "rain falls"}
REFERENCES = {"dog": ["dog barks loudly"], "rain": ["rain falls"]}


def _hand_cider_d():
    """CIDEr-D by hand for PREDICTIONS/REFERENCES (the two clips share no word).

    Document frequencies: every n-gram occurs in one of N = 2 reference sets, so each weight is
    log(2) and the weights cancel in the cosine. Clip "dog", candidate 2 words vs reference 3:
      n=1: min-clipped dot = 2, norms sqrt(2) and sqrt(3)  -> 2 / sqrt(6)
      n=2: "dog barks" vs {"dog barks", "barks loudly"}     -> 1 / sqrt(2)
      n=3, 4: the candidate has none                        -> 0
      length penalty exp(-(2-3)^2 / (2 * 6^2)) = exp(-1/72)
      score = 10 * exp(-1/72) * (2/sqrt(6) + 1/sqrt(2)) / 4
    Clip "rain" equals its reference: n=1 and n=2 give 1, n=3, 4 give 0 -> 10 * 2 / 4 = 5.
    """
    dog = 10 * math.exp(-1 / 72) * (2 / math.sqrt(6) + 1 / math.sqrt(2)) / 4
    return (dog + 5.0) / 2


def test_cider_d_hand_checked_example():
    results, _ = evaluate_captions(PREDICTIONS, REFERENCES, ("cider_d",))
    assert results["cider_d"].value == pytest.approx(_hand_cider_d(), rel=1e-9)
    assert _hand_cider_d() == pytest.approx(4.3783, abs=1e-4)


def test_without_java_cider_d_runs_and_java_metrics_are_unavailable(monkeypatch):
    monkeypatch.setattr(metrics.shutil, "which", lambda name: None)
    results, tokenizer = evaluate_captions(PREDICTIONS, REFERENCES)
    assert tokenizer == "python"
    assert results["cider_d"].value == pytest.approx(_hand_cider_d(), rel=1e-9)
    for name in ("meteor", "spice", "spider"):
        assert results[name].value is None and "Java" in results[name].unavailable
    assert "unavailable" in str(results["spider"])
    assert selection_metric(results) == ("cider_d", results["cider_d"].value)


def test_missing_spice_models_are_reported_not_downloaded(monkeypatch, tmp_path):
    monkeypatch.setattr(metrics.shutil, "which", lambda name: "/usr/bin/java")
    monkeypatch.setattr(metrics, "_coco", lambda: tmp_path)  # no Stanford CoreNLP jars here
    reason = metrics.spice_unavailable_reason()
    assert "stanford-corenlp-3.6.0.jar" in reason
    assert selection_metric({"cider_d": MetricResult(0.5), "spider": MetricResult(None, reason)}) == ("cider_d", 0.5)
    assert selection_metric({"cider_d": MetricResult(0.5), "spider": MetricResult(0.3)}) == ("spider", 0.3)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="different clips"):
        evaluate_captions({"a": "x"}, {"b": ["x"]}, ("cider_d",))
    with pytest.raises(ValueError, match="at least one reference"):
        evaluate_captions({"a": "x"}, {"a": []}, ("cider_d",))
    with pytest.raises(ValueError, match="unknown metric"):
        evaluate_captions({"a": "x"}, {"a": ["x"]}, ("bleu",))


def test_python_tokenizer_matches_coco_conventions():
    assert simple_tokenize("A dog's bark, then RAIN.") == "a dog's bark then rain"
