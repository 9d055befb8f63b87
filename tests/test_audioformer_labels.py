"""Labelled audio for AudioFormer fine-tuning (training/audioformer/labels.py): every problem of a
labels file reported with its line."""
import json

import pytest

from training.audioformer import labels as L
from training.builtin.labelled_task import TASK_CLASSES, write_synthetic_task


@pytest.fixture(scope="module")
def multiclass_task(tmp_path_factory):
    return write_synthetic_task(tmp_path_factory.mktemp("mc"), train=12, valid=6, seconds=0.5, seed=0)


def test_csv_unknown_label_is_reported_with_its_line(multiclass_task):
    rows = multiclass_task["valid"].read_text().splitlines()
    rows[3] = rows[3].split(",")[0] + ",trombone"
    bad = multiclass_task["valid"].with_name("bad-valid.csv")
    bad.write_text("\n".join(rows) + "\n")
    examples = L.read_labels_file(bad)
    with pytest.raises(L.LabelsFileError, match=r"bad-valid.csv:4: unknown label 'trombone'"):
        L.check_labels(examples, sorted(TASK_CLASSES), bad, multiclass=True)


def test_missing_audio_and_bad_rows_are_reported_with_their_lines(tmp_path):
    (tmp_path / "a.wav").write_bytes(b"")
    labels = tmp_path / "train.csv"
    labels.write_text("file,label\na.wav,dog\nmissing.wav,cat\n,cat\nb.wav,\n")
    with pytest.raises(L.LabelsFileError) as err:
        L.read_labels_file(labels)
    assert "train.csv:4: no audio file named" in str(err.value)
    assert "train.csv:5: no label for b.wav" in str(err.value)
    labels.write_text("file,label\na.wav,dog\nmissing.wav,cat\n")
    with pytest.raises(L.LabelsFileError, match=r"train.csv:3: audio file not found: .*missing.wav"):
        L.check_labels(L.read_labels_file(labels), ["cat", "dog"], labels, multiclass=True)
    with pytest.raises(L.LabelsFileError, match=r"train.csv:2: cannot read audio"):
        L.encode_examples(None, L.read_labels_file(labels)[:1], 1.0, labels)
    no_header = tmp_path / "x.csv"
    no_header.write_text("path,class\na.wav,dog\n")
    with pytest.raises(L.LabelsFileError, match="x.csv:1: the header must name"):
        L.read_labels_file(no_header)


def test_json_formats_and_line_numbers(tmp_path):
    listing = tmp_path / "l.json"
    listing.write_text('[\n  {"file": "a.wav", "label": "dog"},\n  {"file": "b.wav", "labels": ["cat", "dog"]},\n'
                       '  {"file": "c.wav", "label": "emu"}\n]\n')
    examples = L.read_labels_file(listing)
    assert [(e.file.name, e.labels, e.line) for e in examples] == [
        ("a.wav", ("dog",), 2), ("b.wav", ("cat", "dog"), 3), ("c.wav", ("emu",), 4)]
    with pytest.raises(L.LabelsFileError, match=r"l.json:4: unknown label 'emu'"):
        L.check_labels(examples, ["cat", "dog"], listing, multiclass=False)
    hear = tmp_path / "h.json"
    hear.write_text(json.dumps({"a.wav": ["dog"], "b.wav": ["cat"]}, indent=1))
    assert [e.labels for e in L.read_labels_file(hear)] == [("dog",), ("cat",)]
    lines = tmp_path / "l.jsonl"
    lines.write_text('{"file": "a.wav", "label": "dog"}\nnot json\n')
    with pytest.raises(L.LabelsFileError, match=r"l.jsonl:2: not valid JSON"):
        L.read_labels_file(lines)
    with pytest.raises(L.LabelsFileError, match=r"several|2 labels in a multiclass"):
        L.check_labels(examples[1:2], ["cat", "dog"], listing, multiclass=True)


def test_vocabulary_files(tmp_path):
    hear_vocab = tmp_path / "labelvocabulary.csv"
    hear_vocab.write_text("idx,label\n0,dog\n1,cat\n")
    assert L.read_vocabulary(hear_vocab) == ["dog", "cat"]
    plain = tmp_path / "labels.txt"
    plain.write_text("dog\ncat\ndog\n")
    with pytest.raises(L.LabelsFileError, match="duplicate"):
        L.read_vocabulary(plain)
