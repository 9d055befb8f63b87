"""The built-in captioned set (training/builtin/captions.py): files, captions and their classes."""
import csv

import numpy as np
import soundfile as sf

from training.builtin.captions import PATTERNS, RATE, SECONDS, SOURCES, caption_class, make_synthetic_set


def test_every_clip_has_five_captions_of_its_own_class(tmp_path):
    n_classes = len(SOURCES) * len(PATTERNS)
    paths = make_synthetic_set(tmp_path, {"train": n_classes, "val": 2}, seed=0)
    assert set(paths) == {"train", "val"}
    with open(paths["train"]) as f:
        rows = list(csv.DictReader(f))
    by_file = {}
    for row in rows:
        by_file.setdefault(row["file"], []).append(row["caption"])
    assert len(by_file) == n_classes and all(len(c) == 5 for c in by_file.values())
    # classes are balanced round-robin: every (source, pattern) once, and each caption names its class
    classes = [{caption_class(c) for c in captions} for captions in by_file.values()]
    assert all(len(c) == 1 for c in classes)
    assert {c.pop() for c in classes} == {(s, p) for s in SOURCES for p in PATTERNS}
    wav, rate = sf.read(tmp_path / "audio" / "train_0000.wav")
    assert rate == RATE and len(wav) == int(RATE * SECONDS) and 0 < np.abs(wav).max() <= 1


def test_the_same_seed_writes_the_same_set(tmp_path):
    a = make_synthetic_set(tmp_path / "a", {"train": 3}, seed=1)["train"].read_text()
    b = make_synthetic_set(tmp_path / "b", {"train": 3}, seed=1)["train"].read_text()
    assert a == b
    assert np.array_equal(sf.read(tmp_path / "a" / "audio" / "train_0002.wav")[0],
                          sf.read(tmp_path / "b" / "audio" / "train_0002.wav")[0])


def test_caption_class_needs_exactly_one_phrase_of_each_kind():
    assert caption_class("A LOW HUM   pulses several times") == ("hum", "bursts")
    assert caption_class("a low hum and white noise") == (None, None)
