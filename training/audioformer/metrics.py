"""Fine-tuning metrics: macro mAP (multilabel) and accuracy (multiclass), and the chance level of each."""
from __future__ import annotations

import numpy as np
import torch


def mean_average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
    """Macro mAP over the classes that have at least one positive (as HEAR's and AudioSet's)."""
    from sklearn.metrics import average_precision_score

    keep = targets.sum(axis=0) > 0
    if not keep.any():
        return float("nan")
    return float(average_precision_score(targets[:, keep], scores[:, keep], average="macro"))


def accuracy(scores: np.ndarray, targets: np.ndarray) -> float:
    return float((scores.argmax(axis=1) == targets).mean())


def score(scores: torch.Tensor, targets: torch.Tensor, multilabel: bool) -> float:
    s, t = scores.float().cpu().numpy(), targets.cpu().numpy()
    return mean_average_precision(s, t) if multilabel else accuracy(s, t)


def chance(targets: torch.Tensor, multilabel: bool) -> float:
    """Score of an uninformed model: mAP = mean class prevalence; accuracy = majority-class share."""
    if multilabel:
        prevalence = targets.float().mean(0)
        return float(prevalence[prevalence > 0].mean())
    return float(torch.bincount(targets).max()) / len(targets)
