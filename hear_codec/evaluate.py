"""Evaluate a checkpoint on a folder of HEAR tasks, end to end.

    python -m hear_codec.evaluate CHECKPOINT --tasks-dir tasks [--task NAME ...]
        [--model-options '{"sample_rate": 16000}'] [--grid fast|full] [--out hear-eval]
    python -m hear_codec.evaluate --published mel256-ec-base_st --tasks-dir tasks ...

``--published NAME`` evaluates a published EnCodecMAE model by name: it is fetched into the
Hugging Face cache on first use, as ``hear_codec.load_model(published=NAME)`` does, and passed to
heareval as the model option ``{"published": NAME}``.

Three stages, each heareval 2021.1.3's own code run in this process through the compatibility
layer (hear_codec/evaluation/compat.py), so scores follow the HEAR protocol:

1. embeddings: heareval's embeddings runner with module ``hear_codec`` →
   ``<out>/embeddings/hear_codec[-<options>]/<task>/``;
2. predictions: heareval's predictions runner (downstream MLP, hyper-parameter grid, test
   scores) on each of those folders;
3. a table of every task's primary test metric → ``<out>/scores.csv`` and ``<out>/scores.md``.

One ``--out`` folder holds one run: its settings are saved in ``<out>/run.json`` and a later
call with other settings (checkpoint, model options, grid) is refused. With the same settings,
tasks whose embeddings (``.done.embeddings``) or predictions (``prediction-done.json``) are
already there are not recomputed, so an interrupted run resumes.
"""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence

from hear_codec import cli
from hear_codec.files import write_json

if TYPE_CHECKING:
    from hear_codec.evaluation.scores import TaskScore

log = logging.getLogger("hear_codec.evaluate")

# --grid → (heareval's grid name, default number of grid points)
GRIDS = {
    "fast": ("faster", 1),  # smoke runs: small MLPs, 10 epochs, one grid point
    "full": ("default", 8),  # the HEAR 2021 protocol (heareval's defaults)
}


def embeddings_folder_name(module: str, model_options: Dict) -> str:
    """The folder heareval's embeddings runner writes to (same rule as heareval/embeddings/runner.py)."""
    from slugify import slugify

    if not model_options:
        return module
    return module + "-" + "-".join(f"{slugify(k)}={slugify(str(v))}" for k, v in model_options.items())


def check_inputs(checkpoint: Optional[str], tasks_dir: Path | str, task_names: Sequence[str],
                 grid: str) -> List[Path]:
    """Check what can be checked before loading anything; returns the task folders.

    Raises:
        FileNotFoundError: missing checkpoint, tasks folder or named task.
        ValueError: unknown grid, or a folder that is not a HEAR task.
    """
    from hear_codec.evaluation.tasks import task_folders

    if grid not in GRIDS:
        raise ValueError(f"grid must be one of {sorted(GRIDS)}, got {grid!r}")
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise FileNotFoundError(f"checkpoint {checkpoint} does not exist")
    return task_folders(tasks_dir, task_names)


def run_settings(module: str, checkpoint: Optional[str], model_options: Dict, grid: str,
                 grid_points: Optional[int]) -> Dict:
    """What makes two runs comparable; saved as ``<out>/run.json``."""
    return {
        "module": module,
        "checkpoint": None if checkpoint is None else str(Path(checkpoint).resolve()),
        "model_options": model_options,
        "grid": grid,
        "grid_points": GRIDS[grid][1] if grid_points is None else grid_points,
    }


def check_out_dir(out_dir: Path | str, settings: Dict) -> None:
    """Refuse an ``out_dir`` that holds a run with other settings: heareval would silently reuse
    its finished embeddings and predictions, and the table would mix the two runs.

    Raises:
        ValueError: ``<out_dir>/run.json`` exists and differs from ``settings``.
    """
    path = Path(out_dir) / "run.json"
    if path.is_file():
        previous = json.loads(path.read_text())
        if previous != settings:
            raise ValueError(f"{out_dir} holds a run with other settings ({previous}); pass another "
                             f"--out, or delete {out_dir} to start over with {settings}")


def run_evaluation(
    checkpoint: Optional[str],
    tasks_dir: Path | str,
    out_dir: Path | str,
    *,
    task_names: Sequence[str] = (),
    model_options: Optional[Dict] = None,
    grid: str = "full",
    grid_points: Optional[int] = None,
    module: str = "hear_codec",
) -> List[TaskScore]:
    """Embeddings → predictions → score table for each task; returns the table's rows.

    Args:
        checkpoint: model file passed to ``<module>.load_model``; None for modules without weights.
        tasks_dir: folder of HEAR tasks (``<tasks_dir>/<task>/task_metadata.json`` ...).
        out_dir: where embeddings, predictions and ``scores.csv``/``scores.md`` go.
        task_names: run only these tasks (default: every task folder in ``tasks_dir``).
        model_options: keyword arguments for ``load_model``, e.g. ``{"sample_rate": 16000}``.
        grid: "fast" (heareval's "faster" grid, 1 point) or "full" (the HEAR protocol, 8 points).
        grid_points: override the number of grid points.
        module: the HEAR module to evaluate.
    """
    from hear_codec.evaluation import compat, scores, tasks

    task_dirs = check_inputs(checkpoint, tasks_dir, task_names, grid)
    model_options = dict(model_options or {})
    settings = run_settings(module, checkpoint, model_options, grid, grid_points)
    check_out_dir(out_dir, settings)
    heareval_grid, grid_points = GRIDS[grid][0], settings["grid_points"]
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)

    # Load the model once up front: a bad checkpoint or option fails now, and we know which
    # sample rate's audio each task must have.
    hear_module = importlib.import_module(module)
    args = () if checkpoint is None else (checkpoint,)
    sample_rate = int(hear_module.load_model(*args, **model_options).sample_rate)
    for task_dir in task_dirs:
        tasks.check_sample_rate(task_dir, sample_rate)
    log.info("%d task(s) from %s; model %s (%s), sample rate %d Hz, grid %s (heareval %r, %d point(s))",
             len(task_dirs), tasks_dir, checkpoint, module, sample_rate, grid, heareval_grid, grid_points)

    write_json(out_dir / "run.json", settings, indent=4)

    compat.apply()
    embeddings_runner = compat.import_embeddings_runner().runner
    from heareval.predictions.runner import runner as predictions_runner

    embeddings_root = out_dir / "embeddings"
    embedded = embeddings_root / embeddings_folder_name(module, model_options)
    n = len(task_dirs)
    for i, task_dir in enumerate(task_dirs, 1):
        start = time.time()
        log.info("[%d/%d] %s: embeddings", i, n, task_dir.name)
        cli = [module, "--tasks-dir", str(task_dir.parent.resolve()), "--task", task_dir.name,
               "--embeddings-dir", str(embeddings_root), "--model-options", json.dumps(model_options)]
        if checkpoint is not None:
            cli += ["--model", str(checkpoint)]
        embeddings_runner.main(args=cli, standalone_mode=False)
        log.info("[%d/%d] %s: predictions", i, n, task_dir.name)
        # Absolute path: heareval puts its Lightning logs under Path("logs") / this path.
        predictions_runner.main(args=[str(embedded / task_dir.name), "--grid", heareval_grid,
                                      "--grid-points", str(grid_points)], standalone_mode=False)
        row = scores.read_task_score(embedded / task_dir.name)
        log.info("[%d/%d] %s: %s = %.4f (%.0f s)", i, n, task_dir.name, row.metric, row.score, time.time() - start)

    rows = [scores.read_task_score(embedded / t.name) for t in task_dirs]
    title = (f"HEAR scores: {module} {checkpoint or ''}, model options {json.dumps(model_options)}, "
             f"grid {grid} ({grid_points} point(s))")
    written = scores.write_tables(rows, out_dir, title=title)
    log.info("scores written to %s", ", ".join(str(p) for p in written))
    return rows


def _log_to(log_file: Path) -> None:
    """Log progress to stderr and ``log_file`` with our own handlers (TensorFlow and Lightning
    configure the root logger too); calling it again replaces the previous handlers."""
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()
    formatter = logging.Formatter("%(asctime)s hear_codec.evaluate: %(message)s")
    for handler in (logging.StreamHandler(), logging.FileHandler(log_file)):
        handler.setFormatter(formatter)
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m hear_codec.evaluate",
        description=__doc__.split("\n\n")[0] + " Runs heareval's embeddings runner, then its "
        "predictions runner, then writes each task's primary test metric to OUT/scores.csv and "
        "OUT/scores.md.",
        epilog="See docs/evaluation.md for how to download the HEAR 2021 tasks.",
    )
    parser.add_argument("checkpoint", metavar="CHECKPOINT", nargs="?",
                        help="hear_codec checkpoint file to evaluate (or give --published NAME instead)")
    parser.add_argument("--published", metavar="NAME",
                        help="evaluate a published EnCodecMAE model by name (python -m hear_codec.published lists "
                             "them), downloaded into the Hugging Face cache on first use")
    parser.add_argument("--tasks-dir", required=True, type=Path,
                        help="folder of HEAR tasks, one sub-folder per task (task_metadata.json, "
                             "labelvocabulary.csv, <split>.json, <sample rate>/<split>/*.wav)")
    parser.add_argument("--task", action="append", default=[], metavar="NAME",
                        help="evaluate only this task (a sub-folder of --tasks-dir); repeat for several "
                             "(default: all tasks)")
    parser.add_argument("--model-options", default="{}", metavar="JSON",
                        help="JSON object of keyword arguments for hear_codec.load_model, e.g. "
                             "'{\"sample_rate\": 16000}' (the tasks must then have 16000 Hz audio); "
                             "also names the embeddings folder, as in heareval (default: {})")
    parser.add_argument("--grid", choices=sorted(GRIDS), default="full",
                        help="downstream hyper-parameter search: 'full' = the HEAR protocol (heareval's "
                             "default grid, 8 points, up to 500 epochs each); 'fast' = heareval's 'faster' "
                             "grid with 1 point, for smoke runs (scores are lower and not comparable) "
                             "(default: full)")
    parser.add_argument("--grid-points", type=int, default=None,
                        help="number of grid points to try (default: 8 for full, 1 for fast)")
    parser.add_argument("--out", type=Path, default=Path("hear-eval"),
                        help="output folder of this run: embeddings/ (with heareval's per-task predictions "
                             "and logs), scores.csv, scores.md, evaluate.log, run.json; one folder per "
                             "checkpoint/options/grid (default: hear-eval)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.grid_points is not None and args.grid_points < 1:
        build_parser().error("--grid-points must be >= 1")
    if (args.checkpoint is None) == (args.published is None):
        build_parser().error("give a CHECKPOINT or --published NAME (one of them)")
    args.out.mkdir(parents=True, exist_ok=True)
    _log_to(args.out / "evaluate.log")
    try:
        model_options = cli.parse_model_options(args.model_options)
        if args.published is not None:
            if "published" in model_options:
                raise cli.UserError("give the published model either with --published or in --model-options")
            model_options["published"] = args.published
        check_inputs(args.checkpoint, args.tasks_dir, args.task, args.grid)
        check_out_dir(args.out, run_settings("hear_codec", args.checkpoint, model_options, args.grid,
                                             args.grid_points))
        if args.published is not None:  # before anything runs: offline, one line and status 2
            from hear_codec import published

            published.fetch(args.published)
    except (FileNotFoundError, ValueError, cli.UserError) as e:
        log.error("%s", e)
        return 2
    rows = run_evaluation(args.checkpoint, args.tasks_dir, args.out, task_names=args.task,
                          model_options=model_options, grid=args.grid, grid_points=args.grid_points)
    from hear_codec.evaluation.scores import markdown_table

    print(markdown_table(rows))
    return 0


if __name__ == "__main__":
    cli.run(main)
