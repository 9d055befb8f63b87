"""Running EnCodecMAE training: data loaders, the module, the engine. Shared by pretraining
(``training/encodecmae/pretrain.py``) and self-training (``training/encodecmae/self_train.py``),
which differ only in the model config, the targets and the initial weights.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from hear_codec import cli
from hear_codec import encodecmae as emae
from hear_codec.codec import SAMPLE_RATE
from training import engine
from training.data.crops import DataConfig, make_loaders
from training.encodecmae.masking import MaskingCollate, Seeded
from training.encodecmae.module import EncodecMAEModule

log = logging.getLogger(__name__)


@dataclass
class OptimizerConfig:
    """AdamW with the paper's betas and weight decay at a constant learning rate (the paper's),
    or with a linear warm-up over ``warmup_steps`` and, with ``schedule="cosine"``, a cosine
    decay to zero at the run's last step, over the whole run after the warm-up or over its last
    ``decay_steps`` (:func:`training.engine.lr_factor`)."""

    lr: float = 1e-4
    betas: tuple = (0.9, 0.95)
    weight_decay: float = 0.05
    warmup_steps: int = 0
    schedule: str = "constant"
    decay_steps: int | None = None

    @classmethod
    def from_args(cls, args) -> "OptimizerConfig":
        return cls(lr=args.lr, betas=tuple(args.betas), weight_decay=args.weight_decay,
                   warmup_steps=args.warmup_steps, schedule=args.schedule, decay_steps=args.decay_steps)

    def check(self, max_steps) -> None:
        """Refuse a schedule that cannot run (:func:`training.engine.schedule_problem`), with a
        message, before any work rather than at the first step."""
        problem = engine.schedule_problem(self.warmup_steps, self.schedule, max_steps, self.decay_steps)
        if problem:
            raise SystemExit(problem)


def add_optimizer_args(group) -> None:
    """The options of :class:`OptimizerConfig`, with its defaults (the paper's)."""
    d = OptimizerConfig()
    group.add_argument("--lr", type=cli.positive_float, default=d.lr,
                       help="AdamW peak learning rate (default: %(default)s)")
    group.add_argument("--warmup-steps", type=int, default=d.warmup_steps,
                       help="linear learning-rate warm-up from 0 to --lr (default: %(default)s)")
    group.add_argument("--schedule", default=d.schedule, choices=list(engine.LR_SCHEDULES),
                       help="learning rate after the warm-up: constant (the paper's) or cosine (decays to 0 at "
                            "--max-steps) (default: %(default)s)")
    group.add_argument("--decay-steps", type=int, default=None,
                       help="with --schedule cosine: decay over the last N steps only, at the peak rate until then "
                            "(warm-up, stable, decay); with --resume this puts a decay tail on a constant run "
                            "(default: the whole run after the warm-up)")
    group.add_argument("--betas", type=cli.fraction, nargs=2, default=d.betas,
                       help=f"AdamW betas (default: {d.betas[0]} {d.betas[1]})")
    group.add_argument("--weight-decay", type=cli.non_negative_float, default=d.weight_decay,
                       help="AdamW weight decay (default: %(default)s)")


def build_loaders(train_set, val_set, data: DataConfig, config: emae.EncodecMAEConfig, augment=None) -> tuple:
    """(train_loader, val_loader or None, sampler); the collate draws the masks and the input
    augmentation's parameters, if the run has one."""
    collate = MaskingCollate(config.front_end, round(data.crop_seconds * SAMPLE_RATE), config.mask_prop,
                             config.mask_gap, augment=augment)
    return make_loaders(Seeded(train_set), val_set and Seeded(val_set), collate, data)


def train(config: emae.EncodecMAEConfig, optim: OptimizerConfig, data: DataConfig, datasets: tuple,
          run: engine.EngineConfig, out_dir, *, targets: nn.Module, codec_encoder: nn.Module | None = None,
          augment=None, init_state: dict | None = None, metadata: dict | None = None) -> Path:
    """Train an EncodecMAE of ``config`` and return its exported hear_codec checkpoint (OUT/last.ckpt.hearcodec).

    datasets: (train_set, val_set or None, data metadata), e.g. ``training.data.crops.file_datasets``;
    ``data`` says how they are batched. targets: what the model predicts (a target source,
    training/encodecmae/targets.py). codec_encoder: the frozen EnCodec encoder of the ec front
    end. augment: an input augmentation (None: the paper's, none). ``init_state`` initialises the
    model (tensors of another shape, e.g. a new head, stay fresh); ``metadata`` goes into the
    exported checkpoint with the data's."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train_set, val_set, data_meta = datasets
    train_loader, val_loader, sampler = build_loaders(train_set, val_set, data, config, augment)
    torch.manual_seed(run.seed)  # model init does not depend on how much data set-up drew
    meta = dict(front_end=config.front_end, targets=targets.name, seed=run.seed, trained_by="training.pretrain",
                augment=augment.describe() if augment is not None else None, **data_meta)
    meta.update(metadata or {})
    module = EncodecMAEModule(config, targets, codec_encoder=codec_encoder, lr=optim.lr, betas=optim.betas,
                              weight_decay=optim.weight_decay, warmup_steps=optim.warmup_steps,
                              schedule=optim.schedule, decay_steps=optim.decay_steps, augment=augment, metadata=meta)
    if init_state is not None:
        own = module.model.state_dict()
        usable = {k: v for k, v in init_state.items() if k in own and own[k].shape == v.shape}
        module.model.load_state_dict(usable, strict=False)
        fresh = sorted(set(own) - set(usable))
        log.info("initialised %d tensors from a checkpoint; fresh: %s", len(usable), fresh)
    # The frozen targets (a codec, a teacher) stay in eval mode on purpose (see hear_codec/codec.py).
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
    trainer = engine.make_trainer(run, out_dir, sampler=sampler)
    engine.fit(trainer, module, run, out_dir, train_dataloaders=train_loader, val_dataloaders=val_loader)
    return out_dir / engine.EXPORT
