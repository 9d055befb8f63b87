"""Write small synthetic tasks in the HEAR 2021 task layout, for tests and smoke runs.

A task folder looks exactly like one made by hearpreprocess, as read by heareval 2021.1.3
(``heareval/embeddings/task_embeddings.py`` and ``heareval/predictions/task_predictions.py``)::

    <root>/<name>/task_metadata.json
    <root>/<name>/labelvocabulary.csv        # columns idx,label
    <root>/<name>/<split>.json               # {file name: labels}
    <root>/<name>/<sample rate>/<split>/<file name>   # mono wav, sample_duration seconds

Labels in ``<split>.json`` are a list of label strings per file for scene tasks (exactly one for
multiclass) and a list of ``{"label", "start", "end"}`` events (milliseconds) for event tasks.

The audio is built so that classes are easy to tell apart: every label owns a pure tone at its
own frequency, mixed with white noise. A useful embedding should make these tasks nearly
perfect, so a low score means the pipeline is broken, not that the model is weak.

Three kinds of task (see :func:`make_scene_task`, :func:`make_event_task`):

* scene / multiclass / ``trainvaltest`` (splits train, valid, test), primary metric top1_acc;
* scene / multilabel / ``new_split_kfold`` (splits fold00..), primary metric mAP;
* event / multilabel / ``trainvaltest``, primary metric event_onset_200ms_fms.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from hear_codec import cli

TRAINVALTEST = ("train", "valid", "test")
# Sample rates a HEAR module may declare; the free HEAR 2021 downloads are 48 kHz only.
HEAR_SAMPLE_RATES = (16000, 22050, 44100, 48000)
DEFAULT_SAMPLE_RATES = (16000, 48000)

# heareval hyper-parameter overrides under which these small tasks train in seconds: heareval's
# grids use batches of 1024, i.e. one optimiser step per epoch here, and learning rates as low
# as 1e-4, which would leave the predictor untrained after a few epochs.
QUICK_PARAM_GRID = {"lr": [1e-2], "patience": [5], "max_epochs": [30]}

# Tone frequencies (Hz) for the labels, well apart on a log scale and below 8 kHz (16 kHz audio).
_MIN_FREQ, _MAX_FREQ = 300.0, 4000.0
_NOISE_LEVEL = 0.05  # white-noise standard deviation; tones have peak amplitude 0.3..0.5


def label_frequencies(n_labels: int) -> np.ndarray:
    """Tone frequency of each label, shape [n_labels], log-spaced in [300, 4000] Hz."""
    if n_labels < 1:
        raise ValueError(f"n_labels must be >= 1, got {n_labels}")
    return np.geomspace(_MIN_FREQ, _MAX_FREQ, n_labels)


def _check_common(name: str, sample_rates: Sequence[int], duration: float) -> None:
    if not name or "/" in name:
        raise ValueError(f"task name must be a plain folder name, got {name!r}")
    bad = [sr for sr in sample_rates if sr not in HEAR_SAMPLE_RATES]
    if not sample_rates or bad:
        raise ValueError(f"sample_rates must be a non-empty subset of {HEAR_SAMPLE_RATES}, got {list(sample_rates)}")
    if duration <= 0:
        raise ValueError(f"duration must be positive, got {duration}")


def _tone(freq: float, n_samples: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A tone with a small random detune, phase and level; shape [n_samples]."""
    t = np.arange(n_samples) / sample_rate
    detuned = freq * rng.uniform(0.97, 1.03)
    return rng.uniform(0.3, 0.5) * np.sin(2 * math.pi * detuned * t + rng.uniform(0, 2 * math.pi))


def _write_audio(task_dir: Path, split: str, file_name: str, audio: np.ndarray,
                 source_rate: int, sample_rates: Sequence[int]) -> None:
    """Write ``audio`` (shape [n], at ``source_rate``) once per sample rate, as 16-bit PCM wav."""
    for sr in sample_rates:
        g = math.gcd(sr, source_rate)
        resampled = audio if sr == source_rate else resample_poly(audio, sr // g, source_rate // g)
        out = task_dir / str(sr) / split / file_name
        out.parent.mkdir(parents=True, exist_ok=True)
        sf.write(out, np.clip(resampled, -1.0, 1.0).astype(np.float32), sr, subtype="PCM_16")


def _write_task_files(task_dir: Path, metadata: Dict[str, Any], labels: Sequence[str],
                      split_labels: Dict[str, Dict[str, Any]]) -> None:
    task_dir.mkdir(parents=True, exist_ok=True)
    (task_dir / "task_metadata.json").write_text(json.dumps(metadata, indent=4))
    with open(task_dir / "labelvocabulary.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["idx", "label"])
        writer.writerows(enumerate(labels))
    for split, file_labels in split_labels.items():
        (task_dir / f"{split}.json").write_text(json.dumps(file_labels, indent=4))


def _metadata(name: str, embedding_type: str, prediction_type: str, split_mode: str,
              splits: Sequence[str], duration: float, evaluation: List[str],
              param_grid: Optional[Dict[str, list]]) -> Dict[str, Any]:
    metadata: Dict[str, Any] = {
        "task_name": name,
        "version": "hear_codec-synthetic-1",
        "embedding_type": embedding_type,
        "prediction_type": prediction_type,
        "split_mode": split_mode,
        "splits": list(splits),
        "sample_duration": duration,
        "evaluation": evaluation,
    }
    if split_mode != "trainvaltest":
        metadata["nfolds"] = len(splits)
    if param_grid:
        # heareval merges this into its hyper-parameter grid for this task only.
        metadata["evaluation_params"] = {"task_specific_param_grid": param_grid}
    return metadata


def make_scene_task(
    root: Path | str,
    name: str = "synthetic_scene",
    *,
    multilabel: bool = False,
    n_folds: int = 0,
    n_labels: int = 4,
    files_per_split: int = 16,
    duration: float = 1.0,
    sample_rates: Sequence[int] = DEFAULT_SAMPLE_RATES,
    param_grid: Optional[Dict[str, list]] = None,
    seed: int = 0,
) -> Path:
    """Write a scene task; returns its folder ``<root>/<name>``.

    Args:
        multilabel: False: one label per file (multiclass, metric top1_acc). True: every subset
            of the labels, the empty one included, in turn (multilabel, metric mAP), so each label
            is present in about half of the files of every split.
        n_folds: 0 for train/valid/test splits; k >= 3 for ``new_split_kfold`` with folds
            fold00..fold{k-1} (heareval needs distinct train, valid and test folds).
        files_per_split: files per split or fold; multiclass labels are assigned in turn.
        duration: seconds per file (the task's ``sample_duration``).
        param_grid: optional ``evaluation_params.task_specific_param_grid`` -- heareval overrides
            these entries of its hyper-parameter grid for this task (e.g. ``{"lr": [1e-2]}``).
    """
    _check_common(name, sample_rates, duration)
    if n_folds and n_folds < 3:
        raise ValueError(f"n_folds must be 0 (train/valid/test) or >= 3, got {n_folds}")
    if files_per_split < 1:
        raise ValueError(f"files_per_split must be >= 1, got {files_per_split}")
    splits = [f"fold{i:02d}" for i in range(n_folds)] if n_folds else list(TRAINVALTEST)
    labels = [f"tone{i}" for i in range(n_labels)]
    freqs = label_frequencies(n_labels)
    rng = np.random.default_rng(seed)
    source_rate = max(sample_rates)
    n_samples = int(round(duration * source_rate))
    task_dir = Path(root) / name

    split_labels: Dict[str, Dict[str, List[str]]] = {}
    for split in splits:
        split_labels[split] = {}
        for i in range(files_per_split):
            if multilabel:
                present = [j for j in range(n_labels) if (i >> j) & 1]
            else:
                present = [i % n_labels]
            audio = _NOISE_LEVEL * rng.standard_normal(n_samples)
            for j in present:
                audio += _tone(freqs[j], n_samples, source_rate, rng)
            file_name = f"{split}-{i:04d}.wav"
            _write_audio(task_dir, split, file_name, audio, source_rate, sample_rates)
            split_labels[split][file_name] = [labels[j] for j in present]

    metadata = _metadata(
        name, "scene", "multilabel" if multilabel else "multiclass",
        "new_split_kfold" if n_folds else "trainvaltest", splits, duration,
        # Same metric lists as HEAR 2021's FSD50K (multilabel) and ESC-50 (multiclass).
        ["mAP", "d_prime", "aucroc"] if multilabel else ["top1_acc", "mAP", "d_prime", "aucroc"],
        param_grid,
    )
    _write_task_files(task_dir, metadata, labels, split_labels)
    return task_dir


def make_event_task(
    root: Path | str,
    name: str = "synthetic_event",
    *,
    n_labels: int = 3,
    files_per_split: int = 8,
    duration: float = 4.0,
    events_per_file: int = 2,
    sample_rates: Sequence[int] = DEFAULT_SAMPLE_RATES,
    param_grid: Optional[Dict[str, list]] = None,
    seed: int = 0,
) -> Path:
    """Write an event task (train/valid/test); returns its folder ``<root>/<name>``.

    Each file holds ``events_per_file`` non-overlapping tone bursts of 0.5-1.0 s over white noise,
    each labelled ``{"label", "start", "end"}`` in milliseconds. Metrics are those of HEAR 2021's
    DCASE 2016 task 2: event_onset_200ms_fms (primary) and segment_1s_er.
    """
    _check_common(name, sample_rates, duration)
    slot = duration / max(events_per_file, 1)
    if events_per_file < 1 or slot < 1.0:
        raise ValueError(f"need 1 <= events_per_file <= duration (1 s per event), got "
                         f"{events_per_file} events in {duration} s")
    labels = [f"tone{i}" for i in range(n_labels)]
    freqs = label_frequencies(n_labels)
    rng = np.random.default_rng(seed)
    source_rate = max(sample_rates)
    n_samples = int(round(duration * source_rate))
    task_dir = Path(root) / name

    split_labels: Dict[str, Dict[str, List[Dict[str, Any]]]] = {}
    counter = 0
    for split in TRAINVALTEST:
        split_labels[split] = {}
        for i in range(files_per_split):
            audio = _NOISE_LEVEL * rng.standard_normal(n_samples)
            events = []
            # One event per equal slot of the file, so events never overlap.
            for k in range(events_per_file):
                label = counter % n_labels
                counter += 1
                length = rng.uniform(0.5, 1.0) * min(slot - 0.1, 1.0)
                start = k * slot + rng.uniform(0.05, slot - length - 0.05)
                a, b = int(start * source_rate), int((start + length) * source_rate)
                burst = _tone(freqs[label], b - a, source_rate, rng)
                ramp = min(len(burst) // 2, int(0.005 * source_rate))  # 5 ms fades, no clicks
                burst[:ramp] *= np.linspace(0, 1, ramp)
                burst[len(burst) - ramp:] *= np.linspace(1, 0, ramp)
                audio[a:b] += burst
                events.append({"label": labels[label], "start": round(start * 1000, 3),
                               "end": round((start + length) * 1000, 3)})
            file_name = f"{split}-{i:04d}.wav"
            _write_audio(task_dir, split, file_name, audio, source_rate, sample_rates)
            split_labels[split][file_name] = events

    metadata = _metadata(name, "event", "multilabel", "trainvaltest", TRAINVALTEST, duration,
                         ["event_onset_200ms_fms", "segment_1s_er"], param_grid)
    _write_task_files(task_dir, metadata, labels, split_labels)
    return task_dir


def make_synthetic_tasks(root: Path | str, *, sample_rates: Sequence[int] = DEFAULT_SAMPLE_RATES,
                         param_grid: Optional[Dict[str, list]] = None) -> List[Path]:
    """Write the three kinds of synthetic task under ``root``; returns their folders.

    ``synthetic_scene`` (multiclass, train/valid/test), ``synthetic_multilabel_kfold``
    (multilabel, 3 folds) and ``synthetic_event`` (event, train/valid/test).
    """
    return [
        make_scene_task(root, "synthetic_scene", sample_rates=sample_rates, param_grid=param_grid),
        make_scene_task(root, "synthetic_multilabel_kfold", multilabel=True, n_labels=3,
                        n_folds=3, sample_rates=sample_rates, param_grid=param_grid, seed=1),
        make_event_task(root, "synthetic_event", sample_rates=sample_rates,
                        param_grid=param_grid, seed=2),
    ]


def task_folders(tasks_dir: Path | str, names: Iterable[str] = ()) -> List[Path]:
    """The task folders under ``tasks_dir`` (all, or those named), checked to be HEAR tasks.

    Raises:
        FileNotFoundError: ``tasks_dir`` or a named task does not exist.
        ValueError: a folder lacks task_metadata.json / labelvocabulary.csv, or there are no tasks.
    """
    tasks_dir = Path(tasks_dir)
    if not tasks_dir.is_dir():
        raise FileNotFoundError(f"tasks folder {tasks_dir} does not exist (see docs/evaluation.md "
                                "for how to download the HEAR 2021 tasks)")
    names = list(names)
    if names:
        folders = [tasks_dir / n for n in names]
        missing = [str(f) for f in folders if not f.is_dir()]
        if missing:
            raise FileNotFoundError(f"no such task folder(s): {', '.join(missing)}")
    else:
        folders = sorted(p for p in tasks_dir.iterdir() if p.is_dir())
    if not folders:
        raise ValueError(f"{tasks_dir} contains no task folders")
    for folder in folders:
        for needed in ("task_metadata.json", "labelvocabulary.csv"):
            if not (folder / needed).is_file():
                raise ValueError(f"{folder} is not a HEAR task: it has no {needed} (a task folder "
                                 f"must hold task_metadata.json, labelvocabulary.csv, <split>.json "
                                 f"and <sample rate>/<split>/*.wav)")
    return folders


def check_sample_rate(task_dir: Path, sample_rate: int) -> None:
    """Raise a clear error if the task has no audio at ``sample_rate`` for one of its splits."""
    metadata = json.loads((task_dir / "task_metadata.json").read_text())
    for split in metadata["splits"]:
        if not (task_dir / str(sample_rate) / split).is_dir():
            present = sorted(p.name for p in task_dir.iterdir() if p.is_dir() and p.name.isdigit())
            raise FileNotFoundError(
                f"task {task_dir.name} has no {sample_rate} Hz audio for split {split!r} "
                f"(expected {task_dir / str(sample_rate) / split}; sample rates present: "
                f"{present or 'none'}). Pick a model sample rate the task has, e.g. "
                f"--model-options '{{\"sample_rate\": {present[0] if present else 48000}}}'")


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m hear_codec.evaluation.tasks",
        description="Write three small synthetic HEAR tasks (scene multiclass, multilabel 3-fold, "
                    "event) for smoke-testing the evaluation pipeline. They carry a quick "
                    "hyper-parameter grid (evaluation_params.task_specific_param_grid), so even "
                    "`python -m hear_codec.evaluate --grid fast` trains their predictors properly.")
    parser.add_argument("out", type=Path, help="folder to write the task folders into (use it as --tasks-dir)")
    parser.add_argument("--sample-rates", type=int, nargs="+", default=list(DEFAULT_SAMPLE_RATES),
                        help=f"audio sample rates to write, from {HEAR_SAMPLE_RATES} (default: 16000 48000)")
    args = parser.parse_args(argv)
    try:
        made = make_synthetic_tasks(args.out, sample_rates=args.sample_rates, param_grid=QUICK_PARAM_GRID)
    except ValueError as e:
        parser.error(str(e))
    for task_dir in made:
        print(task_dir)


if __name__ == "__main__":
    cli.run(main)
