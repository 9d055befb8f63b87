"""AudioFormer's multi-positive contrastive (MPC) term for FT2 fine-tuning (Li et al., 2023;
docs/audioformer.md).

Each clip has one view per codebook: the mean-pooled last hidden state of that codebook's
backbone. The codebook-1 view is the anchor (its backbone trains); the views of codebooks 2..n_q
come from frozen backbones. The candidate set is the authors' MPC similarity matrix (the figure in
their repository's README): every view of every clip in the batch except the anchor itself. For
anchor i the positives are the other-codebook views of clip i; every view of another clip, its
anchor included, is a negative. With unit vectors a_i (anchors), z_jc (views, c = 2..n_q) and
temperature T::

    s(i, x) = a_i . x / T                         x in C_i = {a_j : j != i} u {z_jc : all j, c}
    l_i     = - 1/|P| sum_c [ s(i, z_ic) - log sum_{x in C_i} exp s(i, x) ]        (|P| = n_q - 1)
    MPC     = mean_i l_i

(the "L_out" multi-positive form of supervised contrastive learning: every positive has the
whole candidate set in its denominator). Only the anchors carry gradient: the views are detached
here, whatever the caller passed. FT2's loss is ``alpha * task + (1 - alpha) * MPC``.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F


def mpc_loss(anchors: torch.Tensor, views: torch.Tensor, temperature: float) -> torch.Tensor:
    """anchors [B, D] (codebook-1 clip embeddings); views [B, V, D] (the other codebooks' clip
    embeddings, V >= 1) -> scalar loss. Positives of anchor i: views[i, :]; negatives: the anchors
    and views of every other clip. The views get no gradient (their backbones are frozen).
    """
    if anchors.ndim != 2 or views.ndim != 3 or views.shape[0] != anchors.shape[0] or views.shape[2] != anchors.shape[1]:
        raise ValueError(f"expected anchors [B, D] and views [B, V, D], got {tuple(anchors.shape)} and "
                         f"{tuple(views.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    b, v, d = views.shape
    a = F.normalize(anchors.float(), dim=-1)
    z = F.normalize(views.detach().float(), dim=-1).reshape(b * v, d)
    # [B, B + B * V]: columns 0..B-1 are the anchors, column B + j * V + c is view c of clip j
    scores = torch.cat([a @ a.T, a @ z.T], dim=1) / temperature
    self_similarity = torch.eye(b, scores.shape[1], dtype=torch.bool, device=scores.device)
    scores = scores.masked_fill(self_similarity, float("-inf"))
    log_prob = scores[:, b:] - torch.logsumexp(scores, dim=1, keepdim=True)
    owner = torch.arange(b, device=anchors.device).repeat_interleave(v)  # clip of each view column
    positive = owner[None, :] == torch.arange(b, device=anchors.device)[:, None]
    return -(log_prob * positive).sum(dim=1).div(v).mean()


def ft2_loss(task_loss: torch.Tensor, mpc: torch.Tensor, alpha: float) -> torch.Tensor:
    """alpha * task + (1 - alpha) * MPC (the paper's alpha 0.8, then 0.97)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    return alpha * task_loss + (1.0 - alpha) * mpc
