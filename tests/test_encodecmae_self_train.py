"""Self-training end to end on a tiny setting; the result loads in hear_codec."""
import pytest
import torch

import hear_codec
from conftest import assert_user_error, run_module
from hear_codec import encodecmae as emae
from hear_codec.checkpoint import read_checkpoint, save_checkpoint
from training.encodecmae import masking, self_train
from training.encodecmae import module as encodecmae_module
from training.encodecmae.kmeans import kmeans

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


def test_kmeans_frames_are_uniform_over_all_frames_of_the_segments():
    """As the official create_st_dataset: the k-means frames are a uniform sample (without
    replacement) of every valid frame of the segments, so a long segment gives more of them."""
    lengths = [5, 5, 5, 5, 5, 5, 5, 85]  # valid frames of 8 segments of at most 100 frames
    t = 100

    class Teacher:  # each frame's feature is (segment, frame index): where it came from
        def input_features(self, wav):
            seg = wav[:, :1].expand(-1, t)
            return torch.stack([seg, torch.arange(t, dtype=torch.float32).expand_as(seg)], dim=-1)

        def last_layer_x0(self, features, padding_mask):
            return features

    padding = torch.arange(t)[None, :] >= torch.tensor(lengths)[:, None]
    batches = [{"wav": torch.arange(8, dtype=torch.float32)[i:i + 3, None].expand(-1, 10), "padding_mask": padding[i:i + 3]}
               for i in range(0, 8, 3)] + [{"wav": torch.full((3, 10), 99.0), "padding_mask": padding[:3]}]  # past --segments
    x = self_train.collect_features(Teacher(), batches, segments=8, frames=60, device="cpu")
    assert x.shape == (60, 2)
    seg, frame = x[:, 0].long(), x[:, 1].long()
    assert len({(int(a), int(b)) for a, b in zip(seg, frame)}) == 60  # without replacement
    assert bool((frame < torch.tensor(lengths)[seg]).all())  # never a padding frame, never past --segments
    # 85 of the 120 valid frames are the long segment's: 42.5 expected (hypergeometric sd 2.5)
    assert 32 <= int((seg == 7).sum()) <= 53
    # fewer valid frames than asked: all of them
    assert len(self_train.collect_features(Teacher(), batches, segments=8, frames=500, device="cpu")) == 120


def test_teacher_kmeans_targets_are_computed_in_fp32(teacher):
    """Under the step's bf16 autocast the teacher still runs in fp32, the precision its centroids
    were fitted in, so the targets are those of an fp32 teacher."""
    from hear_codec.checkpoint import load_checkpoint

    t = load_checkpoint(teacher)
    cfg = emae.EncodecMAEConfig.from_dict({**t.config.to_dict(), "num_codec_streams": 0, "num_kmeans_streams": 1,
                                           "vocab_size": 16})
    gen = torch.Generator().manual_seed(0)
    module = encodecmae_module.EncodecMAEModule(cfg, None, teacher=t, centroids=torch.randn(16, 64, generator=gen))
    wav = torch.randn(2, 24000, generator=gen) * 0.1
    frames = masking.frames_for("mel256", 24000)
    batch = {"wav": wav, "mask": torch.zeros(2, frames, dtype=torch.bool),
             "padding_mask": torch.zeros(2, frames, dtype=torch.bool)}
    dtypes = []
    hook = t.encoder.register_forward_hook(lambda m, i, out: dtypes.append(out[0].dtype))
    _, fp32_targets = module.targets_and_features(batch)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, targets = module.targets_and_features(batch)
    hook.remove()
    assert dtypes == [torch.float32, torch.float32]
    assert torch.equal(targets, fp32_targets)


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


@pytest.mark.slow
def test_self_training_as_a_stage_of_pretraining(tmp_path):
    """``training.pretrain --self-train-steps N``: pretraining, then self-training (v2, its own
    defaults) into OUT/self_train with the pretraining's data and engine options."""
    from training import pretrain

    out = tmp_path / "run"
    path = pretrain.main(["--out", str(out), "--synthetic-clips", "16", "--synthetic-val-clips", "2",
                          "--crop-seconds", "1.0", "--batch-size", "4", "--num-workers", "0", "--no-progress-bar",
                          "--max-steps", "1", "--val-every", "0", "--self-train-steps", "2"])
    assert path == out / "self_train" / "last.ckpt.hearcodec"
    payload = read_checkpoint(path)
    assert payload["metadata"]["teacher"] == str(out / "last.ckpt.hearcodec")
    assert payload["metadata"]["step"] == 2 and payload["metadata"]["variant"] == "v2"
    assert (payload["config"]["num_kmeans_streams"], payload["config"]["vocab_size"]) == (1, 1024)
    assert read_checkpoint(out / "last.ckpt.hearcodec")["metadata"]["step"] == 1


def test_cli_damaged_teacher_is_a_message_not_a_traceback(tmp_path, teacher):
    damaged = tmp_path / "teacher.hearcodec"
    data = bytearray(teacher.read_bytes())
    data[-64:] = bytes(b ^ 0xFF for b in data[-64:])  # the end of the file is tensor data
    damaged.write_bytes(bytes(data))
    result = run_module("training.encodecmae.self_train", "--teacher", damaged, "--out", tmp_path / "st")
    assert_user_error(result, r"error: damaged checkpoint .*teacher.hearcodec: \d+ of \d+ tensors differ")


def test_the_teacher_checkpoint_is_read_once(tmp_path, teacher, monkeypatch):
    """The CLI takes the crop length, codec, preset and weights from one read of --teacher."""
    from hear_codec import checkpoint

    reads = []
    read = checkpoint._read_safetensors
    monkeypatch.setattr(checkpoint, "_read_safetensors", lambda path: reads.append(path) or read(path))
    monkeypatch.setattr(self_train, "fit_centroids", lambda *args: (torch.zeros(32, 64), {"inertia": 0.0, "iterations": 0}))
    trained = []
    monkeypatch.setattr(self_train, "train", lambda config, optim, data, run, out_dir, **kw: trained.append(
        (config, data, kw)) or out_dir / "last.ckpt.hearcodec")
    self_train.main(["--teacher", str(teacher), "--out", str(tmp_path / "st"), "--clusters", "32"] + TINY)
    assert reads == [teacher]
    (config, data, kw), = trained
    assert data.crop_seconds == 1.0 and data.codec == "offline" and kw["metadata"]["preset"] == "tiny"
    assert torch.equal(kw["init_state"]["encoder.layers.0.attention.wq.weight"],
                       read_checkpoint(teacher)["state_dict"]["encoder.layers.0.attention.wq.weight"])
