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
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from hear_codec import cli
from hear_codec.audio import read_audio
from hear_codec.codec import SAMPLE_RATE
from training.data.manifest import (MAX_FILE_SECONDS, AudioEntry, draws_per_epoch, drop_long_files, list_sources,
                                    probe_files, split_train_val, write_report)
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


def read_segment(entry: AudioEntry, start_seconds: float, seconds: float) -> np.ndarray:
    """Mono float32 at 24 kHz of [start, start + seconds) (shorter at the end of the file)."""
    return read_audio(entry.path, SAMPLE_RATE, start=start_seconds, duration=seconds)[0].numpy()


class AudioCrops(Dataset):
    """Crops of ``crop_seconds`` from audio files.

    Indexed by ``(file_index, crop_seed)`` pairs (what :class:`StepSampler` yields) for random
    crops, or by a plain int for the fixed validation crop of that file (its middle).
    ``draws_per_epoch[i]``: how often an epoch draws file i (:func:`draws_per_epoch`).
    """

    def __init__(self, entries, crop_seconds: float, max_file_seconds: float = MAX_FILE_SECONDS):
        if not entries:
            raise ValueError("no readable audio files")
        self.entries = list(entries)
        self.crop_seconds = float(crop_seconds)
        self.crop_samples = int(round(self.crop_seconds * SAMPLE_RATE))
        self.draws_per_epoch = [draws_per_epoch(e.seconds, self.crop_seconds, max_file_seconds) for e in self.entries]

    def __len__(self):
        return len(self.entries)

    def __getitem__(self, key):
        if isinstance(key, (tuple, list)):
            index, seed = int(key[0]), int(key[1])
        else:
            index, seed = int(key), None
        for attempt in range(len(self.entries)):
            entry = self.entries[(index + attempt) % len(self.entries)]
            try:
                wav = self._crop(entry, seed)
                return self._item(wav, ok=attempt == 0)
            except Exception as e:  # decode error hours in: report, use the next file
                log.warning("skipping unreadable audio %s (%s: %s)", entry.path, type(e).__name__, e)
        raise RuntimeError("none of the audio files could be read")

    def _crop(self, entry: AudioEntry, seed):
        room = max(0.0, entry.seconds - self.crop_seconds)
        if seed is None:
            start = room / 2
        else:
            start = np.random.default_rng(seed).uniform(0.0, room) if room > 0 else 0.0
        return read_segment(entry, start, self.crop_seconds)

    def _item(self, wav: np.ndarray, ok: bool) -> dict:
        length = min(len(wav), self.crop_samples)
        out = np.zeros(self.crop_samples, dtype=np.float32)
        out[:length] = wav[:length]
        return {"wav": torch.from_numpy(out), "length": length, "ok": ok}


def file_datasets(cfg: DataConfig, out_dir: Path) -> tuple:
    """(train_set, val_set or None, data metadata) from ``cfg.sources``: probed, unreadable files
    skipped and reported in ``OUT/skipped_files.tsv``, the rest in ``OUT/data_index.tsv`` with
    their draws per epoch."""
    out_dir = Path(out_dir)
    rows = list_sources(cfg.sources)
    entries, skipped = probe_files(rows, cfg.probe_workers)
    if cfg.long_files == "drop":
        entries, too_long = drop_long_files(entries, cfg.max_file_seconds)
        skipped += too_long
    if skipped:
        log.warning("skipped %d of %d audio files (unreadable, empty or too long); see %s", len(skipped),
                    len(rows), out_dir / "skipped_files.tsv")
    train_entries, val_entries = split_train_val(entries, cfg.val_fraction, cfg.val_max_files)
    if not train_entries:
        write_report(out_dir, entries, skipped)
        raise SystemExit(f"--data: no readable audio among {len(rows)} files (see {out_dir / 'skipped_files.tsv'})")
    cap = cfg.max_file_seconds if cfg.long_files == "crop" else 0.0
    train_set = AudioCrops(train_entries, cfg.crop_seconds, cap)
    val_set = AudioCrops(val_entries, cfg.crop_seconds) if val_entries else None
    draws = dict(zip((id(e) for e in train_entries), train_set.draws_per_epoch))
    write_report(out_dir, entries, skipped, [draws.get(id(e), 0) for e in entries])
    epoch = sum(train_set.draws_per_epoch)
    log.info("one epoch: %d draws of %g s from %d training files (%.1f h); draws per file in %s", epoch,
             cfg.crop_seconds, len(train_entries), sum(e.seconds for e in train_entries) / 3600,
             out_dir / "data_index.tsv")
    meta = dict(data=[str(x) for x in cfg.sources], files=len(rows), skipped=len(skipped),
                train_files=len(train_entries), val_files=len(val_entries), draws_per_epoch=epoch)
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
                       help="audio folders and/or manifests (one path per line, optional tab + seconds); any rate "
                            "and channel count")
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
