"""Self-training (training/encodecmae/self_train.py) end to end on a tiny setting: the k-means frames,
the student, its CLI; the result loads in hear_codec. The teacher: conftest.py."""
import torch

import hear_codec
from conftest import assert_user_error, run_module
from hear_codec.checkpoint import read_checkpoint
from training.encodecmae import self_train

TINY = ["--synthetic-clips", "16", "--synthetic-val-clips", "2", "--batch-size", "4", "--num-workers", "0",
        "--no-progress-bar", "--log-every", "1", "--max-steps", "2", "--val-every", "1", "--ckpt-every", "1"]


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
    monkeypatch.setattr(self_train, "train", lambda config, optim, data, datasets, run, out_dir, **kw: trained.append(
        (config, data, datasets, kw)) or out_dir / "last.ckpt.hearcodec")
    self_train.main(["--teacher", str(teacher), "--out", str(tmp_path / "st"), "--clusters", "32"] + TINY)
    assert reads == [teacher]
    (config, data, datasets, kw), = trained
    assert data.crop_seconds == 1.0 and kw["metadata"]["preset"] == "tiny"
    assert datasets[2]["corpus_sounds"] == "grid"  # the teacher's offline codec: the corpus's frame-grid words
    assert torch.equal(kw["init_state"]["encoder.layers.0.attention.wq.weight"],
                       read_checkpoint(teacher)["state_dict"]["encoder.layers.0.attention.wq.weight"])


def test_cli_a_schedule_that_cannot_run_is_a_message_before_any_work(tmp_path, teacher):
    """The same rules as pretraining's (OptimizerConfig.check), not a traceback from the first step."""
    result = run_module("training.encodecmae.self_train", "--teacher", teacher, "--out", tmp_path / "st",
                        "--decay-steps", "10")
    assert_user_error(result, "--decay-steps is the length of the cosine's decay: it needs --schedule cosine")
    result = run_module("training.encodecmae.self_train", "--teacher", teacher, "--out", tmp_path / "st",
                        "--schedule", "cosine", "--warmup-steps", "20", "--max-steps", "20")
    assert_user_error(result, r"must be beyond --warmup-steps \(20\); got --max-steps 20")
    assert not (tmp_path / "st").exists()
