"""Running AudioFormer MLM pretraining: data loaders, the module, the engine."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from hear_codec import audioformer as af
from hear_codec import cli
from hear_codec import codec as codec_lib
from training import data as D
from training import engine
from training.audioformer.module import AudioFormerMLM

# Options whose default depends on --data: the tiny built-in run (minutes on a CPU) or the paper's setting.
DEFAULTS = D.DataDependentDefaults(
    builtin=dict(max_steps=300, val_every=100, ckpt_every=100, batch_size=16, crop_seconds=2.0, codec="offline",
                 lr=1e-3, warmup_steps=30),
    paper=dict(max_steps=400_000, val_every=10_000, ckpt_every=10_000, batch_size=64, crop_seconds=10.0,
               codec="pretrained", lr=1e-4, warmup_steps=10_000),
)


@dataclass
class TrainConfig:
    """The optimiser: AdamW with a linear warm-up to ``lr``, then constant; no decay on vectors."""

    lr: float = 1e-4
    warmup_steps: int = 10_000
    betas: tuple = (0.9, 0.98)
    weight_decay: float = 0.01

    @classmethod
    def from_args(cls, args) -> "TrainConfig":
        return cls(lr=args.lr, warmup_steps=args.warmup_steps, betas=tuple(args.betas), weight_decay=args.weight_decay)

    def check(self, max_steps) -> None:
        """Refuse a warm-up that cannot run (:func:`training.engine.schedule_problem`) before any work."""
        problem = engine.schedule_problem(self.warmup_steps, "constant", max_steps)
        if problem:
            raise SystemExit(problem)


def add_train_args(group) -> None:
    """The options of :class:`TrainConfig`."""
    group.add_argument("--lr", type=cli.positive_float, default=None,
                       help="AdamW peak learning rate after linear warm-up, then constant "
                            f"(default: {DEFAULTS.note('lr')}; the paper's with --data)")
    group.add_argument("--warmup-steps", type=int, default=None,
                       help=f"linear learning-rate warm-up (default: {DEFAULTS.note('warmup_steps')})")
    d = TrainConfig()
    group.add_argument("--betas", type=cli.fraction, nargs=2, default=d.betas,
                       help=f"AdamW betas (default: {d.betas[0]} {d.betas[1]})")
    group.add_argument("--weight-decay", type=cli.non_negative_float, default=d.weight_decay,
                       help="AdamW weight decay on matrices (default: %(default)s)")


class Collate:
    """Stacks items: ``wav`` [B, S], ``frame_lengths`` [B] (valid codec frames), ``ok`` [B] and,
    when the dataset precomputed them, ``codes`` [B, Q, T]."""

    def __init__(self, crop_samples: int):
        self.frames = codec_lib.num_frames(int(crop_samples))

    def __call__(self, items: list) -> dict:
        lengths = torch.tensor([codec_lib.num_frames(int(it["length"])) for it in items]).clamp(max=self.frames)
        batch = {"wav": torch.stack([it["wav"] for it in items]), "frame_lengths": lengths,
                 "ok": torch.tensor([bool(it["ok"]) for it in items])}
        if "codes" in items[0]:
            batch["codes"] = torch.stack([it["codes"] for it in items]).long()[..., : self.frames]
        return batch


def build_loaders(data: D.DataConfig, out_dir: Path, config: af.AudioFormerConfig, codec) -> tuple:
    """(train_loader, val_loader or None, sampler, data metadata); the masks are drawn in the step."""
    train_set, val_set, meta = D.build_datasets(data, out_dir, codec, config.num_codebooks)
    train_loader, val_loader, sampler = D.make_loaders(
        train_set, val_set, Collate(round(data.crop_seconds * D.SAMPLE_RATE)), data)
    return train_loader, val_loader, sampler, meta


def train(config: af.AudioFormerConfig, optim: TrainConfig, data: D.DataConfig, run: engine.EngineConfig,
          out_dir, *, metadata: dict | None = None) -> Path:
    """MLM-pretrain an AudioFormer of ``config``; returns its exported hear_codec checkpoint."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    codec = D.frozen_codec(data)
    train_loader, val_loader, sampler, data_meta = build_loaders(data, out_dir, config, codec)
    model = af.new_model(config, codec, seed=run.seed)  # init does not depend on how much data set-up drew
    meta = dict(codec=data.codec, trained_by="training.pretrain --model audioformer", **data_meta)
    meta.update(metadata or {})
    module = AudioFormerMLM(model, lr=optim.lr, weight_decay=optim.weight_decay, betas=optim.betas,
                            warmup_steps=optim.warmup_steps, seed=run.seed, metadata=meta)
    trainer = engine.make_trainer(run, out_dir, sampler=sampler)
    engine.fit(trainer, module, run, out_dir, train_dataloaders=train_loader, val_dataloaders=val_loader)
    return out_dir / engine.EXPORT
