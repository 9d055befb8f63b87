"""k-means in torch (CPU or GPU): k-means++ seeding, Lloyd iterations, empty clusters re-seeded.

Written for self-training (k = 1024 clusters of ~10 k frames of 768-d features): distances are
computed in blocks so memory stays at ``block x k`` floats, and every step runs on the data's
device with no per-iteration host synchronisation except the convergence check.
"""
from __future__ import annotations

import torch


def _sq_dist(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Squared L2 distances [N, K] (clamped at 0 against rounding)."""
    return ((x * x).sum(1, keepdim=True) - 2 * x @ c.T + (c * c).sum(1)[None, :]).clamp_min_(0)


def assign(x: torch.Tensor, centroids: torch.Tensor, block: int = 65536) -> tuple:
    """Nearest centroid of each row: (index [N] int64, squared distance [N])."""
    idx, dist = [], []
    for start in range(0, x.shape[0], block):
        d = _sq_dist(x[start:start + block], centroids)
        m = d.min(dim=1)
        idx.append(m.indices)
        dist.append(m.values)
    return torch.cat(idx), torch.cat(dist)


def kmeans_plus_plus(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii): each new centre drawn with probability ∝ D(x)^2."""
    n = x.shape[0]
    first = torch.randint(n, (1,), generator=generator, device="cpu").item()
    centroids = [x[first]]
    closest = _sq_dist(x, x[first:first + 1]).squeeze(1)
    for _ in range(1, k):
        probs = closest / closest.sum() if float(closest.sum()) > 0 else torch.full_like(closest, 1.0 / n)
        nxt = torch.multinomial(probs.cpu(), 1, generator=generator).item()
        centroids.append(x[nxt])
        closest = torch.minimum(closest, _sq_dist(x, x[nxt:nxt + 1]).squeeze(1))
    return torch.stack(centroids)


def kmeans(x: torch.Tensor, k: int, iters: int = 50, seed: int = 0, tol: float = 1e-5,
           init: str = "k-means++") -> dict:
    """Cluster rows of ``x`` [N, D] into ``k`` groups.

    Returns {"centroids": [k, D] float32 (x's device), "inertia": mean squared distance to the
    nearest centroid, "iterations": Lloyd steps run}. Deterministic for a given seed and device.
    Empty clusters are re-seeded with the points farthest from their centroid.
    """
    if x.ndim != 2:
        raise ValueError(f"x must be [N, D], got {tuple(x.shape)}")
    n = x.shape[0]
    if n < k:
        raise ValueError(f"need at least k={k} points, got {n}")
    x = x.float()
    gen = torch.Generator().manual_seed(seed)
    if init == "k-means++":
        c = kmeans_plus_plus(x, k, gen)
    elif init == "random":
        c = x[torch.randperm(n, generator=gen)[:k].to(x.device)].clone()
    else:
        raise ValueError(f"init must be 'k-means++' or 'random', got {init!r}")
    prev = None
    it = 0
    for it in range(1, iters + 1):
        idx, dist = assign(x, c)
        counts = torch.bincount(idx, minlength=k).float()
        sums = torch.zeros_like(c).index_add_(0, idx, x)
        new = sums / counts.clamp_min(1)[:, None]
        empty = counts == 0
        if bool(empty.any()):
            far = torch.argsort(dist, descending=True)[: int(empty.sum())]
            new[empty] = x[far]
        c = new
        inertia = float(dist.mean())
        if prev is not None and prev - inertia <= tol * max(prev, 1e-12):
            break
        prev = inertia
    _, dist = assign(x, c)
    return {"centroids": c, "inertia": float(dist.mean()), "iterations": it}
