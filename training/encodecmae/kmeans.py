"""k-means in torch (CPU or GPU), the algorithm of scikit-learn's ``KMeans`` defaults.

The official self-training fits ``sklearn.cluster.KMeans(n_clusters=1024)`` (scikit-learn 1.3 in
September 2023: greedy k-means++ seeding, ``n_init=10``, ``max_iter=300``, ``tol=1e-4``, Lloyd).
This is the same algorithm, written in torch so that it runs on the training GPU:

* greedy k-means++ seeding: each new centre is the best (lowest total squared distance) of
  ``2 + floor(ln k)`` candidates drawn with probability proportional to D(x)^2;
* Lloyd iterations until the labels stop changing or the centres move less than ``tol`` times
  the mean per-feature variance of the data (squared shift summed over centres), at most
  ``iters``; an empty cluster is re-seeded with the point farthest from its centre;
* the best of ``n_init`` seedings by inertia.

What differs from scikit-learn: the random streams (torch's generator, so not the same centres
for the same seed), float32 arithmetic (scikit-learn keeps float32 input in float32 too, but sums
in a different order), ``inertia`` reported as the *mean* squared distance (scikit-learn's
``inertia_`` is the sum), and several empty clusters in one step are all re-seeded from the
farthest points at once. ``tests/test_encodecmae_kmeans.py`` compares the inertia with scikit-learn's.

Distances are computed in blocks, so memory stays at ``block x k`` floats.
"""
from __future__ import annotations

import math

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


def kmeans_plus_plus(x: torch.Tensor, k: int, generator: torch.Generator, local_trials: int | None = None) -> torch.Tensor:
    """Greedy k-means++ seeding (scikit-learn's ``init="k-means++"``): [k, D] centres, rows of x."""
    n = x.shape[0]
    trials = 2 + int(math.log(k)) if local_trials is None else int(local_trials)
    first = torch.randint(n, (1,), generator=generator).item()
    centres = [x[first]]
    closest = _sq_dist(x, x[first:first + 1]).squeeze(1)  # [N] squared distance to the nearest centre so far
    for _ in range(1, k):
        cumulative = torch.cumsum(closest.double(), 0)
        u = torch.rand(trials, generator=generator, dtype=torch.float64).to(x.device) * cumulative[-1]
        candidates = torch.searchsorted(cumulative, u).clamp_(max=n - 1)
        d = torch.minimum(closest[None, :], _sq_dist(x[candidates], x))  # [trials, N]
        best = int(d.sum(1).argmin())
        centres.append(x[candidates[best]])
        closest = d[best]
    return torch.stack(centres)


def lloyd(x: torch.Tensor, centres: torch.Tensor, iters: int, tol: float) -> tuple:
    """Lloyd iterations from ``centres``: (centres [k, D], iterations run). ``tol`` is absolute
    (squared centre shift summed over centres)."""
    k = centres.shape[0]
    previous = None
    it = 0
    for it in range(1, iters + 1):
        idx, dist = assign(x, centres)
        if previous is not None and torch.equal(idx, previous):
            break  # labels unchanged: the centres are already their means
        counts = torch.bincount(idx, minlength=k)
        new = torch.zeros_like(centres).index_add_(0, idx, x) / counts.clamp_min(1)[:, None].to(x.dtype)
        empty = counts == 0
        if bool(empty.any()):
            far = torch.argsort(dist, descending=True)[: int(empty.sum())]
            new[empty] = x[far]
        shift = float(((new - centres) ** 2).sum())
        centres, previous = new, idx
        if shift <= tol:
            break
    return centres, it


def kmeans(x: torch.Tensor, k: int, iters: int = 300, seed: int = 0, tol: float = 1e-4, n_init: int = 1,
           init: str = "k-means++") -> dict:
    """Cluster rows of ``x`` [N, D] into ``k`` groups (scikit-learn's KMeans defaults, see above;
    ``n_init=10`` is scikit-learn 1.3's default, the official setting).

    Returns {"centroids": [k, D] float32 (x's device), "inertia": mean squared distance to the
    nearest centroid, "iterations": Lloyd steps of the best run}. Deterministic for a given seed
    and device. ``tol`` is relative to the mean per-feature variance of ``x``, as scikit-learn's.
    """
    if x.ndim != 2:
        raise ValueError(f"x must be [N, D], got {tuple(x.shape)}")
    n = x.shape[0]
    if n < k:
        raise ValueError(f"need at least k={k} points, got {n}")
    if init not in ("k-means++", "random"):
        raise ValueError(f"init must be 'k-means++' or 'random', got {init!r}")
    x = x.float()
    tol_abs = tol * float(x.var(dim=0, unbiased=False).mean())
    gen = torch.Generator().manual_seed(seed)
    best = None
    for _ in range(max(1, n_init)):
        if init == "k-means++":
            start = kmeans_plus_plus(x, k, gen)
        else:
            start = x[torch.randperm(n, generator=gen)[:k].to(x.device)].clone()
        centres, iterations = lloyd(x, start, iters, tol_abs)
        inertia = float(assign(x, centres)[1].mean())
        if best is None or inertia < best["inertia"]:
            best = {"centroids": centres, "inertia": inertia, "iterations": iterations}
    return best
