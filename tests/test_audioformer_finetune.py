"""AudioFormer fine-tuning: labelled data errors with line numbers, FT1 and FT2 end to end."""
import json

import pytest
import torch

import hear_codec
from conftest import assert_user_error, run_module
from hear_codec import audioformer as af
from hear_codec.checkpoint import save_checkpoint
from training.audioformer import finetune as ft


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def init_checkpoint(tmp_path_factory):
    """A tiny random AudioFormer (offline codec) to fine-tune from."""
    from hear_codec.codec import load_codec

    model = af.new_model(af.preset("tiny", codec_weights="offline"), load_codec("offline"), seed=0)
    return save_checkpoint(tmp_path_factory.mktemp("init") / "tiny.hearcodec", model)


@pytest.fixture(scope="module")
def multiclass_task(tmp_path_factory):
    return ft.write_synthetic_task(tmp_path_factory.mktemp("mc"), train=12, valid=6, seconds=0.5, seed=0)


@pytest.fixture(scope="module")
def multilabel_task(tmp_path_factory):
    return ft.write_synthetic_task(tmp_path_factory.mktemp("ml"), train=12, valid=6, seconds=0.5,
                                   multilabel=True, seed=1)


def engine_args(out, steps=6):
    return ["--out", str(out), "--max-steps", str(steps), "--val-every", "2", "--ckpt-every", "3",
            "--log-every", "1", "--accelerator", "cpu", "--devices", "1", "--no-progress-bar", "--batch-size", "4"]


# ---- labelled data ----
def test_csv_unknown_label_is_reported_with_its_line(multiclass_task):
    rows = multiclass_task["valid"].read_text().splitlines()
    rows[3] = rows[3].split(",")[0] + ",trombone"
    bad = multiclass_task["valid"].with_name("bad-valid.csv")
    bad.write_text("\n".join(rows) + "\n")
    examples = ft.read_labels_file(bad)
    with pytest.raises(ft.LabelsFileError, match=r"bad-valid.csv:4: unknown label 'trombone'"):
        ft.check_labels(examples, sorted(ft.TASK_CLASSES), bad, multiclass=True)


def test_missing_audio_and_bad_rows_are_reported_with_their_lines(tmp_path):
    (tmp_path / "a.wav").write_bytes(b"")
    labels = tmp_path / "train.csv"
    labels.write_text("file,label\na.wav,dog\nmissing.wav,cat\n,cat\nb.wav,\n")
    with pytest.raises(ft.LabelsFileError) as err:
        ft.read_labels_file(labels)
    assert "train.csv:4: no audio file named" in str(err.value)
    assert "train.csv:5: no label for b.wav" in str(err.value)
    labels.write_text("file,label\na.wav,dog\nmissing.wav,cat\n")
    with pytest.raises(ft.LabelsFileError, match=r"train.csv:3: audio file not found: .*missing.wav"):
        ft.check_labels(ft.read_labels_file(labels), ["cat", "dog"], labels, multiclass=True)
    with pytest.raises(ft.LabelsFileError, match=r"train.csv:2: cannot read audio"):
        ft.encode_examples(None, ft.read_labels_file(labels)[:1], 1.0, labels)
    no_header = tmp_path / "x.csv"
    no_header.write_text("path,class\na.wav,dog\n")
    with pytest.raises(ft.LabelsFileError, match="x.csv:1: the header must name"):
        ft.read_labels_file(no_header)


def test_json_formats_and_line_numbers(tmp_path):
    listing = tmp_path / "l.json"
    listing.write_text('[\n  {"file": "a.wav", "label": "dog"},\n  {"file": "b.wav", "labels": ["cat", "dog"]},\n'
                       '  {"file": "c.wav", "label": "emu"}\n]\n')
    examples = ft.read_labels_file(listing)
    assert [(e.file.name, e.labels, e.line) for e in examples] == [
        ("a.wav", ("dog",), 2), ("b.wav", ("cat", "dog"), 3), ("c.wav", ("emu",), 4)]
    with pytest.raises(ft.LabelsFileError, match=r"l.json:4: unknown label 'emu'"):
        ft.check_labels(examples, ["cat", "dog"], listing, multiclass=False)
    hear = tmp_path / "h.json"
    hear.write_text(json.dumps({"a.wav": ["dog"], "b.wav": ["cat"]}, indent=1))
    assert [e.labels for e in ft.read_labels_file(hear)] == [("dog",), ("cat",)]
    lines = tmp_path / "l.jsonl"
    lines.write_text('{"file": "a.wav", "label": "dog"}\nnot json\n')
    with pytest.raises(ft.LabelsFileError, match=r"l.jsonl:2: not valid JSON"):
        ft.read_labels_file(lines)
    with pytest.raises(ft.LabelsFileError, match=r"several|2 labels in a multiclass"):
        ft.check_labels(examples[1:2], ["cat", "dog"], listing, multiclass=True)


def test_vocabulary_files(tmp_path):
    hear_vocab = tmp_path / "labelvocabulary.csv"
    hear_vocab.write_text("idx,label\n0,dog\n1,cat\n")
    assert ft.read_vocabulary(hear_vocab) == ["dog", "cat"]
    plain = tmp_path / "labels.txt"
    plain.write_text("dog\ncat\ndog\n")
    with pytest.raises(ft.LabelsFileError, match="duplicate"):
        ft.read_vocabulary(plain)


def test_metrics():
    import numpy as np

    targets = np.array([[1, 0], [0, 1], [1, 1]])
    perfect = targets.astype(float)
    assert ft.mean_average_precision(perfect, targets) == pytest.approx(1.0)
    assert ft.accuracy(np.array([[0.1, 0.9], [0.8, 0.2]]), np.array([1, 1])) == 0.5


# ---- end to end ----
def test_ft1_multiclass_end_to_end(init_checkpoint, multiclass_task, tmp_path):
    results = ft.main(["--train", str(multiclass_task["train"]), "--valid", str(multiclass_task["valid"]),
                       "--init", str(init_checkpoint), "--mode", "ft1", "--lr", "1e-3", "--head-lr", "3e-3",
                       *engine_args(tmp_path)])
    assert results["task"] == "multiclass" and results["metric"] == "accuracy" and results["classes"] == 4
    assert json.loads((tmp_path / "results.json").read_text()) == results
    assert 0.0 <= results["valid_accuracy"] <= 1.0 and results["best_step"] in (2, 4, 6)
    # learning itself is shown by benchmarks/audioformer_learning.py (too slow for a unit test)
    hear = hear_codec.load_model(tmp_path / ft.BEST, sample_rate=16000)
    assert hear.model.config.num_classes == 4 and hear.model.metadata["labels"] == sorted(ft.TASK_CLASSES)
    emb = hear_codec.get_scene_embeddings(torch.rand(1, 8000) - 0.5, hear)
    assert emb.shape == (1, 64)


def test_ft2_multilabel_end_to_end(init_checkpoint, multilabel_task, tmp_path):
    results = ft.main(["--train", str(multilabel_task["train"]), "--valid", str(multilabel_task["valid"]),
                       "--init", str(init_checkpoint), "--mode", "ft2", "--lr", "1e-3", "--head-lr", "3e-3",
                       *engine_args(tmp_path)])
    assert results["task"] == "multilabel" and results["metric"] == "mAP"
    assert 0.0 < results["valid_mAP"] <= 1.0
    best = hear_codec.load_model(tmp_path / ft.BEST).model
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
    with pytest.raises(ft.LabelsFileError, match=r"valid.csv:2: audio file not found"):
        ft.main(["--train", str(multiclass_task["train"]), "--valid", str(bad), "--init", str(init_checkpoint),
                 *engine_args(tmp_path)])


def test_generated_task_is_balanced_and_multilabel_rows_have_two_classes(tmp_path):
    mc = ft.read_labels_file(ft.write_synthetic_task(tmp_path / "mc", train=8, valid=0, seconds=0.1)["train"])
    assert sorted(ex.labels[0] for ex in mc) == sorted(ft.TASK_CLASSES * 2)
    ml = ft.read_labels_file(ft.write_synthetic_task(tmp_path / "ml", train=8, valid=0, seconds=0.1,
                                                     multilabel=True)["train"])
    assert all(len(set(ex.labels)) == 2 for ex in ml)


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
