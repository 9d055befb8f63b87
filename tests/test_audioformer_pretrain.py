"""AudioFormer MLM pretraining through the shared CLI: `python -m training.pretrain --model audioformer`, resume."""
import pytest
import torch

import hear_codec
from training import pretrain


def run(out, steps, *extra):
    return pretrain.main(["--model", "audioformer", "--out", str(out), "--max-steps", str(steps),
                          "--synthetic-clips", "4", "--synthetic-val-clips", "2", "--crop-seconds", "1.5",
                          "--batch-size", "2", "--val-every", "2", "--ckpt-every", "2", "--log-every", "1",
                          "--num-workers", "0", "--accelerator", "cpu", "--devices", "1", "--no-progress-bar",
                          *extra])


def test_pretrain_registry_export_and_resume(tmp_path):
    path = run(tmp_path, 2)
    assert path == tmp_path / "last.ckpt.hearcodec" and (tmp_path / "last.ckpt").exists()
    first = hear_codec.load_model(path)
    assert first.model.family == "audioformer" and first.model.metadata["step"] == 2
    assert first.model.config.codec_weights == "offline" and first.model.config.chunk_seconds == 1.5
    run(tmp_path, 4, "--resume")
    resumed = hear_codec.load_model(path).model
    assert resumed.metadata["step"] == 4
    changed = [not torch.equal(a, b) for a, b in zip(first.model.backbones.parameters(), resumed.backbones.parameters())]
    assert any(changed)  # training went on from the checkpoint
    metrics = (tmp_path / "logs" / "version_1" / "metrics.csv").read_text()
    assert "train/loss" in metrics and "val/masked_accuracy" in metrics


def test_pretrain_help_lists_audioformer_options(capsys):
    with pytest.raises(SystemExit):
        pretrain.main(["--model", "audioformer", "--help"])
    text = capsys.readouterr().out
    for option in ("--shared-backbone", "--codebooks", "--mask-prob", "--resume", "--data"):
        assert option in text
