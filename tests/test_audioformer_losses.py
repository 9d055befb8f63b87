"""AudioFormer's MLM loss and the unigram baseline (training/audioformer/losses.py)."""
import torch

from hear_codec import audioformer as af
from training.audioformer.losses import mlm_loss, unigram_accuracy


def test_mlm_loss_counts_only_masked_positions():
    tokens = torch.tensor([[[af.BOA, 3, 4, af.EOA]]])
    mask = torch.tensor([[[False, True, False, False]]])
    logits = torch.zeros(1, 1, 4, 1024)
    logits[0, 0, 1, 3] = 10.0  # right on the masked position
    logits[0, 0, 2, 7] = 10.0  # wrong, but not masked: must not count
    out = mlm_loss(logits, tokens, mask)
    expected = -torch.log_softmax(logits[0, 0, 1], -1)[3]
    assert torch.allclose(out["loss"], expected) and out["accuracy"].tolist() == [1.0]


def test_unigram_baseline():
    train = af.codes_to_tokens(torch.tensor([[[1, 1, 2]]]))
    evals = af.codes_to_tokens(torch.tensor([[[1, 2, 2, 1]]]))
    assert unigram_accuracy(train, evals, af.is_code(evals)).tolist() == [0.5]
