"""Running EnCodecMAE training: data loaders, the module, the engine. Shared by pretraining
(``training/encodecmae/pretrain.py``) and self-training (``training/encodecmae/self_train.py``),
which differ only in the model config, the targets (teacher + centroids) and the initial weights.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from hear_codec import cli
from hear_codec import encodecmae as emae
from training import data as D
from training import engine
from training.encodecmae.masking import MaskingCollate, Seeded
from training.encodecmae.module import EncodecMAEModule

log = logging.getLogger(__name__)

# Options whose default depends on --data: the tiny built-in run (minutes on a CPU) or the paper's setting.
DEFAULTS = D.DataDependentDefaults(
    # The built-in run's targets: the log-mel k-means stand-in (training/spectral_targets.py), not EnCodec;
    # the offline (random-weight) EnCodec's codes follow waveform phase and do not transfer (docs/pretraining.md).
    # It masks 70 % of each clip's frames, not the paper's half: its representations transfer better to the
    # held-out sound families, and its step is cheaper (docs/pretraining.md, "An eighth pass"). It colours its
    # inputs at random for the first three quarters of its steps (training/encodecmae/colouring.py; the paper
    # has no augmentation): "A twelfth pass" and "A thirteenth pass".
    builtin=dict(preset="mini", max_steps=2400, val_every=400, ckpt_every=400, batch_size=16, crop_seconds=2.0,
                 codec="mel-kmeans", lr=1e-3, warmup_steps=0, schedule="constant", mask_prop=0.7, colour_db=6.0,
                 colour_until=0.75),
    paper=dict(preset="tiny", max_steps=500_000, val_every=10_000, ckpt_every=10_000, batch_size=128, crop_seconds=4.0,
               codec="pretrained", lr=1e-4, warmup_steps=0, schedule="constant", mask_prop=0.5, colour_db=0.0,
               colour_until=1.0),
)


@dataclass
class TrainConfig:
    """The optimiser: AdamW (the paper's betas and weight decay) at a constant learning rate (the
    paper's), or with a linear warm-up over ``warmup_steps`` and, with ``schedule="cosine"``, a
    cosine decay to zero at the run's last step, over the whole run after the warm-up or over its
    last ``decay_steps`` (:func:`training.engine.lr_factor`)."""

    lr: float = 1e-4
    betas: tuple = (0.9, 0.95)
    weight_decay: float = 0.05
    warmup_steps: int = 0
    schedule: str = "constant"
    decay_steps: int | None = None

    @classmethod
    def from_args(cls, args) -> "TrainConfig":
        return cls(lr=args.lr, betas=tuple(args.betas), weight_decay=args.weight_decay,
                   warmup_steps=args.warmup_steps, schedule=args.schedule, decay_steps=args.decay_steps)

    def check(self, max_steps) -> None:
        """Refuse a schedule that cannot run (:func:`training.engine.schedule_problem`), with a
        message, before any work rather than at the first step."""
        problem = engine.schedule_problem(self.warmup_steps, self.schedule, max_steps, self.decay_steps)
        if problem:
            raise SystemExit(problem)


def add_train_args(group, *, lr_note: str) -> None:
    """The options of :class:`TrainConfig`; ``lr_note`` says what --lr defaults to."""
    d = TrainConfig()
    group.add_argument("--lr", type=cli.positive_float, default=None,
                       help=f"AdamW peak learning rate (default: {lr_note})")
    group.add_argument("--warmup-steps", type=int, default=None,
                       help=f"linear learning-rate warm-up from 0 to --lr (default: {DEFAULTS.note('warmup_steps')})")
    group.add_argument("--schedule", default=None, choices=list(engine.LR_SCHEDULES),
                       help="learning rate after the warm-up: constant (the paper's) or cosine (decays to 0 at "
                            f"--max-steps) (default: {DEFAULTS.note('schedule')})")
    group.add_argument("--decay-steps", type=int, default=None,
                       help="with --schedule cosine: decay over the last N steps only, at the peak rate until then "
                            "(warm-up, stable, decay); with --resume this puts a decay tail on a constant run "
                            "(default: the whole run after the warm-up)")
    group.add_argument("--betas", type=cli.fraction, nargs=2, default=d.betas,
                       help=f"AdamW betas (default: {d.betas[0]} {d.betas[1]})")
    group.add_argument("--weight-decay", type=cli.non_negative_float, default=d.weight_decay,
                       help="AdamW weight decay (default: %(default)s)")


def build_loaders(data: D.DataConfig, out_dir: Path, config: emae.EncodecMAEConfig, codec,
                  colour_db: float = 0.0) -> tuple:
    """(train_loader, val_loader or None, sampler, data metadata); the collate draws the masks and,
    with ``colour_db`` > 0, the input colouring (training/encodecmae/colouring.py)."""
    train_set, val_set, meta = D.build_datasets(data, out_dir, codec, config.num_codec_streams)
    collate = MaskingCollate(config.front_end, round(data.crop_seconds * D.SAMPLE_RATE), config.mask_prop,
                             config.mask_gap, colour_db=colour_db)
    train_loader, val_loader, sampler = D.make_loaders(Seeded(train_set), val_set and Seeded(val_set), collate, data)
    return train_loader, val_loader, sampler, meta


def train(config: emae.EncodecMAEConfig, optim: TrainConfig, data: D.DataConfig, run: engine.EngineConfig,
          out_dir, *, teacher: emae.EncodecMAE | None = None, centroids: torch.Tensor | None = None,
          init_state: dict | None = None, metadata: dict | None = None, colour_db: float = 0.0,
          colour_until: float = 1.0) -> Path:
    """Train an EncodecMAE of ``config`` and return its exported hear_codec checkpoint (OUT/last.ckpt.hearcodec).

    teacher + centroids: the k-means stream's targets (self-training); ``init_state`` initialises
    the model (tensors of another shape, e.g. a new head, stay fresh); ``metadata`` goes into the
    exported checkpoint with the data's; ``colour_db``: the input colouring's depth (0 = none, the
    paper's; training/encodecmae/colouring.py), applied in the first ``colour_until`` share of the steps."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(run.seed)
    codec = D.frozen_codec(data) if (config.num_codec_streams or config.front_end == "ec") else None
    train_loader, val_loader, sampler, data_meta = build_loaders(data, out_dir, config, codec, colour_db)
    torch.manual_seed(run.seed)  # model init does not depend on how much data set-up drew
    meta = dict(front_end=config.front_end, codec=data.codec, seed=run.seed, trained_by="training.pretrain",
                colour_db=colour_db, colour_until=colour_until, **data_meta)
    if codec is not None:
        meta["targets"] = codec.weights  # what cached targets are keyed on (the stand-in's centroid hash)
    meta.update(metadata or {})
    module = EncodecMAEModule(config, codec, lr=optim.lr, betas=optim.betas, weight_decay=optim.weight_decay,
                              warmup_steps=optim.warmup_steps, schedule=optim.schedule, decay_steps=optim.decay_steps,
                              colour_until=colour_until, teacher=teacher, centroids=centroids, metadata=meta)
    if init_state is not None:
        own = module.model.state_dict()
        usable = {k: v for k, v in init_state.items() if k in own and own[k].shape == v.shape}
        module.model.load_state_dict(usable, strict=False)
        fresh = sorted(set(own) - set(usable))
        log.info("initialised %d tensors from a checkpoint; fresh: %s", len(usable), fresh)
    # The frozen codec (and teacher) stay in eval mode on purpose (see hear_codec/codec.py).
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
    trainer = engine.make_trainer(run, out_dir, sampler=sampler)
    engine.fit(trainer, module, run, out_dir, train_dataloaders=train_loader, val_dataloaders=val_loader)
    return out_dir / engine.EXPORT
