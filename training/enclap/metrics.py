"""Captioning metrics: METEOR, CIDEr-D, SPICE, SPIDEr via ``pycocoevalcap`` (the COCO caption toolkit).

Why pycocoevalcap and not aac-metrics: aac-metrics (0.5/0.6) imports ``msclap`` at package import,
and msclap pins numpy<2, transformers<5 and a torchvision for torch 2.1, which cannot be installed
next to this project's torch 2.13 / numpy 2 / transformers 5. aac-metrics ports the same Java
tools and the same CIDEr-D code that pycocoevalcap ships.

Availability:
* CIDEr-D is pure Python and always runs.
* Tokenisation: the Stanford PTB tokenizer (Java) when ``java`` is on PATH, as in published
  results; otherwise a Python equivalent (lower case, punctuation removed), and the report says so.
* METEOR needs Java (its jar and data ship with pycocoevalcap).
* SPICE needs Java and the Stanford CoreNLP 3.6.0 jars, which pycocoevalcap downloads on first use;
  offline they are missing and SPICE (and so SPIDEr) is reported unavailable, never as a number.
"""
from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

METRICS = ("meteor", "cider_d", "spice", "spider")


@dataclass
class MetricResult:
    """A corpus-level score, or ``value=None`` with the reason it could not be computed."""

    value: float | None
    unavailable: str | None = None

    def __str__(self):
        return f"{self.value:.4f}" if self.value is not None else f"unavailable ({self.unavailable})"


def _coco():
    """The installed pycocoevalcap folder (it is a namespace package: no ``__file__``)."""
    try:
        from pycocoevalcap.cider import cider
    except ImportError as e:
        raise ImportError("caption metrics need pycocoevalcap: pip install pycocoevalcap==1.2") from e
    return Path(cider.__file__).parents[1]


def java_available() -> bool:
    return shutil.which("java") is not None


def spice_unavailable_reason() -> str | None:
    """Why SPICE cannot run here, or None if it can."""
    if not java_available():
        return "needs Java (java not found on PATH)"
    lib = _coco() / "spice" / "lib"
    needed = ["stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar"]
    missing = [n for n in needed if not (lib / n).is_file()]
    if missing:
        return (
            f"Stanford CoreNLP jars missing in {lib} ({', '.join(missing)}); with network access run "
            "`python -c 'from pycocoevalcap.spice.get_stanford_models import get_stanford_models as g; g()'`"
        )
    return None


def simple_tokenize(caption: str) -> str:
    """Python stand-in for the PTB tokenizer as the COCO toolkit uses it: lower case, no punctuation."""
    return " ".join(re.findall(r"[a-z0-9]+(?:'[a-z]+)?", caption.lower()))


def tokenize(captions: dict[str, list[str]]) -> tuple[dict[str, list[str]], str]:
    """{id: [caption, ...]} -> tokenised captions and the tokenizer's name."""
    if java_available():
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

        try:
            gts = {k: [{"caption": c} for c in v] for k, v in captions.items()}
            return PTBTokenizer().tokenize(gts), "ptb"
        except Exception:  # a broken Java install must not take CIDEr-D down with it
            pass
    return {k: [simple_tokenize(c) for c in v] for k, v in captions.items()}, "python"


def evaluate_captions(predictions: dict[str, str], references: dict[str, list[str]],
                      metrics=METRICS) -> tuple[dict[str, MetricResult], str]:
    """Corpus scores of one predicted caption per clip against all its references.

    Returns ({metric: MetricResult}, tokenizer name). Ids of ``predictions`` and ``references``
    must match; every clip needs at least one reference.
    """
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {METRICS}")
    if set(predictions) != set(references):
        raise ValueError(
            f"predictions and references cover different clips ({len(set(predictions) - set(references))} "
            f"without references, {len(set(references) - set(predictions))} without a prediction)"
        )
    if not predictions:
        raise ValueError("no captions to evaluate")
    if any(not refs for refs in references.values()):
        raise ValueError("every clip needs at least one reference caption")
    _coco()
    keys = sorted(predictions)
    both, tokenizer = tokenize({**{"ref/" + k: references[k] for k in keys}, **{"hyp/" + k: [predictions[k]] for k in keys}})
    gts = {k: both["ref/" + k] for k in keys}
    res = {k: both["hyp/" + k] for k in keys}

    out: dict[str, MetricResult] = {}
    if "cider_d" in metrics or "spider" in metrics:
        out["cider_d"] = MetricResult(cider_d_tokenized(gts, res))
    if "meteor" in metrics:
        out["meteor"] = _run_java_metric("meteor", gts, res)
    if "spice" in metrics or "spider" in metrics:
        reason = spice_unavailable_reason()
        out["spice"] = MetricResult(None, reason) if reason else _run_java_metric("spice", gts, res)
    if "spider" in metrics:
        spice = out["spice"]
        out["spider"] = (
            MetricResult((out["cider_d"].value + spice.value) / 2)
            if spice.value is not None
            else MetricResult(None, f"needs SPICE: {spice.unavailable}")
        )
    return {m: out[m] for m in metrics}, tokenizer


def cider_d_tokenized(references: dict[str, list[str]], predictions: dict[str, list[str]]) -> float:
    """Corpus CIDEr-D of already tokenised captions ({id: [caption]} for predictions)."""
    from pycocoevalcap.cider.cider import Cider  # COCO's "CIDEr" is CIDEr-D (clipping, length penalty)

    return float(Cider().compute_score(references, predictions)[0])


def _run_java_metric(name: str, gts, res) -> MetricResult:
    if not java_available():
        return MetricResult(None, "needs Java (java not found on PATH)")
    try:
        if name == "meteor":
            from pycocoevalcap.meteor.meteor import Meteor as Scorer
        else:
            from pycocoevalcap.spice.spice import Spice as Scorer
        return MetricResult(float(Scorer().compute_score(gts, res)[0]))
    except Exception as e:  # reported, never turned into a number
        return MetricResult(None, f"{name} failed: {type(e).__name__}: {e}")


def selection_metric(results: dict[str, MetricResult]) -> tuple[str, float]:
    """Checkpoint-selection score: SPIDEr when it could be computed, else CIDEr-D."""
    if results.get("spider") is not None and results["spider"].value is not None:
        return "spider", results["spider"].value
    return "cider_d", results["cider_d"].value
