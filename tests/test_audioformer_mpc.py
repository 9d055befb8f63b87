"""FT2's multi-positive contrastive term against a hand computation."""
import math

import pytest
import torch

from training.audioformer.mpc import ft2_loss, mpc_loss


def test_mpc_equals_hand_computation():
    # Two clips, three codebooks: anchor = codebook 1, views = codebooks 2 and 3 (already unit length).
    anchors = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    views = torch.tensor([[[1.0, 0.0], [0.6, 0.8]],     # clip 0, codebooks 2 and 3
                          [[0.0, 1.0], [-0.8, 0.6]]])   # clip 1
    t = 0.5
    # Each anchor against every other view of the batch (the authors' MPC matrix without its diagonal):
    # the other clip's anchor, then clip0-cb2, clip0-cb3, clip1-cb2, clip1-cb3.
    s0 = {"a1": 0.0, "z02": 1.0, "z03": 0.6, "z12": 0.0, "z13": -0.8}
    s1 = {"a0": 0.0, "z02": 0.0, "z03": 0.8, "z12": 1.0, "z13": 0.6}
    lse0 = math.log(sum(math.exp(s / t) for s in s0.values()))
    lse1 = math.log(sum(math.exp(s / t) for s in s1.values()))
    l0 = -((s0["z02"] / t - lse0) + (s0["z03"] / t - lse0)) / 2  # positives of clip 0: its own cb2, cb3
    l1 = -((s1["z12"] / t - lse1) + (s1["z13"] / t - lse1)) / 2
    expected = (l0 + l1) / 2
    assert mpc_loss(anchors, views, t).item() == pytest.approx(expected, rel=1e-6)


def test_mpc_normalises_and_prefers_matching_views():
    g = torch.Generator().manual_seed(0)
    anchors = torch.randn(8, 16, generator=g)
    matched = anchors[:, None, :].repeat(1, 3, 1) * 5.0  # scaled copies: normalised away
    shuffled = matched[torch.roll(torch.arange(8), 1)]
    assert mpc_loss(anchors, matched, 0.05) < mpc_loss(anchors, shuffled, 0.05)
    assert torch.allclose(mpc_loss(anchors, matched, 0.1), mpc_loss(anchors * 3, matched, 0.1))


def test_mpc_gradient_reaches_anchor_only_when_views_are_frozen():
    # The views come from frozen backbones: even views that require grad (a caller that forgot
    # no_grad) get none, while the anchors get a finite, non-zero one.
    anchors = torch.randn(4, 8, requires_grad=True)
    views = torch.randn(4, 3, 8, requires_grad=True)
    mpc_loss(anchors, views, 0.05).backward()
    assert anchors.grad is not None and torch.isfinite(anchors.grad).all() and anchors.grad.abs().sum() > 0
    assert views.grad is None


def test_ft2_mix_and_bad_arguments():
    assert ft2_loss(torch.tensor(2.0), torch.tensor(4.0), 0.8).item() == pytest.approx(0.8 * 2 + 0.2 * 4)
    with pytest.raises(ValueError, match="alpha"):
        ft2_loss(torch.tensor(1.0), torch.tensor(1.0), 1.5)
    with pytest.raises(ValueError, match="temperature"):
        mpc_loss(torch.randn(2, 4), torch.randn(2, 1, 4), 0.0)
    with pytest.raises(ValueError, match="anchors"):
        mpc_loss(torch.randn(2, 4), torch.randn(3, 1, 4), 0.1)
