"""AudioFormer MLM pretraining through the shared CLI: `python -m training.pretrain --model audioformer`, resume."""
import pytest
import torch

import hear_codec
from conftest import assert_user_error, run_module
from training import pretrain


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run(out, steps, *extra):
    return pretrain.main(["--model", "audioformer", "--out", str(out), "--max-steps", str(steps),
                          "--synthetic-clips", "4", "--synthetic-val-clips", "2", "--crop-seconds", "1.5",
                          "--batch-size", "2", "--val-every", "2", "--ckpt-every", "2", "--log-every", "1",
                          "--num-workers", "0", "--accelerator", "cpu", "--devices", "1", "--no-progress-bar",
                          *extra])


def test_pretrain_registry_export_and_resume(tmp_path):
    path = run(tmp_path / "b", 2)
    assert path == tmp_path / "b" / "last.ckpt.hearcodec" and (tmp_path / "b" / "last.ckpt").exists()
    first = hear_codec.load_model(path)
    assert first.model.family == "audioformer" and first.model.metadata["step"] == 2
    assert first.model.config.codec_weights == "offline" and first.model.config.chunk_seconds == 1.5
    assert first.model.metadata["corpus_sounds"] == "grid"  # its codes are the offline codec's: grid words
    run(tmp_path / "b", 4, "--resume")
    resumed = hear_codec.load_model(path).model
    assert resumed.metadata["step"] == 4
    metrics = (tmp_path / "b" / "logs" / "version_1" / "metrics.csv").read_text()
    assert "train/loss" in metrics and "val/masked_accuracy" in metrics
    # exact resume: same data order and masks as an uninterrupted run
    straight = hear_codec.load_model(run(tmp_path / "a", 4)).model
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), name
    assert any(not torch.equal(a, b) for a, b in zip(first.model.backbones.parameters(), resumed.backbones.parameters()))


def test_pretrain_help_lists_audioformer_options(capsys):
    with pytest.raises(SystemExit):
        pretrain.main(["--model", "audioformer", "--help"])
    text = capsys.readouterr().out
    for option in ("--shared-backbone", "--codebooks", "--mask-prob", "--resume", "--data"):
        assert option in text


def test_cli_missing_codec_weights_is_a_message_not_a_traceback(tmp_path):
    result = run_module("training.pretrain", "--model", "audioformer", "--data", tmp_path, "--out", tmp_path / "run",
                        "--codec-path", tmp_path / "encodec_24khz-d7cc33bc.th")
    assert_user_error(result, r"error: EnCodec weights file not found: .*encodec_24khz-d7cc33bc.th")


def test_a_mask_share_or_warm_up_that_cannot_run_is_a_message_before_any_work(tmp_path, capsys):
    """--mask-prob 0 chooses no token to learn from and 1 leaves no context, --lr 0 learns nothing
    (the parser refuses them); a negative warm-up is refused as EnCodecMAE's is
    (training.engine.schedule_problem)."""
    for option, value, rule in (("--mask-prob", "0", "a number > 0"), ("--mask-prob", "1", "a number in (0, 1)"),
                                ("--lr", "0", "a number > 0")):  # a zero learning rate trained nothing, silently
        with pytest.raises(SystemExit) as exit_info:
            pretrain.main(["--model", "audioformer", "--out", str(tmp_path), option, value])
        assert exit_info.value.code == 2
        assert f"argument {option}: must be {rule}, got '{value}'" in capsys.readouterr().err
    result = run_module("training.pretrain", "--model", "audioformer", "--out", tmp_path / "run",
                        "--warmup-steps", "-3", "--max-steps", "1", "--synthetic-clips", "4",
                        "--synthetic-val-clips", "2", "--batch-size", "2", "--num-workers", "0")
    assert_user_error(result, r"error: --warmup-steps must be 0 or more, got -3")
    assert not (tmp_path / "run").exists()  # refused before any work
