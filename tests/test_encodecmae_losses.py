"""EnCodecMAE's loss (training/encodecmae/losses.py) against a hand computation."""
import math

import pytest
import torch

from training.encodecmae.losses import encodecmae_loss


def ce(logits, target):
    """Cross-entropy of one frame by hand: log(sum exp) - logit[target]."""
    return math.log(sum(math.exp(v) for v in logits)) - logits[target]


def tiny_case():
    # B=1, T=3 frames, S=2 streams, V=3 codes. Frame 0 masked, frame 1 visible, frame 2 padding.
    logits = torch.tensor([[[[2.0, 0.5, -1.0], [0.0, 1.0, 0.0]],
                            [[0.3, 0.2, 0.1], [-2.0, 0.0, 3.0]],
                            [[9.0, -9.0, 0.0], [5.0, 5.0, 5.0]]]])
    targets = torch.tensor([[[0, 2, 1], [1, 2, 0]]])  # [B, S, T]
    mask = torch.tensor([[True, False, False]])
    padding = torch.tensor([[False, False, True]])
    return logits, targets, mask, padding


def test_equals_hand_computation():
    logits, targets, mask, padding = tiny_case()
    w = [0.7, 0.3]
    out = encodecmae_loss(logits, targets, mask, padding, w, masked_weight=0.9)
    L = logits[0].tolist()
    masked = w[0] * ce(L[0][0], 0) + w[1] * ce(L[0][1], 1)
    unmasked = w[0] * ce(L[1][0], 2) + w[1] * ce(L[1][1], 2)
    assert out["masked_loss"].item() == pytest.approx(masked, rel=1e-6)
    assert out["unmasked_loss"].item() == pytest.approx(unmasked, rel=1e-6)
    assert out["loss"].item() == pytest.approx(0.9 * masked + 0.1 * unmasked, rel=1e-6)
    # masked accuracy per stream: stream 0 predicts 0 (= target 0), stream 1 predicts 1 (= target 1)
    assert out["masked_accuracy_per_stream"].tolist() == [1.0, 1.0]


def test_means_over_frames_and_batch():
    """Two clips: each split is a mean over all of the batch's frames of that split."""
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 1, 5)
    targets = torch.randint(0, 5, (2, 1, 4))
    mask = torch.tensor([[True, True, False, False], [True, False, False, False]])
    padding = torch.tensor([[False, False, False, False], [False, False, False, True]])
    out = encodecmae_loss(logits, targets, mask, padding, [1.0])
    frame_ce = [[ce(logits[b, t, 0].tolist(), int(targets[b, 0, t])) for t in range(4)] for b in range(2)]
    masked = (frame_ce[0][0] + frame_ce[0][1] + frame_ce[1][0]) / 3
    unmasked = (frame_ce[0][2] + frame_ce[0][3] + frame_ce[1][1] + frame_ce[1][2]) / 4
    assert out["masked_loss"].item() == pytest.approx(masked, rel=1e-6)
    assert out["unmasked_loss"].item() == pytest.approx(unmasked, rel=1e-6)


def test_padding_is_excluded():
    logits, targets, mask, padding = tiny_case()
    base = encodecmae_loss(logits, targets, mask, padding, [0.7, 0.3])
    logits2, targets2 = logits.clone(), targets.clone()
    logits2[:, 2] = torch.randn(2, 3) * 50  # anything at the padded frame
    targets2[:, :, 2] = torch.tensor([2, 1])
    other = encodecmae_loss(logits2, targets2, mask, padding, [0.7, 0.3])
    assert other["loss"].item() == base["loss"].item()
    # and it receives no gradient
    logits3 = logits.clone().requires_grad_(True)
    encodecmae_loss(logits3, targets, mask, padding, [0.7, 0.3])["loss"].backward()
    assert torch.all(logits3.grad[:, 2] == 0)
    assert torch.any(logits3.grad[:, :2] != 0)
    # a padded frame that is also marked as masked still does not count
    mask2 = mask.clone()
    mask2[0, 2] = True
    assert encodecmae_loss(logits, targets, mask2, padding, [0.7, 0.3])["loss"].item() == base["loss"].item()


def test_empty_split_contributes_zero():
    logits, targets, _, _ = tiny_case()
    mask = torch.zeros(1, 3, dtype=torch.bool)
    padding = torch.zeros(1, 3, dtype=torch.bool)
    out = encodecmae_loss(logits, targets, mask, padding, [0.5, 0.5])
    assert out["masked_loss"].item() == 0.0
    assert out["loss"].item() == pytest.approx(0.1 * out["unmasked_loss"].item())


def test_shape_errors():
    logits, targets, mask, padding = tiny_case()
    with pytest.raises(ValueError):
        encodecmae_loss(logits, targets[:, :1], mask, padding, [1.0, 1.0])
    with pytest.raises(ValueError):
        encodecmae_loss(logits, targets, mask, padding, [1.0])
