"""The shared Lightning engine: one place for devices, precision, checkpoints, resume and logs.

Every training CLI in ``training/`` (EnCodecMAE pretraining and self-training, AudioFormer
pretraining and fine-tuning, EnCLAP captioning) builds its own ``LightningModule`` and data, then
lets this module run it::

    parser = argparse.ArgumentParser()
    ...your own options...
    engine.add_engine_args(parser)            # --max-steps, --devices, --precision, --resume, ...
    args = parser.parse_args()
    run = engine.EngineConfig.from_args(args)  # the typed options; library code never sees args
    trainer = engine.make_trainer(run, out_dir, sampler=step_sampler)
    engine.fit(trainer, module, run, out_dir, train_dataloaders=..., val_dataloaders=...)

``add_engine_args(parser, max_steps=..., val_every=..., ckpt_every=..., log_every=...)`` takes
the caller's defaults.

What you get, with nothing EnCodecMAE-specific in it:

* **Devices.** ``--accelerator/--devices/--num-nodes/--strategy`` go to Lightning unchanged, so
  every launcher Lightning supports works: one process per GPU spawned by Lightning itself,
  ``torchrun``, SLURM (``srun``), or any launcher that sets the usual environment variables. With
  more than one device and ``--strategy auto`` the engine picks ``ddp``.
* **Precision.** ``--precision`` defaults to ``bf16-mixed`` when the run lands on a GPU and to
  ``32-true`` on CPU.
* **Steps.** ``--max-steps`` counts optimiser steps; ``--accumulate-grad-batches`` micro-batches
  make one step. ``--val-every`` counts *training batches* (Lightning's ``val_check_interval``),
  and validation is step-based (``check_val_every_n_epoch=None``) so infinite samplers work.
* **Data order.** ``make_trainer(..., sampler=s)`` wires a resumable step sampler
  (``training.data.sampler.StepSampler``) with :class:`StepSamplerCallback`: it learns the rank layout and
  the step a resumed run starts at before Lightning creates the training iterator, and the
  distributed sampler is left out (the step sampler shards by rank itself).
* **Checkpoints.** ``OUT/last.ckpt`` (full Lightning state: weights, optimiser, loop counters) is
  rewritten every ``--ckpt-every`` optimiser steps and at the end; with ``--keep-checkpoints N``
  the last N periodic ones are also kept as ``OUT/checkpoints/step-XXXXXXXX.ckpt``. Every write is
  atomic (temporary file in the same folder, fsync, rename): Lightning's own writer goes through
  the system temp folder and ``shutil.move``, which is a non-atomic copy when /tmp is another
  file system, so the engine installs :class:`AtomicCheckpointIO`.
* **Exports.** If the module defines ``export(out_dir)``, the engine calls it on global rank 0
  after every checkpoint and at the end (the pretraining modules write ``OUT/last.ckpt.hearcodec``,
  :data:`EXPORT`, the file ``hear_codec.load_model`` reads). Exports must be atomic too
  (:func:`hear_codec.files.atomic_torch_save`).
* **Resume.** ``--resume`` continues from ``OUT/last.ckpt``; ``--resume PATH`` from a given file;
  ``--resume auto`` resumes when ``OUT/last.ckpt`` exists and starts fresh otherwise (for
  preemptible cluster jobs that are simply resubmitted). Lightning restores weights, optimiser
  and step counters; *exact* resumption also needs the data order and any randomness in the step
  to be functions of the step (the step sampler above; RNG states are not saved).
* **SIGTERM** (what SLURM and cloud schedulers send before they stop a job): the run finishes the
  optimiser step in progress, saves ``OUT/last.ckpt`` and the export, and exits with status
  :data:`PREEMPTED_STATUS` (143 = 128 + SIGTERM, what a shell reports for a process ended by
  SIGTERM), so a job script tells it from a finished run (0) and requeues it with ``--resume
  auto`` (:class:`SaveOnSigterm`). Every rank of a DDP run stops at the same step.
* **One run per folder.** :func:`run_lock` holds an exclusive lock on ``OUT/.lock`` while a run
  trains into OUT (``fit``; ``training.pretrain`` from its start): a second run into the same
  folder stops at once with a message naming the first. The kernel drops the lock when its
  process ends, however it ends, so a killed run never blocks the next one. Taking the lock also
  removes the temporary files that writers killed mid-write left in OUT
  (:func:`hear_codec.files.stale_temporaries`: never a live process's).
* **A full disk** while writing a checkpoint stops the run with one line
  (:class:`hear_codec.errors.DiskFullError`: which file, and that its previous version is intact).
* **Logs.** CSV and TensorBoard under ``OUT/logs/version_N/`` (a new version per resume), a
  progress bar (``--no-progress-bar`` to turn it off, e.g. in batch jobs) and, at the end,
  ``OUT/loss_curve.png``: every logged metric whose name contains ``loss`` against the step,
  all versions joined.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import fcntl
import logging
import math
import os
import shlex
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, fields
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

from hear_codec import cli
from hear_codec.files import atomic_path, atomic_torch_save, stale_temporaries

log = logging.getLogger(__name__)

LAST = "last.ckpt"
EXPORT = "last.ckpt.hearcodec"  # what the pretraining modules' export writes: hear_codec.load_model reads it
LOCK = ".lock"
PREEMPTED_STATUS = 128 + signal.SIGTERM  # 143, as a shell reports a process that SIGTERM ended


@dataclass
class EngineConfig:
    """The engine's options (see :func:`add_engine_args` for what each means)."""

    max_steps: int = 1000
    accelerator: str = "auto"
    devices: str | int | list = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str | None = None
    accumulate_grad_batches: int = 1
    gradient_clip: float = 0.0
    val_every: int = 500
    val_batches: int | None = None
    ckpt_every: int = 1000
    keep_checkpoints: int = 0
    resume: str | None = None
    log_every: int = 50
    progress_bar: bool = True
    seed: int = 0

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "EngineConfig":
        """From the options :func:`add_engine_args` declared."""
        values = {f.name: getattr(args, f.name) for f in fields(cls) if f.name != "progress_bar"}
        return cls(**values, progress_bar=not args.no_progress_bar)


def add_engine_args(parser: argparse.ArgumentParser, *, max_steps: int = 1000, val_every: int = 500,
                    ckpt_every: int = 1000, log_every: int = 50) -> argparse._ArgumentGroup:
    """Add the engine's options (group "engine") with the caller's defaults; returns the group."""
    g = parser.add_argument_group("engine (devices, precision, checkpoints, logs; see training/engine.py)")
    g.add_argument("--max-steps", type=cli.positive_int, default=max_steps,
                   help="optimiser steps to train for (default: %(default)s)")
    g.add_argument("--accelerator", default="auto",
                   help="Lightning accelerator: auto, cpu, gpu, cuda, mps (default: %(default)s)")
    g.add_argument("--devices", default="auto",
                   help="devices per node: an int, a comma list of GPU ids, -1 (all) or auto (default: %(default)s)")
    g.add_argument("--num-nodes", type=cli.positive_int, default=1,
                   help="number of machines; each runs --devices processes (default: %(default)s)")
    g.add_argument("--strategy", default="auto",
                   help="Lightning strategy: auto (ddp when more than one device), ddp, ddp_spawn, "
                        "ddp_find_unused_parameters_true, fsdp, ... (default: %(default)s)")
    g.add_argument("--precision", default=None,
                   help="Lightning precision: bf16-mixed, 16-mixed, 32-true, ... "
                        "(default: bf16-mixed on GPU, 32-true on CPU)")
    g.add_argument("--accumulate-grad-batches", type=cli.positive_int, default=1,
                   help="micro-batches per optimiser step; effective batch = batch size x this x devices x nodes "
                        "(default: %(default)s)")
    g.add_argument("--gradient-clip", type=cli.non_negative_float, default=0.0,
                   help="clip the gradient norm to this value; 0 = no clipping (default: %(default)s)")
    g.add_argument("--val-every", type=cli.non_negative_int, default=val_every,
                   help="run validation every this many training batches; 0 = never (default: %(default)s)")
    g.add_argument("--val-batches", type=cli.positive_int, default=None,
                   help="validation batches per validation run (default: the whole validation set)")
    g.add_argument("--ckpt-every", type=cli.non_negative_int, default=ckpt_every,
                   help="rewrite OUT/last.ckpt every this many optimiser steps (default: %(default)s)")
    g.add_argument("--keep-checkpoints", type=int, default=0,
                   help="also keep the last N periodic checkpoints as OUT/checkpoints/step-*.ckpt; "
                        "-1 = keep all (default: %(default)s)")
    g.add_argument("--resume", nargs="?", const="last", default=None, metavar="PATH|auto",
                   help="continue a run: no value = OUT/last.ckpt (must exist); PATH = that checkpoint; "
                        "auto = OUT/last.ckpt if it exists, else start fresh")
    g.add_argument("--log-every", type=cli.non_negative_int, default=log_every,
                   help="log training metrics every this many optimiser steps (default: %(default)s)")
    g.add_argument("--no-progress-bar", action="store_true", help="turn the progress bar off (batch jobs)")
    g.add_argument("--seed", type=int, default=0,
                   help="seed for initialisation and for the data order and masks (default: %(default)s)")
    return g


LR_SCHEDULES = ("constant", "cosine")


def schedule_problem(warmup_steps: int, schedule: str = "constant", total_steps: int | None = None,
                     decay_steps: int | None = None) -> str | None:
    """Why a learning-rate schedule cannot run, in the words of the options that set it, or None.

    The one statement of the schedule's rules: :func:`lr_factor` raises it as a ValueError, the
    training CLIs print it before any work (each family's ``TrainConfig.check``)."""
    if schedule not in LR_SCHEDULES:
        return f"unknown learning-rate schedule {schedule!r}; choose one of {LR_SCHEDULES}"
    if warmup_steps < 0:
        return f"--warmup-steps must be 0 or more, got {warmup_steps}"
    if decay_steps is not None and (schedule != "cosine" or decay_steps < 1):
        return (f"--decay-steps is the length of the cosine's decay: it needs --schedule cosine and at least 1 "
                f"step, got --decay-steps {decay_steps} with --schedule {schedule}")
    if schedule == "cosine" and (not total_steps or total_steps <= warmup_steps):
        return (f"--schedule cosine decays to 0 at --max-steps, which must be beyond --warmup-steps "
                f"({warmup_steps}); got --max-steps {total_steps}")
    return None


def lr_factor(step: int, warmup_steps: int, schedule: str = "constant", total_steps: int | None = None,
              decay_steps: int | None = None) -> float:
    """The learning rate at optimiser step ``step`` (0-based) as a fraction of the peak.

    A linear warm-up over the first ``warmup_steps`` steps (step 0 at 1 / warmup_steps), then
    ``constant`` (1) or ``cosine``: 0.5 * (1 + cos(pi * progress)) with progress going from 0 where
    the decay starts to 1 at ``total_steps``, and 0 from then on (a run continued past its planned
    end trains no further unless it is given a new ``--max-steps``, which stretches the curve).
    The decay starts after the warm-up, or with ``decay_steps`` that many steps before the end
    (warm-up, stable, decay: the peak rate until then, so a tail can be put on any checkpoint of a
    constant run, e.g. a resumed one).
    """
    problem = schedule_problem(warmup_steps, schedule, total_steps, decay_steps)
    if problem:
        raise ValueError(problem)
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    start = warmup_steps if decay_steps is None else max(warmup_steps, total_steps - decay_steps)
    progress = min(1.0, max(0, step - start) / (total_steps - start))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def with_lr_schedule(optimizer, warmup_steps: int, schedule: str, total_steps: int | None,
                     decay_steps: int | None = None, module=None):
    """What a LightningModule's ``configure_optimizers`` returns: ``optimizer`` alone for a constant
    learning rate without warm-up, else with a per-step :func:`lr_factor` scheduler.

    Given the ``module``, the schedule follows its trainer's step (``global_step``) rather than the
    scheduler's own count, which restarts at 0 when a run resumes from a checkpoint that had no
    scheduler (a constant run given a warm-up or a decay tail); without a trainer (a module used
    on its own) it follows the count."""
    if warmup_steps <= 0 and schedule == "constant":
        return optimizer
    lr_factor(0, warmup_steps, schedule, total_steps, decay_steps)  # refuses a bad schedule before the first step

    def factor(count: int) -> float:
        trainer = getattr(module, "_trainer", None)
        return lr_factor(count if trainer is None else trainer.global_step, warmup_steps, schedule, total_steps,
                         decay_steps)

    sched = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return dict(optimizer=optimizer, lr_scheduler=dict(scheduler=sched, interval="step"))


def on_gpu(run: EngineConfig) -> bool:
    """Whether --accelerator resolves to a CUDA device."""
    acc = str(run.accelerator).lower()
    return acc in ("gpu", "cuda") or (acc == "auto" and torch.cuda.is_available())


def resolve_precision(run: EngineConfig) -> str:
    if run.precision:
        return run.precision
    return "bf16-mixed" if on_gpu(run) else "32-true"


def world_size(run: EngineConfig) -> int:
    """Training processes of the run: devices per node x nodes (``auto`` or -1: every visible GPU,
    or 1 on CPU). One optimiser step sees batch size x ``accumulate_grad_batches`` x this many clips."""
    devices = _parse_devices(run.devices)
    if devices in ("auto", -1):
        per_node = torch.cuda.device_count() if on_gpu(run) else 1
    else:
        per_node = len(devices) if isinstance(devices, list) else devices
    return max(1, per_node) * run.num_nodes


def _parse_devices(devices):
    if isinstance(devices, (int, list)):
        return devices
    text = str(devices).strip()
    if text == "auto":
        return "auto"
    if "," in text:
        return [int(x) for x in text.split(",") if x.strip()]
    return int(text)


def resume_path(run: EngineConfig, out_dir) -> str | None:
    """The checkpoint --resume names, or None for a fresh start."""
    last = Path(out_dir) / LAST
    if run.resume is None:
        return None
    if run.resume == "auto":
        return str(last) if last.exists() else None
    path = last if run.resume == "last" else Path(run.resume)
    if not path.exists():
        raise FileNotFoundError(f"--resume: no checkpoint at {path}")
    return str(path)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes Lightning checkpoints with a same-folder temporary file + fsync + rename."""

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        atomic_torch_save(checkpoint, path)


class PeriodicCheckpoint(Callback):
    """OUT/last.ckpt every ``every`` optimiser steps and at the end of training; optional step copies.

    Calls ``pl_module.export(out_dir)`` (if defined) on global rank 0 after each save.
    """

    def __init__(self, out_dir, every: int, keep: int = 0):
        self.out_dir = Path(out_dir)
        self.every = max(0, int(every))
        self.keep = int(keep)
        self._saved_step = -1

    def save(self, trainer, pl_module, copy: bool = True):
        """OUT/last.ckpt and the export at this step (once per step), and with ``copy`` the
        step's copy under ``--keep-checkpoints``. Collective: every rank calls it, rank 0 writes."""
        step = trainer.global_step
        if step == self._saved_step:
            return
        self._saved_step = step
        trainer.save_checkpoint(self.out_dir / LAST, weights_only=False)  # collective; rank 0 writes
        if self.keep and copy:
            trainer.save_checkpoint(self.out_dir / "checkpoints" / f"step-{step:08d}.ckpt", weights_only=False)
            if trainer.is_global_zero and self.keep > 0:
                old = sorted((self.out_dir / "checkpoints").glob("step-*.ckpt"))[:-self.keep]
                for path in old:
                    path.unlink(missing_ok=True)
        if trainer.is_global_zero and callable(getattr(pl_module, "export", None)):
            pl_module.export(self.out_dir)
        trainer.strategy.barrier("periodic_checkpoint")

    def on_train_start(self, trainer, pl_module):
        self._saved_step = trainer.global_step  # a resumed run does not rewrite what it loaded

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.every and trainer.global_step > 0 and trainer.global_step % self.every == 0:
            self.save(trainer, pl_module)

    def on_train_end(self, trainer, pl_module):
        self.save(trainer, pl_module)


class Preempted(SystemExit):
    """The run stopped on SIGTERM after saving an exact-resume checkpoint at ``step``. Uncaught,
    it ends the process with :data:`PREEMPTED_STATUS`."""

    def __init__(self, step: int):
        super().__init__(PREEMPTED_STATUS)
        self.step = step


class SaveOnSigterm(Callback):
    """On SIGTERM: finish the optimiser step in progress, save OUT/last.ckpt and the export
    (``checkpoint``, the run's :class:`PeriodicCheckpoint`), then raise :class:`Preempted`.

    Lightning's own handler stops at the end of the current *batch*, which can be the middle of an
    accumulated step (not resumable exactly), saves nothing, and leaves an exit status of 0, as if
    the run had finished. So this callback replaces Lightning's SIGTERM handler while the training
    loop runs (Lightning installs it when fit starts and restores the previous one at its end)
    with one that only takes note. At the end of every optimiser step the ranks agree, in one
    all-reduce, whether any of them was signalled (SLURM signals every task, ``torchrun`` every
    worker, a user's ``kill`` maybe only one), so every rank stops after the same step. A signal
    during validation takes effect after the next step; one during the last step lets the run end
    as usual (it saves anyway)."""

    def __init__(self, checkpoint: PeriodicCheckpoint):
        self.checkpoint = checkpoint
        self.received = False
        self._step = -1

    def _note(self, signum, frame):
        self.received = True

    def on_train_start(self, trainer, pl_module):
        self.received = False
        self._step = trainer.global_step
        if threading.current_thread() is threading.main_thread():  # Python's rule for signal handlers
            signal.signal(signal.SIGTERM, self._note)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self._step:  # a micro-batch inside an accumulated step
            return
        self._step = step = trainer.global_step
        if 0 < trainer.max_steps <= step:  # the run ends now and saves as it does
            return
        if not trainer.strategy.reduce_boolean_decision(self.received, all=False):
            return
        self.checkpoint.save(trainer, pl_module, copy=False)
        if trainer.is_global_zero:
            saved = self.checkpoint.out_dir / LAST
            log.warning("SIGTERM: stopped after step %d and saved %s; exit status %d. Run the same command with "
                        "--resume auto to continue exactly from here.", step, saved, PREEMPTED_STATUS)
        raise Preempted(step)


class StepSamplerCallback(Callback):
    """Tells a resumable step sampler (``training.data.sampler.StepSampler``: attributes ``start_step``,
    ``accumulate``, ``rank``, ``world``) where the run is, before its first batch is drawn.

    Lightning creates (and prefetches from) the training iterator before ``on_train_start``, and
    restores ``trainer.global_step`` only after ``on_fit_start``. So the rank layout is set in
    ``setup`` and the resume step is read from the checkpoint itself in ``on_load_checkpoint``,
    both of which run before the iterator exists; ``on_train_start`` checks the result.
    """

    def __init__(self, sampler):
        self.sampler = sampler

    def setup(self, trainer, pl_module, stage):
        if stage == "fit":
            self.sampler.accumulate = trainer.accumulate_grad_batches
            self.sampler.rank = trainer.global_rank
            self.sampler.world = trainer.world_size

    def on_load_checkpoint(self, trainer, pl_module, checkpoint):
        self.sampler.start_step = int(checkpoint["global_step"])

    def on_train_start(self, trainer, pl_module):
        if self.sampler.start_step != trainer.global_step:
            raise RuntimeError(f"data order was set up for step {self.sampler.start_step}, "
                               f"training resumes at {trainer.global_step}")


class LossCurve(Callback):
    """Writes OUT/loss_curve.png from the CSV logs at the end of training (global rank 0)."""

    def __init__(self, out_dir):
        self.out_dir = Path(out_dir)

    def on_train_end(self, trainer, pl_module):
        if trainer.is_global_zero:
            for lg in trainer.loggers:  # make sure the last rows are on disk
                lg.save()
            try:
                plot_loss_curve(self.out_dir / "logs", self.out_dir / "loss_curve.png")
            except Exception as e:  # a plot must never cost a finished run
                log.warning("could not write the loss curve: %s", e)


def read_metrics(log_dir) -> dict:
    """Every numeric column of every ``version_*/metrics.csv`` under ``log_dir``:
    {name: (steps, values)}, sorted by step; a later version overrides the same step of an earlier one."""
    series: dict = {}
    for path in sorted(Path(log_dir).glob("version_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[-1])):
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                step = row.get("step")
                if step in (None, ""):
                    continue
                for name, value in row.items():
                    if name in ("step", "epoch") or value in (None, ""):
                        continue
                    try:
                        series.setdefault(name, {})[int(float(step))] = float(value)
                    except ValueError:
                        pass
    return {name: (sorted(points), [points[s] for s in sorted(points)]) for name, points in series.items()}


def plot_loss_curve(log_dir, png) -> Path | None:
    """Plot the metrics whose name contains 'loss' (log scale) against the optimiser step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = {k: v for k, v in read_metrics(log_dir).items() if "loss" in k and len(v[0])}
    if not metrics:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, (steps, values) in sorted(metrics.items()):
        style = "o-" if len(steps) < 30 else "-"
        ax.plot(steps, values, style, label=name, markersize=3, linewidth=1)
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("loss")
    if all(v > 0 for _, vals in metrics.values() for v in vals):
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(png) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return Path(png)


def _next_log_version(log_dir: Path) -> int:
    versions = [int(p.name.split("_")[-1]) for p in log_dir.glob("version_*") if p.name.split("_")[-1].isdigit()]
    return max(versions, default=-1) + 1


def _tensorboard_without_tensorflow() -> None:
    """Make TensorBoard write event files with its pure-Python stub instead of importing TensorFlow.

    heareval's requirements install tensorflow-cpu; tensorboard imports it when present, which
    costs seconds and a lot of memory for nothing (local event files need no TensorFlow). The
    marker module ``tensorboard.compat.notf`` is tensorboard's own switch for this."""
    import sys
    import types

    if "tensorflow" not in sys.modules:
        sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))


def make_trainer(run: EngineConfig, out_dir, callbacks=(), *, sampler=None, **trainer_kwargs) -> L.Trainer:
    """A Lightning Trainer configured from the engine's options.

    ``sampler``: the training data's resumable step sampler, wired by :class:`StepSamplerCallback`
    (Lightning's distributed sampler is then left out: the step sampler shards by rank itself).
    Extra keyword arguments go to ``L.Trainer``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    devices = _parse_devices(run.devices)
    strategy = run.strategy
    multi = run.num_nodes > 1 or (isinstance(devices, int) and (devices > 1 or devices == -1)) or \
        (isinstance(devices, list) and len(devices) > 1)
    if strategy == "auto" and multi:
        strategy = "ddp"
    _tensorboard_without_tensorflow()
    version = _next_log_version(out_dir / "logs")  # one folder for both loggers, a new one per resume
    loggers = [CSVLogger(out_dir, name="logs", version=version),
               TensorBoardLogger(out_dir, name="logs", version=version, default_hp_metric=False)]
    periodic = PeriodicCheckpoint(out_dir, run.ckpt_every, run.keep_checkpoints)
    cbs = [periodic, SaveOnSigterm(periodic), LossCurve(out_dir), LearningRateMonitor(logging_interval="step")]
    if sampler is not None:
        cbs.append(StepSamplerCallback(sampler))
    if run.progress_bar:
        cbs.append(TQDMProgressBar(refresh_rate=max(1, min(run.log_every, 10))))
    cbs.extend(callbacks)
    kwargs = dict(
        accelerator=run.accelerator,
        devices=devices,
        num_nodes=run.num_nodes,
        strategy=strategy,
        precision=resolve_precision(run),
        max_steps=run.max_steps,
        max_epochs=-1,
        accumulate_grad_batches=run.accumulate_grad_batches,
        gradient_clip_val=run.gradient_clip or None,
        val_check_interval=run.val_every if run.val_every > 0 else None,
        check_val_every_n_epoch=None if run.val_every > 0 else 1,
        limit_val_batches=(run.val_batches if run.val_batches is not None else 1.0) if run.val_every > 0 else 0,
        num_sanity_val_steps=0,
        log_every_n_steps=max(1, run.log_every),
        enable_checkpointing=False,  # PeriodicCheckpoint does it, atomically
        enable_progress_bar=run.progress_bar,
        enable_model_summary=True,
        logger=loggers,
        callbacks=cbs,
        plugins=[AtomicCheckpointIO()],
        default_root_dir=str(out_dir),
        use_distributed_sampler=sampler is None,
    )
    kwargs.update(trainer_kwargs)
    L.seed_everything(run.seed, workers=True, verbose=False)
    return L.Trainer(**kwargs)


def check_resumable(module: L.LightningModule, ckpt: str) -> None:
    """Refuse, with a message rather than Lightning's traceback, a checkpoint that cannot be read or
    whose weights do not fit ``module`` (a run made by other options, targets or code version).
    Entries the module rebuilds from its options (``module.rebuilt(key)``, e.g. frozen targets) are
    its own business."""
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=False, mmap=True)["state_dict"]
    except Exception as e:  # a truncated or foreign file: torch's own errors vary
        raise cli.UserError(f"--resume: cannot read {ckpt} as a training checkpoint ({type(e).__name__}: {e})") from None
    rebuilt = getattr(module, "rebuilt", lambda key: False)
    state = {k: v for k, v in state.items() if not rebuilt(k)}
    own = {k: v for k, v in module.state_dict().items() if not rebuilt(k)}
    problems = [f"{k} is {list(state[k].shape)} there, {list(own[k].shape)} here" for k in sorted(own.keys() & state.keys())
                if tuple(state[k].shape) != tuple(own[k].shape)]
    problems += [f"no {k} there" for k in sorted(own.keys() - state.keys())]
    problems += [f"{k} there, not here" for k in sorted(state.keys() - own.keys())]
    if problems:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise cli.UserError(f"--resume: {ckpt} holds another model than these options make ({shown}). Resume it "
                            "with the options and version of hear_codec that made it, or train into a new --out")


# Variables by which the launchers Lightning supports tell a process its rank: any of them above 0
# marks a process other than the run's first (Lightning's own launcher sets LOCAL_RANK in the
# processes it starts; torchrun RANK; SLURM SLURM_PROCID; MPI its own).
_RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK",
                   "PMI_RANK")
_locks: dict = {}  # real path of an OUT this process holds -> [file descriptor or None, nesting depth]


def is_first_process() -> bool:
    """Whether this process is global rank 0 of its run (or the run's only process), by its
    launcher's environment, which is known before Lightning sets up the process group."""
    for name in _RANK_VARIABLES:
        try:
            if int(os.environ.get(name, "0") or 0) != 0:
                return False
        except ValueError:
            continue
    return True


@contextlib.contextmanager
def run_lock(out_dir):
    """Hold ``OUT/.lock`` for the body: refuse, with a :class:`hear_codec.cli.UserError` naming
    the holder, an OUT that another live run holds.

    ``fcntl.flock`` on the file, exclusive and not waiting; the kernel releases it when the
    holding process ends in any way (SIGKILL included), so only a live run holds it. Only the
    run's first process takes it (:func:`is_first_process`): the other ranks of the same run do
    not. Nested uses in one process share the lock (``training.pretrain`` holds it from its start,
    ``fit`` again around training). On taking it, the temporary checkpoint files that a killed
    run left in OUT and below are removed (:func:`hear_codec.files.stale_temporaries`: only those
    whose writer has ended). On a file system without locks (some network mounts) the run goes on
    with a warning, unguarded and without that clean-up. A run that stops before writing anything
    (options refused) leaves no OUT behind when it made OUT itself."""
    key = os.path.realpath(out_dir)
    if key not in _locks:
        made = not os.path.exists(out_dir)
        _locks[key] = [_take_lock(Path(out_dir)), 0, made]
        if _locks[key][0] is not None:
            _remove_stale_temps(Path(out_dir))
    _locks[key][1] += 1
    try:
        yield
    finally:
        _locks[key][1] -= 1
        if _locks[key][1] == 0:
            fd, _, made = _locks.pop(key)
            if fd is not None:
                if made and os.listdir(out_dir) == [LOCK]:  # nothing but the lock: nothing to keep
                    os.unlink(os.path.join(out_dir, LOCK))
                    os.rmdir(out_dir)
                os.close(fd)  # releases the lock


def _take_lock(out_dir: Path) -> int | None:
    if not is_first_process():
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)  # not inherited by programs this one starts
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = " ".join(os.pread(fd, 1000, 0).decode(errors="replace").split()) or "it has not said which yet"
        os.close(fd)
        raise cli.UserError(f"{out_dir} is in use by another run ({holder}); wait for it to end, stop it, or "
                            "train into another --out") from None
    except OSError as e:
        os.close(fd)
        log.warning("cannot lock %s (%s): a second run into %s will not be refused, and temporary files of "
                    "killed runs stay there", path, e, out_dir)
        return None
    command = " ".join(shlex.join(getattr(sys, "orig_argv", sys.argv)).split())  # one line
    command = command if len(command) <= 300 else command[:297] + "..."
    text = f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}: {command}"
    os.ftruncate(fd, 0)
    os.pwrite(fd, (text + "\n").encode(), 0)
    return fd


def _remove_stale_temps(out_dir: Path) -> None:
    for tmp in stale_temporaries(out_dir):
        tmp.unlink(missing_ok=True)
        log.info("removed %s, left by a writer killed while writing it", tmp)


def fit(trainer: L.Trainer, module: L.LightningModule, run: EngineConfig, out_dir, **fit_kwargs):
    """``trainer.fit`` under :func:`run_lock`, with ``--resume`` resolved and checked; returns the
    checkpoint path it resumed from (or None). Raises :class:`Preempted` when SIGTERM stopped it."""
    with run_lock(out_dir):
        ckpt = resume_path(run, out_dir)
        if ckpt:
            check_resumable(module, ckpt)
        if ckpt and trainer.is_global_zero:
            log.info("resuming from %s", ckpt)
        try:
            trainer.fit(module, ckpt_path=ckpt, **fit_kwargs)
        except SIGTERMException:
            # Lightning's own handler took a SIGTERM that came before the training loop began
            # (SaveOnSigterm replaces it from there): no step was trained since the start
            log.warning("SIGTERM before the first step: nothing to save; exit status %d", PREEMPTED_STATUS)
            raise Preempted(trainer.global_step) from None
    return ckpt


__all__ = ["EngineConfig", "add_engine_args", "make_trainer", "fit", "resume_path", "check_resumable", "resolve_precision", "on_gpu",
           "lr_factor", "schedule_problem", "with_lr_schedule",
           "world_size", "run_lock", "is_first_process",
           "AtomicCheckpointIO", "PeriodicCheckpoint", "SaveOnSigterm", "Preempted", "StepSamplerCallback", "LossCurve",
           "read_metrics", "plot_loss_curve", "LAST", "EXPORT", "LOCK", "PREEMPTED_STATUS"]
