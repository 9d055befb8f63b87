"""Fine-tuning metrics (training/audioformer/metrics.py)."""
import numpy as np
import pytest
import torch

from training.audioformer import metrics as M


def test_metrics():
    targets = np.array([[1, 0], [0, 1], [1, 1]])
    perfect = targets.astype(float)
    assert M.mean_average_precision(perfect, targets) == pytest.approx(1.0)
    assert M.accuracy(np.array([[0.1, 0.9], [0.8, 0.2]]), np.array([1, 1])) == 0.5


def test_chance_is_the_majority_share_or_the_mean_prevalence():
    assert M.chance(torch.tensor([0, 0, 0, 1]), multilabel=False) == 0.75
    assert M.chance(torch.tensor([[1.0, 0, 0], [1, 1, 0]]), multilabel=True) == pytest.approx(0.75)  # (1 + 0.5) / 2
