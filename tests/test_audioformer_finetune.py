"""AudioFormer fine-tuning's CLI (training/audioformer/finetune.py): FT1 and FT2 end to end, and its
errors. Its labels files: test_audioformer_labels.py."""
import json

import pytest
import torch

import hear_codec
from conftest import assert_user_error, run_module
from hear_codec import audioformer as af
from hear_codec.checkpoint import save_checkpoint
from training.audioformer import finetune as ft
from training.audioformer.labels import LabelsFileError
from training.audioformer.module import BEST
from training.builtin.labelled_task import TASK_CLASSES, write_synthetic_task


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def init_checkpoint(tmp_path_factory):
    """A tiny random AudioFormer (offline codec) to fine-tune from."""
    from hear_codec.codec import load_codec

    model = af.new_model(af.preset("tiny", codec_weights="offline"), load_codec("offline"), seed=0)
    return save_checkpoint(tmp_path_factory.mktemp("init") / "tiny.hearcodec", model)


@pytest.fixture(scope="module")
def multiclass_task(tmp_path_factory):
    return write_synthetic_task(tmp_path_factory.mktemp("mc"), train=12, valid=6, seconds=0.5, seed=0)


@pytest.fixture(scope="module")
def multilabel_task(tmp_path_factory):
    return write_synthetic_task(tmp_path_factory.mktemp("ml"), train=12, valid=6, seconds=0.5,
                                   multilabel=True, seed=1)


def engine_args(out, steps=6):
    return ["--out", str(out), "--max-steps", str(steps), "--val-every", "2", "--ckpt-every", "3",
            "--log-every", "1", "--accelerator", "cpu", "--devices", "1", "--no-progress-bar", "--batch-size", "4"]


# ---- end to end ----
def test_ft1_multiclass_end_to_end(init_checkpoint, multiclass_task, tmp_path):
    results = ft.main(["--train", str(multiclass_task["train"]), "--valid", str(multiclass_task["valid"]),
                       "--init", str(init_checkpoint), "--mode", "ft1", "--lr", "1e-3", "--head-lr", "3e-3",
                       *engine_args(tmp_path)])
    assert results["task"] == "multiclass" and results["metric"] == "accuracy" and results["classes"] == 4
    assert json.loads((tmp_path / "results.json").read_text()) == results
    assert 0.0 <= results["valid_accuracy"] <= 1.0 and results["best_step"] in (2, 4, 6)
    # learning itself is shown by benchmarks/audioformer_learning.py (too slow for a unit test)
    hear = hear_codec.load_model(tmp_path / BEST, sample_rate=16000)
    assert hear.model.config.num_classes == 4 and hear.model.metadata["labels"] == sorted(TASK_CLASSES)
    emb = hear_codec.get_scene_embeddings(torch.rand(1, 8000) - 0.5, hear)
    assert emb.shape == (1, 64)


def test_ft2_multilabel_end_to_end(init_checkpoint, multilabel_task, tmp_path):
    results = ft.main(["--train", str(multilabel_task["train"]), "--valid", str(multilabel_task["valid"]),
                       "--init", str(init_checkpoint), "--mode", "ft2", "--lr", "1e-3", "--head-lr", "3e-3",
                       *engine_args(tmp_path)])
    assert results["task"] == "multilabel" and results["metric"] == "mAP"
    assert 0.0 < results["valid_mAP"] <= 1.0
    best = hear_codec.load_model(tmp_path / BEST).model
    start = hear_codec.load_model(init_checkpoint).model
    for c in (1, 2, 3):  # FT2: codebooks 2-4 frozen, the anchor trained
        for (name, p), q in zip(best.backbones[c].named_parameters(), start.backbones[c].parameters()):
            assert torch.equal(p, q), name
    assert not torch.equal(best.backbones[0].encoder.layer[0].attention.self.query.weight,
                           start.backbones[0].encoder.layer[0].attention.self.query.weight)
    import csv

    with open(tmp_path / "logs" / "version_0" / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/alpha")]
    assert all(r["train/mpc_loss"] for r in rows)
    # the paper's two stages by default, switching at half of --max-steps 6
    assert [float(r["train/alpha"]) for r in rows] == pytest.approx([0.8] * 3 + [0.97] * 3)


def test_cli_reports_bad_labels_file(init_checkpoint, multiclass_task, tmp_path):
    bad = tmp_path / "valid.csv"
    bad.write_text(f"file,label\n{multiclass_task['valid'].parent / 'audio' / 'nope.wav'},tone\n")
    with pytest.raises(LabelsFileError, match=r"valid.csv:2: audio file not found"):
        ft.main(["--train", str(multiclass_task["train"]), "--valid", str(bad), "--init", str(init_checkpoint),
                 *engine_args(tmp_path)])


def test_cli_missing_labels_file_is_a_message_not_a_traceback(tmp_path):
    result = run_module("training.audioformer.finetune", "--train", tmp_path / "train.csv", "--valid",
                        tmp_path / "valid.csv", "--out", tmp_path / "run")
    assert_user_error(result, r"error: labels file not found: .*train.csv")


def test_options_out_of_their_range_are_refused_by_the_parser(capsys):
    """A zero or NaN temperature (the MPC logits divide by it), an alpha above 1, a batch of 0: the
    parser's message naming the option, before any data or model is read."""
    for option, value, rule in (("--temperature", "0", "a number > 0"), ("--second-temperature", "nan", "a number > 0"),
                                ("--alpha", "1.5", r"a number in [0, 1]"), ("--batch-size", "0", "a whole number > 0"),
                                ("--lr", "-0.1", "a number > 0"), ("--clip-seconds", "0", "a number > 0")):
        with pytest.raises(SystemExit) as exit_info:
            ft.build_parser().parse_args(["--train", "t.csv", "--valid", "v.csv", "--out", "o", option, value])
        assert exit_info.value.code == 2
        assert f"argument {option}: must be {rule}, got '{value}'" in capsys.readouterr().err
    args = ft.build_parser().parse_args(["--train", "t.csv", "--valid", "v.csv", "--out", "o", "--alpha", "1"])
    assert args.alpha == 1.0  # the task loss alone
