"""AudioFormer's masking: which code tokens the MLM predicts, and how they are corrupted (BERT's rule).

The masks are drawn in the training step from a generator seeded by (seed, optimiser step,
micro-batch, rank) (``module.AudioFormerMLM``), so a resumed run draws the masks it would have drawn.
"""
from __future__ import annotations

import torch

from hear_codec import audioformer as af


def mlm_mask(tokens: torch.Tensor, prob: float = 0.25, generator: torch.Generator | None = None) -> torch.Tensor:
    """Choose the positions to predict: tokens [..., L] -> mask [..., L] bool.

    In every sequence exactly round(prob * n) of its n code tokens are chosen (at least one if
    n > 0), uniformly without replacement; special tokens (BOA, EOA, PAD) never are.
    """
    codes = af.is_code(tokens)
    n = codes.sum(-1, keepdim=True)
    k = torch.where(n > 0, (n.double() * prob).round().long().clamp(min=1), n)
    scores = torch.rand(tokens.shape, generator=generator).to(tokens.device)
    scores = scores.masked_fill(~codes, 2.0)  # specials sort last
    rank = scores.argsort(-1).argsort(-1)
    return rank < k


def corrupt(tokens: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None,
            mask_token: float = 0.8, random_token: float = 0.1) -> torch.Tensor:
    """BERT corruption of the chosen positions: [MASK] with p=0.8, a random code with p=0.1, else kept."""
    u = torch.rand(tokens.shape, generator=generator).to(tokens.device)
    random_codes = torch.randint(0, af.CODEBOOK_SIZE, tokens.shape, generator=generator).to(tokens.device)
    out = torch.where(mask & (u < mask_token), torch.full_like(tokens, af.MASK), tokens)
    return torch.where(mask & (u >= mask_token) & (u < mask_token + random_token), random_codes, out)
