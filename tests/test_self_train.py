"""Self-training end to end on a tiny setting; the result loads in hear_codec."""
import pytest
import torch

import hear_codec
from hear_codec import encodecmae as emae
from hear_codec.checkpoint import read_checkpoint, save_checkpoint
from training import encodecmae_module, self_train
from training.kmeans import kmeans

TINY = ["--synthetic-clips", "16", "--synthetic-val-clips", "2", "--batch-size", "4", "--num-workers", "0",
        "--no-progress-bar", "--log-every", "1", "--max-steps", "2", "--val-every", "1", "--ckpt-every", "1"]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    torch.manual_seed(0)
    cfg = emae.preset("tiny", codec_weights="offline", chunk_seconds=1.0)
    path = tmp_path_factory.mktemp("teacher") / "teacher.hearcodec"
    save_checkpoint(path, emae.EncodecMAE(cfg), metadata={"preset": "tiny"})
    return path


def test_v2_kmeans_stream_only(tmp_path, teacher):
    out = tmp_path / "st"
    path = self_train.main(["--teacher", str(teacher), "--out", str(out), "--segments", "16",
                            "--kmeans-frames", "400", "--clusters", "32"] + TINY)
    stored = torch.load(out / "kmeans_centroids.pt", weights_only=True)
    assert stored["centroids"].shape == (32, 64) and stored["frames"] == 400
    payload = read_checkpoint(path)
    cfg = payload["config"]
    assert (cfg["num_codec_streams"], cfg["num_kmeans_streams"], cfg["vocab_size"]) == (0, 1, 32)
    assert payload["metadata"]["variant"] == "v2" and payload["metadata"]["step"] == 2
    # the encoder started from the teacher and moved; the head is new
    t = read_checkpoint(teacher)["state_dict"]
    s = payload["state_dict"]
    assert s["head.weight"].shape == (32, 64)
    assert not torch.equal(s["encoder.layers.0.attention.wq.weight"], t["encoder.layers.0.attention.wq.weight"])
    assert torch.allclose(s["encoder.layers.0.attention.wq.weight"], t["encoder.layers.0.attention.wq.weight"],
                          atol=1e-2)
    model = hear_codec.load_model(path, sample_rate=16000)
    emb, ts = hear_codec.get_timestamp_embeddings(torch.randn(2, 24000) * 0.1, model)
    assert emb.shape[0] == 2 and emb.shape[2] == 64 and torch.isfinite(emb).all()
    # k-means targets are learnable: the logged k-means stream accuracy exists
    header = next((out / "logs").glob("version_*/metrics.csv")).read_text().splitlines()[0]
    assert "train/masked_acc_km0" in header


def test_v1_keeps_codec_streams(tmp_path, teacher):
    path = self_train.main(TINY + ["--teacher", str(teacher), "--out", str(tmp_path / "v1"), "--segments", "24",
                                   "--kmeans-frames", "1100", "--keep-codec-streams", "--synthetic-clips", "24"])
    payload = read_checkpoint(path)
    cfg = payload["config"]
    assert (cfg["num_codec_streams"], cfg["num_kmeans_streams"], cfg["vocab_size"]) == (8, 1, 1024)
    assert payload["state_dict"]["head.weight"].shape == (9 * 1024, 64)
    assert hear_codec.load_model(path).scene_embedding_size == 64


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


def test_nearest_centroid_matches_brute_force():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 7, 6, generator=gen)
    c = torch.randn(5, 6, generator=gen)
    expected = torch.cdist(x.reshape(-1, 6), c).argmin(1).view(2, 7)
    assert torch.equal(encodecmae_module.nearest_centroid(x, c), expected)
