"""A generated labelled task for AudioFormer fine-tuning: four classes of synthesised sounds
(benchmarks/audioformer_learning.py and the fine-tuning tests), written as labels files that
``python -m training.audioformer.finetune`` reads like any other."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from hear_codec import codec as codec_lib

TASK_CLASSES = ("hum", "whistle", "hiss", "clicks")


def task_clip(kind: str, rng: np.random.Generator, seconds: float, sr: int = codec_lib.SAMPLE_RATE) -> np.ndarray:
    """One generated sound of a class, random within the class: hum (harmonic tone, f0 80-200 Hz),
    whistle (sine 1.5-4 kHz), hiss (white noise), clicks (decaying clicks at 4-15 Hz); random
    level 0.1-0.6, onset in the first quarter, a faint noise floor."""
    n = int(seconds * sr)
    t = np.arange(n) / sr
    if kind == "hum":
        f0 = rng.uniform(80, 200)
        x = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6.3)) / k for k in range(1, 6))
    elif kind == "whistle":
        x = np.sin(2 * np.pi * rng.uniform(1500, 4000) * t)
    elif kind == "hiss":
        x = rng.standard_normal(n)
    elif kind == "clicks":
        rate = rng.uniform(4, 15)
        phase = (t * rate) % 1.0
        x = np.exp(-phase * 60.0) * np.sign(np.sin(2 * np.pi * 3000 * t))
    else:
        raise ValueError(kind)
    x = x / (np.abs(x).max() + 1e-9) * rng.uniform(0.1, 0.6)
    x[: int(rng.uniform(0, 0.25) * n)] = 0.0
    return (x + 0.003 * rng.standard_normal(n)).astype(np.float32)


def write_synthetic_task(out_dir, train: int = 48, valid: int = 24, test: int = 0, seconds: float = 1.0,
                         multilabel: bool = False, seed: int = 0) -> dict:
    """Write a labelled task of generated sounds (:data:`TASK_CLASSES`, see :func:`task_clip`).

    multiclass: one sound per clip, classes in turn (balanced). multilabel: the sum of two sounds
    of different classes, labels = both. Returns {"train": csv, "valid": csv[, "test": csv]}.
    """
    import soundfile as sf

    out_dir = Path(out_dir)
    (out_dir / "audio").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = {}
    for split, n in (("train", train), ("valid", valid), ("test", test)):
        if n == 0:
            continue
        rows = []
        for i in range(n):
            labels = [TASK_CLASSES[i % len(TASK_CLASSES)]]
            if multilabel:
                labels.append(TASK_CLASSES[(i + 1 + rng.integers(len(TASK_CLASSES) - 1)) % len(TASK_CLASSES)])
            wav = sum(task_clip(kind, rng, seconds) for kind in labels) / len(labels)
            name = f"audio/{split}-{i:04d}.wav"
            sf.write(str(out_dir / name), wav, codec_lib.SAMPLE_RATE)
            rows.append((name, ";".join(sorted(labels))))
        path = out_dir / f"{split}.csv"
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["file", "label"])
            w.writerows(rows)
        paths[split] = path
    return paths
