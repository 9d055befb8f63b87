"""A generated captioned set for the built-in demo: synthesised sounds with templated captions.

Each clip is one of 6 sources (high beep, low hum, hiss, rising sweep, falling sweep, clicks)
played either steadily or in bursts: 12 classes. Its 5 reference captions are drawn from
synonym templates ("a low hum pulses several times", "a deep humming sound turns on and off", ...),
so a model has to recognise the sound to pick the right words. Loudness, pitch and timing vary per
clip. Files are 1 s mono 24 kHz WAV; captions go to ``{split}.csv`` in the generic ``file,caption``
layout (5 rows per file).
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 24_000
SECONDS = 1.0
SOURCES = {
    "beep": ["a high pitched beep", "a high tone", "a shrill beep"],
    "hum": ["a low hum", "a deep humming sound", "a low drone"],
    "hiss": ["white noise", "a hissing sound", "static noise"],
    "rise": ["a rising tone", "a sweep going up", "a pitch that rises"],
    "fall": ["a falling tone", "a sweep going down", "a pitch that falls"],
    "clicks": ["rapid clicking", "a series of clicks", "fast ticking"],
}
PATTERNS = {
    "steady": ["plays continuously", "continues steadily", "sounds without a break"],
    "bursts": ["repeats in short bursts", "turns on and off", "pulses several times"],
}


def _source(kind: str, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if kind == "beep":
        return np.sin(2 * np.pi * rng.uniform(1800, 3000) * t)
    if kind == "hum":
        f = rng.uniform(70, 160)
        return sum(np.sin(2 * np.pi * f * h * t) / h for h in (1, 2, 3))
    if kind == "hiss":
        return rng.standard_normal(t.shape)
    if kind in ("rise", "fall"):
        lo, hi = rng.uniform(200, 500), rng.uniform(2000, 4000)
        f0, f1 = (lo, hi) if kind == "rise" else (hi, lo)
        return np.sin(2 * np.pi * (f0 * t + 0.5 * (f1 - f0) / SECONDS * t**2))
    if kind == "clicks":
        x = np.zeros_like(t)
        period = int(RATE / rng.uniform(15, 30))
        x[rng.integers(0, period) :: period] = 1.0
        return np.convolve(x, np.exp(-np.arange(48) / 6.0), mode="same") * 3
    raise ValueError(kind)


def class_clip(source: str, pattern: str, rng: np.random.Generator) -> np.ndarray:
    """1 s of float32 audio in [-1, 1] for one (source, pattern) class."""
    t = np.arange(int(RATE * SECONDS)) / RATE
    x = _source(source, t, rng)
    x = x / (np.abs(x).max() + 1e-9)
    if pattern == "bursts":
        rate = rng.uniform(2, 4)
        x = x * (np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi)) > 0)
    x = rng.uniform(0.2, 0.8) * x + 0.01 * rng.standard_normal(t.shape)
    return np.clip(x, -1, 1).astype(np.float32)


def class_captions(source: str, pattern: str, rng: np.random.Generator, n: int = 5) -> list[str]:
    """``n`` reference captions of the (source, pattern) class, drawn from its synonym templates."""
    return [f"{rng.choice(SOURCES[source])} {rng.choice(PATTERNS[pattern])}" for _ in range(n)]


def caption_class(caption: str) -> tuple[str | None, str | None]:
    """(source, pattern) whose template phrases occur in ``caption``; None where none or several do."""
    text = " ".join(caption.lower().split())

    def find(phrases: dict[str, list[str]]) -> str | None:
        hits = {name for name, options in phrases.items() if any(option in text for option in options)}
        return hits.pop() if len(hits) == 1 else None

    return find(SOURCES), find(PATTERNS)


def make_synthetic_set(out_dir, sizes: dict[str, int], seed: int = 0) -> dict[str, Path]:
    """Write ``{split}.csv`` and ``audio/{split}_{i:04d}.wav`` for each split; returns split -> CSV path.

    sizes: e.g. {"train": 240, "val": 48, "test": 96}; classes are balanced round-robin.
    """
    out_dir = Path(out_dir)
    (out_dir / "audio").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    classes = [(s, p) for s in SOURCES for p in PATTERNS]
    paths = {}
    for split, n in sizes.items():
        rows = []
        for i in range(n):
            source, pattern = classes[i % len(classes)]
            name = f"{split}_{i:04d}.wav"
            sf.write(out_dir / "audio" / name, class_clip(source, pattern, rng), RATE)
            rows += [(name, c) for c in class_captions(source, pattern, rng)]
        paths[split] = out_dir / f"{split}.csv"
        with open(paths[split], "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["file", "caption"])
            writer.writerows(rows)
    return paths
