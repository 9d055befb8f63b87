"""Random crops at 24 kHz from audio files, and the data loaders of a pretraining run.

Items
-----
Each item is a dict ``{"wav": [crop_samples] float32 at 24 kHz, mono (channels averaged),
"length": valid samples (the rest is zero padding), "ok": False if the item replaced an
unreadable file}``. Clips shorter than the crop are zero-padded and ``length`` says where the
padding starts; the training module turns it into a frame padding mask so the padding never
counts in the loss. A file that passes the start-up probe (``training/data/manifest.py``) but
fails to decode later is replaced by the next readable file in that batch and counted in the
``data/unreadable`` metric: a bad file never stops a run.

The training stream is drawn in :class:`training.data.sampler.StepSampler` order, validation in
file order (each validation file's middle crop).

A crop starts at ``uniform(0, seconds - crop_seconds)`` seconds, drawn from the item's crop seed.
A file is decoded from there (mixed down and resampled); an item of a prepared corpus starts at
sample ``round(start * 24000)`` and is read from its 24 kHz segment files, two of them if the crop
spans their boundary (``training/data/prepared.py``).
"""
from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from hear_codec import cli
from hear_codec.audio import read_audio
from hear_codec.codec import SAMPLE_RATE
from hear_codec.errors import AudioReadError
from training.data.index import AudioIndex
from training.data.manifest import (MAX_FILE_SECONDS, draws_of, drop_long_files, index_sources, split_train_val,
                                    write_report)
from training.data.prepared import not_regular_reason, read_item
from training.data.sampler import StepSampler

log = logging.getLogger(__name__)


@dataclass
class DataConfig:
    """The audio a pretraining run reads and how it is batched (the options of :func:`add_data_args`).

    ``sources``: folders / manifests / audio files (None: a recipe supplies its own datasets, e.g.
    the built-in corpus). ``seed`` seeds the data order and the crops."""

    sources: list | None
    crop_seconds: float
    batch_size: int  # clips per micro-batch per device
    num_workers: int
    seed: int = 0
    val_fraction: float = 0.02
    val_max_files: int = 200
    probe_workers: int = 16
    max_file_seconds: float = MAX_FILE_SECONDS
    long_files: str = "crop"  # or "drop"

    @classmethod
    def from_args(cls, args) -> "DataConfig":
        """From the options of :func:`add_data_args` (``--num-workers`` None: min(8, CPUs - 1))."""
        names = {f.name for f in fields(cls)} - {"sources", "num_workers"}
        workers = args.num_workers if args.num_workers is not None else max(0, min(8, (os.cpu_count() or 1) - 1))
        return cls(sources=args.data, num_workers=workers, **{k: getattr(args, k) for k in names})


def read_segment(path: str, start_seconds: float, seconds: float) -> np.ndarray:
    """Mono float32 at 24 kHz of [start, start + seconds) of an audio file (shorter at its end).
    A path that is no regular file is refused before it is opened (a pipe would block the worker)."""
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        raise AudioReadError(f"{path}: {not_regular_reason(mode)}")
    return read_audio(path, SAMPLE_RATE, start=start_seconds, duration=seconds)[0].numpy()


class AudioCrops(Dataset):
    """Crops of ``crop_seconds`` from the files ``items`` (indices into ``index``; None: all).

    Indexed by ``(i, crop_seed)`` pairs (what :class:`StepSampler` yields) for random crops of file
    ``items[i]``, or by a plain int for the fixed validation crop of that file (its middle).
    ``draws_per_epoch``: [len(items)] int64, how often an epoch draws each file
    (:func:`~training.data.manifest.draws_per_epoch`). Holds numpy arrays only, shared by the
    DataLoader workers (``training/data/index.py``).
    """

    def __init__(self, index: AudioIndex, crop_seconds: float, max_file_seconds: float = MAX_FILE_SECONDS,
                 items=None):
        self.index = index
        self.items = np.arange(len(index), dtype=np.int64) if items is None else np.asarray(items, dtype=np.int64)
        if len(self.items) == 0:
            raise ValueError("no readable audio files")
        self.crop_seconds = float(crop_seconds)
        self.crop_samples = int(round(self.crop_seconds * SAMPLE_RATE))
        self.draws_per_epoch = draws_of(index.seconds[self.items], self.crop_seconds, max_file_seconds)

    def __len__(self):
        return len(self.items)

    def path(self, i: int) -> str:
        """The path of file i (of a prepared corpus: the source file's)."""
        return self.index.paths[self.items[i]]

    def seconds(self, i: int) -> float:
        return float(self.index.seconds[self.items[i]])

    def __getitem__(self, key):
        if isinstance(key, (tuple, list)):
            i, seed = int(key[0]), int(key[1])
        else:
            i, seed = int(key), None
        for attempt in range(len(self.items)):
            item = int(self.items[(i + attempt) % len(self.items)])
            try:
                wav = self._crop(item, seed)
                return self._item(wav, ok=attempt == 0)
            except Exception as e:  # decode error hours in: report, use the next file
                log.warning("skipping unreadable audio %s (%s: %s)", self.index.paths[item], type(e).__name__, e)
        raise RuntimeError("none of the audio files could be read")

    def _crop(self, item: int, seed) -> np.ndarray:
        seconds = float(self.index.seconds[item])
        room = max(0.0, seconds - self.crop_seconds)
        if seed is None:
            start = room / 2
        else:
            start = np.random.default_rng(seed).uniform(0.0, room) if room > 0 else 0.0
        frames = int(self.index.frames[item])
        if frames < 0:  # a file, decoded and resampled from its start
            return read_segment(self.index.paths[item], start, self.crop_seconds)
        first = min(int(round(start * SAMPLE_RATE)), frames)
        return read_item(self.index, item, first, min(self.crop_samples, frames - first))

    def _item(self, wav: np.ndarray, ok: bool) -> dict:
        length = min(len(wav), self.crop_samples)
        out = np.zeros(self.crop_samples, dtype=np.float32)
        out[:length] = wav[:length]
        return {"wav": torch.from_numpy(out), "length": length, "ok": ok}


def file_datasets(cfg: DataConfig, out_dir: Path) -> tuple:
    """(train_set, val_set or None, data metadata) from ``cfg.sources``: probed (prepared corpora
    are not), unreadable files skipped and reported in ``OUT/skipped_files.tsv``, the rest in
    ``OUT/data_index.tsv`` with their draws per epoch."""
    out_dir = Path(out_dir)
    index, skipped, listed = index_sources(cfg.sources, cfg.probe_workers)
    kept = np.arange(len(index), dtype=np.int64)
    if cfg.long_files == "drop":
        kept, too_long = drop_long_files(index, kept, cfg.max_file_seconds)
        skipped += too_long
    if skipped:
        log.warning("skipped %d of %d audio files (unreadable, empty or too long); see %s", len(skipped),
                    listed, out_dir / "skipped_files.tsv")
    train, val = split_train_val(index.paths if len(kept) == len(index) else [index.paths[i] for i in kept],
                                 cfg.val_fraction, cfg.val_max_files)
    train, val = kept[train], kept[val]
    draws = np.zeros(len(index), dtype=np.int64)
    if not len(train):
        write_report(out_dir, index, skipped, draws)
        raise SystemExit(f"--data: no readable audio among {listed} files (see {out_dir / 'skipped_files.tsv'})")
    cap = cfg.max_file_seconds if cfg.long_files == "crop" else 0.0
    train_set = AudioCrops(index, cfg.crop_seconds, cap, items=train)
    val_set = AudioCrops(index, cfg.crop_seconds, items=val) if len(val) else None
    draws[train] = train_set.draws_per_epoch
    if len(kept) == len(index):
        write_report(out_dir, index, skipped, draws)
    else:  # --long-files drop: the index lists the files kept
        write_report(out_dir, AudioIndex.of_files([index.paths[i] for i in kept], index.seconds[kept]), skipped,
                     draws[kept])
    epoch = int(train_set.draws_per_epoch.sum())
    log.info("one epoch: %d draws of %g s from %d training files (%.1f h); draws per file in %s", epoch,
             cfg.crop_seconds, len(train), float(index.seconds[train].sum()) / 3600, out_dir / "data_index.tsv")
    meta = dict(data=[str(x) for x in cfg.sources], files=listed, skipped=len(skipped),
                train_files=len(train), val_files=len(val), draws_per_epoch=epoch)
    return train_set, val_set, meta


def make_loaders(train_set, val_set, collate, cfg: DataConfig) -> tuple:
    """(train_loader, val_loader or None, sampler): the training stream in :class:`StepSampler`
    order (``train_set.draws_per_epoch`` draws per item and epoch), validation in file order."""
    sampler = StepSampler(train_set.draws_per_epoch, cfg.batch_size, seed=cfg.seed)
    common = dict(collate_fn=collate, num_workers=cfg.num_workers, pin_memory=torch.cuda.is_available(),
                  persistent_workers=cfg.num_workers > 0)
    train_loader = torch.utils.data.DataLoader(train_set, batch_size=cfg.batch_size, sampler=sampler,
                                               prefetch_factor=4 if cfg.num_workers else None, **common)
    val_loader = None
    if val_set is not None and len(val_set):
        val_loader = torch.utils.data.DataLoader(val_set, batch_size=min(cfg.batch_size, 32), shuffle=False, **common)
    return train_loader, val_loader, sampler


def add_data_args(group, *, crop_seconds: float | None, batch_size: int, crop_note: str = "%(default)s") -> None:
    """The data options every pretraining family shares, with the family's paper defaults of
    ``--crop-seconds`` (None: the caller fills it in, and ``crop_note`` says how) and ``--batch-size``."""
    d = {f.name: f.default for f in fields(DataConfig)}
    group.add_argument("--data", nargs="+", default=None, metavar="DIR_OR_MANIFEST",
                       help="audio folders and/or manifests (one path per line, optional tab + seconds), any rate "
                            "and channel count; or prepared corpora (python -m training.prepare: the folder or its "
                            "manifest.tsv), read from their 24 kHz segments without probing")
    group.add_argument("--crop-seconds", type=cli.positive_float, default=crop_seconds,
                       help="training crop length, also the model's chunk length for HEAR embeddings; shorter clips "
                            f"are zero-padded and the padding is excluded from the loss (default: {crop_note})")
    group.add_argument("--batch-size", type=cli.positive_int, default=batch_size,
                       help="clips per micro-batch per device (default: %(default)s)")
    group.add_argument("--num-workers", type=cli.non_negative_int, default=None,
                       help="data loader processes per device (default: min(8, CPUs - 1))")
    group.add_argument("--val-fraction", type=cli.fraction, default=d["val_fraction"],
                       help="fraction of files held out for validation, chosen by a hash of the path "
                            "(default: %(default)s)")
    group.add_argument("--val-max-files", type=cli.non_negative_int, default=d["val_max_files"],
                       help="at most this many validation files (official EnCodecMAE: 200) (default: %(default)s)")
    group.add_argument("--probe-workers", type=cli.positive_int, default=d["probe_workers"],
                       help="threads probing audio headers at start-up (default: %(default)s)")
    group.add_argument("--max-file-seconds", type=cli.non_negative_float, default=d["max_file_seconds"],
                       help="files at least this long: their draws per epoch are capped as if they were this long "
                            "(--long-files crop) or they are skipped as in the official code (--long-files drop); "
                            "0 = no cap (default: %(default)g, the official limit)")
    group.add_argument("--long-files", default=d["long_files"], choices=["crop", "drop"],
                       help="what to do with files longer than --max-file-seconds: keep them with capped draws and "
                            "random crops, or drop them (official) (default: %(default)s)")
