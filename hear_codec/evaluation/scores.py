"""Read heareval's per-task results into one table of primary scores (CSV and Markdown).

heareval's predictions runner leaves in every embeddings task folder:

* ``task_metadata.json`` (copied from the task): ``evaluation[0]`` is the primary metric;
* ``test.predicted-scores.json``: ``{"test": {"test_<metric>": ...}}`` for train/valid/test
  tasks, or one entry per test fold plus ``"aggregated_scores": {"test_<metric>_mean",
  "test_<metric>_std"}`` for k-fold tasks;
* ``prediction-done.json`` (``"time"`` in seconds) and, from the embeddings runner,
  ``profile.embeddings.json`` (``"time_elapsed"`` in seconds).
"""
from __future__ import annotations

import argparse
import csv
import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import List, Optional, Sequence

from hear_codec import cli
from hear_codec.files import atomic_path, write_text

# Primary metrics where lower is better (heareval's ScoreFunction(maximize=False)).
LOWER_IS_BETTER = {"segment_1s_er"}


@dataclass
class TaskScore:
    """One row of the table: the primary test score of one task."""

    task: str
    embedding_type: str  # scene | event
    prediction_type: str  # multiclass | multilabel
    metric: str  # the task's primary metric, e.g. top1_acc, mAP, event_onset_200ms_fms
    score: float  # test score; for k-fold tasks the mean over test folds
    std: Optional[float]  # standard deviation over folds (k-fold tasks only)
    folds: int  # number of test folds (1 for train/valid/test tasks)
    better: str  # "higher" or "lower"
    embedding_seconds: Optional[float]
    prediction_seconds: Optional[float]


def _read_json(path: Path) -> Optional[dict]:
    return json.loads(path.read_text()) if path.is_file() else None


def read_task_score(task_dir: Path | str) -> TaskScore:
    """The primary score of one embeddings task folder on which predictions have run.

    Raises:
        FileNotFoundError: the folder has no ``test.predicted-scores.json`` (predictions not run
            or failed; see ``prediction.log`` there).
    """
    task_dir = Path(task_dir)
    metadata = json.loads((task_dir / "task_metadata.json").read_text())
    results = _read_json(task_dir / "test.predicted-scores.json")
    if results is None:
        raise FileNotFoundError(f"no test.predicted-scores.json in {task_dir}: predictions have not "
                                f"completed for this task (see {task_dir / 'prediction.log'})")
    metric = metadata["evaluation"][0]
    key = f"test_{metric}"
    if "aggregated_scores" in results:
        score = results["aggregated_scores"][f"{key}_mean"]
        std = results["aggregated_scores"][f"{key}_std"]
        folds = sum(1 for v in results.values() if isinstance(v, dict) and key in v)
    else:
        score, std, folds = results["test"][key], None, 1
    profile = _read_json(task_dir / "profile.embeddings.json") or {}
    done = _read_json(task_dir / "prediction-done.json") or {}
    return TaskScore(
        task=metadata["task_name"], embedding_type=metadata["embedding_type"],
        prediction_type=metadata["prediction_type"], metric=metric, score=float(score),
        std=None if std is None else float(std), folds=folds,
        better="lower" if metric in LOWER_IS_BETTER else "higher",
        embedding_seconds=profile.get("time_elapsed"), prediction_seconds=done.get("time"),
    )


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def write_csv(rows: Sequence[TaskScore], path: Path | str) -> Path:
    path = Path(path)
    names = [f.name for f in fields(TaskScore)]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=names)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if v is None else v) for k, v in asdict(row).items()})
    return path


def markdown_table(rows: Sequence[TaskScore]) -> str:
    """A Markdown table: task, type, metric, score (± std over folds), time."""
    lines = ["| task | type | primary metric | score | folds | embed (s) | predict (s) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        score = _fmt(r.score) + (f" ± {_fmt(r.std)}" if r.std is not None else "")
        arrow = "↓" if r.better == "lower" else "↑"
        lines.append(f"| {r.task} | {r.embedding_type} {r.prediction_type} | {r.metric} {arrow} | {score} "
                     f"| {r.folds} | {_fmt(r.embedding_seconds, 1)} | {_fmt(r.prediction_seconds, 1)} |")
    return "\n".join(lines) + "\n"


def write_tables(rows: Sequence[TaskScore], out_dir: Path | str, title: str = "") -> List[Path]:
    """Write ``scores.csv`` and ``scores.md`` (headed by ``title`` if given) into ``out_dir``;
    returns their paths."""
    out_dir = Path(out_dir)
    md = out_dir / "scores.md"
    write_text(md, (f"{title}\n\n" if title else "") + markdown_table(rows))
    return [write_csv(rows, out_dir / "scores.csv"), md]


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m hear_codec.evaluation.scores",
        description="Print the primary test score of each embeddings task folder on which heareval's "
                    "predictions runner has run, as a Markdown table; with --out also write "
                    "scores.csv and scores.md there.")
    parser.add_argument("task_dirs", nargs="+", type=Path, metavar="TASK_DIR",
                        help="embeddings task folders, e.g. embeddings/hear_codec/*")
    parser.add_argument("--out", type=Path, default=None, help="folder for scores.csv and scores.md")
    args = parser.parse_args(argv)
    try:
        rows = [read_task_score(t) for t in args.task_dirs]
    except FileNotFoundError as e:
        parser.error(str(e))
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        write_tables(rows, args.out)
    print(markdown_table(rows), end="")


if __name__ == "__main__":
    cli.run(main)
