"""Labelled audio for AudioFormer fine-tuning: the labels files, their vocabulary, and the clips
encoded once by the frozen codec.

Labelled data
-------------
* CSV with a header naming a ``file`` (or ``filename``) column and a ``label`` (or ``labels``)
  column; several labels in one cell are separated by ``;``.
* JSON: a list of ``{"file": ..., "label": "x"}`` / ``{"file": ..., "labels": ["x", "y"]}``
  objects, or a HEAR split file ``{"file": ["x", "y"], ...}``. JSON Lines (``.jsonl``): one such
  object per line.
Relative paths are relative to the labels file's folder. Any problem (missing or unreadable
audio, a label that is not in the vocabulary, a malformed row) stops the run with
``FILE:LINE: message`` for every offending row (up to 20). The vocabulary is ``--labels FILE``
(one label per line, or HEAR's labelvocabulary.csv) or else the sorted labels of --train.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from hear_codec import audioformer as af
from hear_codec import codec as codec_lib
from hear_codec.audio import read_audio
from hear_codec.errors import UserError

MAX_REPORTED = 20


class LabelsFileError(UserError, ValueError):
    """A labels file with problems; the message lists every offending line."""


@dataclass
class Example:
    file: Path
    labels: tuple
    line: int


def _split_cell(cell) -> list:
    if isinstance(cell, str):
        return [x.strip() for x in cell.split(";") if x.strip()]
    if isinstance(cell, (list, tuple)):
        return [str(x).strip() for x in cell]
    return [] if cell is None else [str(cell)]


def read_labels_file(path) -> list:
    """Examples of a CSV / JSON / JSON Lines labels file, each with its line number."""
    path = Path(path)
    if not path.is_file():
        raise LabelsFileError(f"labels file not found: {path}")
    text = path.read_text(encoding="utf-8-sig")
    errors, rows = [], []  # rows: (line, file, labels)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        reader = csv.DictReader(text.splitlines())
        fields = reader.fieldnames or []
        file_col = next((c for c in ("file", "filename") if c in fields), None)
        label_col = next((c for c in ("label", "labels") if c in fields), None)
        if file_col is None or label_col is None:
            raise LabelsFileError(f"{path}:1: the header must name a 'file' and a 'label' column, got {fields}")
        for row in reader:
            rows.append((reader.line_num, row.get(file_col), _split_cell(row.get(label_col))))
    elif suffix == ".jsonl":
        for i, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    errors.append(f"{path}:{i}: not valid JSON ({e.msg})")
                    continue
                rows.append(_json_row(obj, i, path, errors))
    elif suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise LabelsFileError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from e
        entries = ([{"file": k, "labels": v} for k, v in data.items()] if isinstance(data, dict)
                   else data if isinstance(data, list) else None)
        if entries is None:
            raise LabelsFileError(f"{path}:1: expected a list of {{file, label}} objects or a {{file: labels}} dict")
        cursor = 0
        for obj in entries:
            line, cursor = _line_of(text, obj.get("file") if isinstance(obj, dict) else None, cursor)
            rows.append(_json_row(obj, line, path, errors))
    else:
        raise LabelsFileError(f"{path}: unknown labels format {suffix!r}; use .csv, .json or .jsonl")
    examples = []
    for line, file, labels in rows:
        if line is None:
            continue
        if not file:
            errors.append(f"{path}:{line}: no audio file named")
        elif not labels:
            errors.append(f"{path}:{line}: no label for {file}")
        else:
            f = Path(file)
            examples.append(Example(f if f.is_absolute() else path.parent / f, tuple(labels), line))
    if not examples and not errors:
        errors.append(f"{path}: no examples")
    _raise(errors)
    return examples


def _json_row(obj, line, path, errors):
    if not isinstance(obj, dict) or "file" not in obj or not ({"label", "labels"} & set(obj)):
        errors.append(f"{path}:{line}: expected an object with 'file' and 'label' or 'labels'")
        return None, None, None
    return line, str(obj["file"]), _split_cell(obj.get("labels", obj.get("label")))


def _line_of(text: str, file, cursor: int) -> tuple:
    """Line number of the next occurrence of ``file`` (as a JSON string) at or after ``cursor``."""
    if file is None:
        return text.count("\n", 0, cursor) + 1, cursor
    pos = text.find(json.dumps(str(file))[1:-1], cursor)
    if pos < 0:
        return text.count("\n", 0, cursor) + 1, cursor
    return text.count("\n", 0, pos) + 1, pos + 1


def _raise(errors: list) -> None:
    if errors:
        more = f"\n... and {len(errors) - MAX_REPORTED} more" if len(errors) > MAX_REPORTED else ""
        raise LabelsFileError("\n".join(errors[:MAX_REPORTED]) + more)


def read_vocabulary(path) -> list:
    """One label per line, or HEAR's labelvocabulary.csv (idx,label with a header)."""
    path = Path(path)
    if not path.is_file():
        raise LabelsFileError(f"label vocabulary not found: {path}")
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8-sig").splitlines() if ln.strip()]
    if path.suffix.lower() == ".csv":
        rows = list(csv.reader(lines))
        if rows and rows[0][-1].lower() == "label":
            rows = rows[1:]
        lines = [r[-1] for r in rows]
    if len(set(lines)) != len(lines):
        raise LabelsFileError(f"{path}: duplicate labels in the vocabulary")
    return lines


def check_labels(examples: list, vocabulary: list, source, multiclass: bool) -> None:
    """Unknown labels, several labels for a multiclass task, missing audio: all reported with their line."""
    known = set(vocabulary)
    errors = []
    for ex in examples:
        unknown = [x for x in ex.labels if x not in known]
        if unknown:
            errors.append(f"{source}:{ex.line}: unknown label {', '.join(map(repr, unknown))} "
                          f"(not in the vocabulary of {len(vocabulary)} labels)")
        if multiclass and len(ex.labels) != 1:
            errors.append(f"{source}:{ex.line}: {len(ex.labels)} labels in a multiclass task")
        if not ex.file.is_file():
            errors.append(f"{source}:{ex.line}: audio file not found: {ex.file}")
    _raise(errors)


def load_clip(path: Path, clip_samples: int) -> tuple:
    """(wav [clip_samples] float32 at 24 kHz, mono, zero-padded; valid samples)."""
    wav, _ = read_audio(path, codec_lib.SAMPLE_RATE)
    n = min(len(wav), clip_samples)
    out = torch.zeros(clip_samples)
    out[:n] = wav[:n]
    return out, n


@torch.no_grad()
def encode_examples(model: af.AudioFormer, examples: list, clip_seconds: float, source, batch_size: int = 16) -> tuple:
    """Codes [N, Q, T] int16 and valid frames [N] for every example (the frozen codec, once)."""
    clip = int(round(clip_seconds * codec_lib.SAMPLE_RATE))
    codes, frames, errors = [], [], []
    wavs = []

    def flush():
        if wavs:
            codes.append(model.encode_codes(torch.stack(wavs)).to(torch.int16))
            wavs.clear()

    for ex in examples:
        try:
            wav, n = load_clip(ex.file, clip)
        except Exception as e:  # unreadable or empty audio
            errors.append(f"{source}:{ex.line}: cannot read audio {ex.file} ({type(e).__name__}: {e})")
            continue
        wavs.append(wav)
        frames.append(codec_lib.num_frames(n))
        if len(wavs) == batch_size:
            flush()
    _raise(errors)
    flush()
    return torch.cat(codes), torch.tensor(frames)


def targets_for(examples: list, vocabulary: list, multilabel: bool) -> torch.Tensor:
    index = {label: i for i, label in enumerate(vocabulary)}
    if not multilabel:
        return torch.tensor([index[ex.labels[0]] for ex in examples])
    y = torch.zeros(len(examples), len(vocabulary))
    for i, ex in enumerate(examples):
        y[i, [index[x] for x in ex.labels]] = 1.0
    return y
