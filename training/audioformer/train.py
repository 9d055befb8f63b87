"""Running AudioFormer MLM pretraining: data loaders, the module, the engine."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from hear_codec import audioformer as af
from hear_codec import cli
from hear_codec import codec as codec_lib
from hear_codec.codec import Codec
from training import engine
from training.audioformer.module import AudioFormerMLM
from training.data.crops import DataConfig, make_loaders


@dataclass
class OptimizerConfig:
    """AdamW with a linear warm-up to ``lr``, then constant; no decay on vectors."""

    lr: float = 1e-4
    warmup_steps: int = 10_000
    betas: tuple = (0.9, 0.98)
    weight_decay: float = 0.01

    @classmethod
    def from_args(cls, args) -> "OptimizerConfig":
        return cls(lr=args.lr, warmup_steps=args.warmup_steps, betas=tuple(args.betas), weight_decay=args.weight_decay)

    def check(self, max_steps) -> None:
        """Refuse a warm-up that cannot run (:func:`training.engine.schedule_problem`) before any work."""
        problem = engine.schedule_problem(self.warmup_steps, "constant", max_steps)
        if problem:
            raise SystemExit(problem)


def add_optimizer_args(group) -> None:
    """The options of :class:`OptimizerConfig`, with its defaults (the paper's)."""
    d = OptimizerConfig()
    group.add_argument("--lr", type=cli.positive_float, default=d.lr,
                       help="AdamW peak learning rate after linear warm-up, then constant (default: %(default)s)")
    group.add_argument("--warmup-steps", type=int, default=d.warmup_steps,
                       help="linear learning-rate warm-up (default: %(default)s)")
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


def build_loaders(train_set, val_set, data: DataConfig) -> tuple:
    """(train_loader, val_loader or None, sampler); the masks are drawn in the step."""
    return make_loaders(train_set, val_set, Collate(round(data.crop_seconds * codec_lib.SAMPLE_RATE)), data)


def train(config: af.AudioFormerConfig, optim: OptimizerConfig, data: DataConfig, datasets: tuple,
          run: engine.EngineConfig, out_dir, *, codec: Codec, metadata: dict | None = None) -> Path:
    """MLM-pretrain an AudioFormer of ``config`` over the frozen ``codec``'s codes of ``datasets``
    (train_set, val_set or None, data metadata; ``data`` says how they are batched); returns its
    exported hear_codec checkpoint."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train_set, val_set, data_meta = datasets
    train_loader, val_loader, sampler = build_loaders(train_set, val_set, data)
    model = af.new_model(config, codec, seed=run.seed)  # init does not depend on how much data set-up drew
    meta = dict(codec=codec.weights, trained_by="training.pretrain --model audioformer", **data_meta)
    meta.update(metadata or {})
    module = AudioFormerMLM(model, lr=optim.lr, weight_decay=optim.weight_decay, betas=optim.betas,
                            warmup_steps=optim.warmup_steps, seed=run.seed, metadata=meta)
    trainer = engine.make_trainer(run, out_dir, sampler=sampler)
    engine.fit(trainer, module, run, out_dir, train_dataloaders=train_loader, val_dataloaders=val_loader)
    return out_dir / engine.EXPORT
