"""AudioFormer's MLM loss, and the baseline it must beat. (FT2's contrastive term is ``mpc.py``.)"""
from __future__ import annotations

import torch
from torch.nn import functional as F

from hear_codec import audioformer as af


def mlm_loss(logits, tokens: torch.Tensor, mask: torch.Tensor) -> dict:
    """Cross-entropy on the chosen positions, averaged per codebook, then over codebooks.

    logits: [B, Q, L, 1024], or a list of Q tensors [n_c, 1024] holding only codebook c's masked
    positions in row-major order (``AudioFormer.forward(tokens, mask)``); tokens [B, Q, L]
    (uncorrupted); mask [B, Q, L] chosen positions. Also returns per-codebook ``ce`` and ``accuracy`` [Q].
    """
    q = tokens.shape[1]
    if isinstance(logits, torch.Tensor):
        logits = [logits[:, c][mask[:, c]] for c in range(q)]
    ce, acc = [], []
    for c in range(q):
        target = tokens[:, c][mask[:, c]]
        if len(target) == 0:
            ce.append(logits[c].sum() * 0.0)
            acc.append(torch.zeros((), device=tokens.device))
            continue
        ce.append(F.cross_entropy(logits[c].float(), target))
        acc.append((logits[c].argmax(-1) == target).float().mean())
    ce = torch.stack(ce)
    return dict(loss=ce.mean(), ce=ce.detach(), accuracy=torch.stack(acc).detach())


def unigram_accuracy(train_tokens: torch.Tensor, eval_tokens: torch.Tensor, eval_mask: torch.Tensor) -> torch.Tensor:
    """The baseline an MLM must beat: always predict each codebook's most frequent training code.

    train_tokens [N, Q, L]; eval_tokens/eval_mask [M, Q, L] -> accuracy per codebook [Q].
    """
    q = train_tokens.shape[1]
    out = torch.zeros(q)
    for c in range(q):
        seq = train_tokens[:, c]
        mode = torch.bincount(seq[af.is_code(seq)], minlength=af.CODEBOOK_SIZE).argmax()
        m = eval_mask[:, c]
        out[c] = (eval_tokens[:, c][m] == mode).float().mean()
    return out
