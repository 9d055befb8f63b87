"""The k-means of self-training (training/encodecmae/kmeans.py): scikit-learn's algorithm in torch."""
import pytest
import torch

from training.encodecmae.kmeans import kmeans


def test_kmeans_finds_separated_clusters():
    gen = torch.Generator().manual_seed(0)
    centres = torch.randn(8, 5, generator=gen) * 10
    x = (centres[:, None, :] + 0.1 * torch.randn(8, 50, 5, generator=gen)).reshape(-1, 5)
    result = kmeans(x, 8, seed=1)
    # every true centre has a found centroid within the noise
    d = torch.cdist(centres, result["centroids"])
    assert float(d.min(dim=1).values.max()) < 0.2
    assert result["inertia"] < 0.1
    with pytest.raises(ValueError):
        kmeans(x[:4], 8)


def test_kmeans_inertia_matches_sklearn():
    """Our torch k-means is scikit-learn's KMeans algorithm (the official self-training's): on
    overlapping blobs, the best of 10 greedy k-means++ seedings reaches scikit-learn's inertia."""
    from sklearn.cluster import KMeans

    gen = torch.Generator().manual_seed(0)
    centres = torch.randn(16, 8, generator=gen) * 2
    x = centres[torch.randint(16, (2000,), generator=gen)] + torch.randn(2000, 8, generator=gen)
    reference = KMeans(16, n_init=10, random_state=0).fit(x.numpy()).inertia_ / len(x)  # sum -> mean
    ours = kmeans(x, 16, n_init=10, seed=0)
    assert abs(ours["inertia"] - reference) <= 2e-3 * reference, (ours["inertia"], reference)
    assert ours["iterations"] <= 300
