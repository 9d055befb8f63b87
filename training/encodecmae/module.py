"""EnCodecMAE pretraining (and self-training) as a LightningModule, plus its CLI glue.

``python -m training.pretrain --model encodecmae`` (the default) imports this module and calls
:func:`add_args` then :func:`train`; see training/pretrain.py for the registry.

One training step, shapes for batch B, crop S samples, T frames::

    batch (from the collate, on CPU in the data workers): wav [B, S], padding_mask [B, T],
          mask [B, T] (exactly floor(L/2) of each clip's L valid frames, 15-frame gaps),
          optional codes [B, 8, T] (precomputed targets), max_visible (int: the most
          visible frames of any clip, so the model needs no device-to-host read)
    features = front end (fp32, no autocast)                        [B, T, 256 | 128]
    targets  = frozen codec in eval mode, RVQ at 6 kbps             [B, 8, T]
               (ec front end: the same encoder features are quantized, the encoder runs once)
             | k-means stream: nearest centroid of the teacher's last-layer x0 stream, fp32  [B, 1, T]
    logits   = EncodecMAE(features, mask, padding_mask)             [B, T, streams, 1024]
    loss     = training.losses.encodecmae_loss (0.9 masked / 0.1 unmasked, padding excluded)
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import warnings
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from hear_codec import encodecmae as emae
from hear_codec.checkpoint import save_checkpoint
from hear_codec.codec import HOP_LENGTH, load_codec
from training import data as D
from training import engine
from training.losses import encodecmae_loss
from training.masking import time_gap_mask

log = logging.getLogger(__name__)

EXPORT_NAME = "last.ckpt.hearcodec"  # what hear_codec.load_model / hear-validator read
INIT_EXPORT_NAME = "init.ckpt.hearcodec"  # the same model before its first step
KMEANS_STREAM_WEIGHT = 1.0  # official self-training configs: quantizer_weights [..., 1.0]


# ---------------------------------------------------------------- framing and masking (CPU, in workers)

def input_frames(front_end: str, samples: int) -> int:
    """Frames the front end yields for ``samples`` at 24 kHz (mel256: whole 637-sample windows)."""
    if front_end == "mel256":
        return 0 if samples < emae.MelFrontEnd.window else 1 + (samples - emae.MelFrontEnd.window) // emae.MelFrontEnd.hop
    return math.ceil(samples / HOP_LENGTH)


def frames_for(front_end: str, samples: int) -> int:
    """Frames that have both an input frame and a codec target (the official loss crops the longer)."""
    return min(input_frames(front_end, samples), math.ceil(samples / HOP_LENGTH))


class MaskingCollate:
    """Stacks items and adds ``padding_mask`` and ``mask`` [B, T] (T = frames of the crop).

    Valid frames of a clip of ``length`` samples: ``frames_for(front_end, length)``; everything
    after is padding and never masked nor counted. The mask's random generator is seeded from the
    items' seeds, so a batch's mask depends only on which samples it holds (exact resume).
    """

    def __init__(self, front_end: str, crop_samples: int, prop: float = 0.5, gap: int = 15):
        self.front_end, self.crop_samples, self.prop, self.gap = front_end, int(crop_samples), prop, gap
        self.frames = frames_for(front_end, self.crop_samples)

    def __call__(self, items: list) -> dict:
        wav = torch.stack([it["wav"] for it in items])
        lengths = torch.tensor([frames_for(self.front_end, int(it["length"])) for it in items])
        lengths = lengths.clamp(max=self.frames)
        gen = torch.Generator().manual_seed(D._mix_seed(*[int(it["seed"]) for it in items]))
        batch = {
            "wav": wav,
            "frames": lengths,
            "padding_mask": torch.arange(self.frames)[None, :] >= lengths[:, None],
            "mask": time_gap_mask(lengths, self.frames, self.prop, self.gap, generator=gen),
            "ok": torch.tensor([bool(it["ok"]) for it in items]),
        }
        # Known here on the host, so the model need not read it back from the GPU each step.
        batch["max_visible"] = int((~(batch["mask"] | batch["padding_mask"])).sum(1).max())
        if "codes" in items[0]:
            batch["codes"] = torch.stack([it["codes"] for it in items]).long()[..., : self.frames]
        if "label" in items[0]:
            batch["label"] = torch.tensor([it["label"] for it in items])
        return batch


# ---------------------------------------------------------------- k-means targets

def nearest_centroid(x: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """x [..., D], centroids [K, D] -> index of the nearest centroid (squared L2) [...]."""
    flat = x.reshape(-1, x.shape[-1]).float()
    c = centroids.float()
    d = (flat * flat).sum(1, keepdim=True) - 2 * flat @ c.T + (c * c).sum(1)[None, :]
    return d.argmin(dim=1).view(x.shape[:-1])


def last_layer_x0(model: emae.EncodecMAE, features: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
    """The teacher's last encoder layer before the final ResiDual combination: [B, T, D].

    ``encoder(..., return_layers=True)`` returns the per-layer x0 streams; the last one is the
    output before ``x0 + final_norm(x1)``."""
    x = model.position(model.input_proj(features))
    _, streams, _ = model.encoder(x, padding_mask, return_layers=True)
    return streams[-1]


# ---------------------------------------------------------------- the LightningModule

class EncodecMAEModule(L.LightningModule):
    """Trains ``self.model`` (a hear_codec EncodecMAE) on codec codes and/or k-means streams.

    codec: the frozen EnCodec (needed unless every batch carries precomputed ``codes`` and the
    model has no codec streams). teacher + centroids: the k-means stream(s) (self-training).
    sampler: the training StepSampler, told the resume step at ``on_train_start``.
    """

    def __init__(self, config: emae.EncodecMAEConfig, codec=None, *, lr: float = 1e-4,
                 betas=(0.9, 0.95), weight_decay: float = 0.05, teacher: emae.EncodecMAE | None = None,
                 centroids: torch.Tensor | None = None, sampler: D.StepSampler | None = None,
                 metadata: dict | None = None):
        super().__init__()
        encoder = codec.encoder if (config.front_end == "ec" and codec is not None) else None
        self.model = emae.EncodecMAE(config, codec_encoder=encoder)
        self.codec = codec
        self.teacher = teacher.eval().requires_grad_(False) if teacher is not None else None
        if config.num_kmeans_streams and (teacher is None or centroids is None):
            raise ValueError("k-means streams need a teacher model and centroids")
        if centroids is not None:
            self.register_buffer("centroids", centroids.float().clone())
        else:
            self.centroids = None
        self.lr, self.betas, self.weight_decay = lr, tuple(betas), weight_decay
        self.sampler = sampler
        self.metadata = dict(metadata or {})
        weights = list(config.codec_stream_weights[: config.num_codec_streams])
        weights += [KMEANS_STREAM_WEIGHT] * config.num_kmeans_streams
        self.register_buffer("stream_weights", torch.tensor(weights, dtype=torch.float32), persistent=False)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()  # frozen; Codec keeps itself in eval mode
        return self

    # ---- steps ----
    def targets_and_features(self, batch):
        """(features [B, T, F] fp32, targets [B, streams, T] int64)."""
        cfg = self.model.config
        t = batch["mask"].shape[1]
        wav = batch["wav"]
        with torch.autocast(wav.device.type, enabled=False), torch.no_grad():
            features = self.model.input_features(wav.float())[:, :t]
            targets = []
            if cfg.num_codec_streams:
                if "codes" in batch:
                    codes = batch["codes"]
                elif cfg.front_end == "ec":  # reuse the front end's encoder output
                    codes = self.codec.quantize_features(features, cfg.num_codec_streams)
                else:
                    codes = self.codec.encode_codes(wav.float(), cfg.num_codec_streams)
                targets.append(codes[..., :t])
            if cfg.num_kmeans_streams:  # in fp32, the precision the centroids were fitted in
                hidden = last_layer_x0(self.teacher, features, batch["padding_mask"])
                targets.append(nearest_centroid(hidden, self.centroids).unsqueeze(1))
        return features, torch.cat(targets, dim=1)

    def _step(self, batch, stage: str):
        features, targets = self.targets_and_features(batch)
        out = self.model(None, batch["mask"], batch["padding_mask"], features=features,
                         max_visible=batch.get("max_visible"))
        losses = encodecmae_loss(out["logits"], targets, batch["mask"], batch["padding_mask"],
                                 self.stream_weights, self.model.config.masked_loss_weight)
        b = features.shape[0]
        sync = stage == "val"
        self.log(f"{stage}/loss", losses["loss"], prog_bar=True, batch_size=b, sync_dist=sync)
        self.log(f"{stage}/masked_loss", losses["masked_loss"], batch_size=b, sync_dist=sync)
        self.log(f"{stage}/unmasked_loss", losses["unmasked_loss"], batch_size=b, sync_dist=sync)
        for i, acc in enumerate(losses["masked_accuracy_per_stream"]):
            self.log(f"{stage}/masked_acc_{self._stream_name(i)}", acc, batch_size=b, sync_dist=sync)
        return losses

    def _stream_name(self, i: int) -> str:
        n_codec = self.model.config.num_codec_streams
        return f"q{i}" if i < n_codec else f"km{i - n_codec}"

    def training_step(self, batch, batch_idx):
        losses = self._step(batch, "train")
        self.log("data/unreadable", (~batch["ok"]).sum().float(), reduce_fx="sum", batch_size=len(batch["ok"]))
        return losses["loss"]

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def configure_optimizers(self):
        params = [p for p in self.model.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=self.lr, betas=self.betas, weight_decay=self.weight_decay)

    # ---- resume and export ----
    # Lightning creates (and prefetches from) the training iterator before ``on_train_start``,
    # so the sampler is told the rank in ``setup`` and the resume step in ``on_load_checkpoint``,
    # both of which run before the iterator exists.
    def setup(self, stage):
        if self.sampler is not None and stage == "fit":
            self.sampler.accumulate = self.trainer.accumulate_grad_batches
            self.sampler.rank = self.trainer.global_rank
            self.sampler.world = self.trainer.world_size

    def on_load_checkpoint(self, checkpoint):
        if self.sampler is not None:
            self.sampler.start_step = int(checkpoint["global_step"])

    def on_train_start(self):
        if self.trainer.global_step == 0 and self.trainer.is_global_zero:
            # The untrained model, for comparisons (training/learning_check.py).
            save_checkpoint(Path(self.trainer.default_root_dir) / INIT_EXPORT_NAME, self.model,
                            metadata=dict(self.metadata, step=0))
        if self.sampler is not None and self.sampler.start_step != self.trainer.global_step:
            raise RuntimeError(f"data order was set up for step {self.sampler.start_step}, "
                               f"training resumes at {self.trainer.global_step}")

    def export(self, out_dir):
        """OUT/last.ckpt.hearcodec: the model alone, in hear_codec's checkpoint format."""
        meta = dict(self.metadata, step=int(self.trainer.global_step) if self._trainer is not None else 0)
        save_checkpoint(Path(out_dir) / EXPORT_NAME, self.model, metadata=meta)


# ---------------------------------------------------------------- CLI glue (used by training.pretrain)

ENGINE_DEFAULTS = dict(max_steps=None, val_every=None, ckpt_every=None, log_every=10)
ENGINE_DEFAULT_NOTES = dict(max_steps="600 built-in, 500000 with --data", val_every="100 built-in, 10000 with --data",
                            ckpt_every="100 built-in, 10000 with --data")
# Built-in default (no --data) vs paper setting (--data), for options whose default depends on it.
SYNTHETIC_DEFAULTS = dict(max_steps=600, val_every=100, ckpt_every=100, batch_size=16, crop_seconds=2.0,
                          codec="offline", lr=1e-3)
PAPER_DEFAULTS = dict(max_steps=500_000, val_every=10_000, ckpt_every=10_000, batch_size=128, crop_seconds=4.0,
                      codec="pretrained", lr=1e-4)


def add_args(parser: argparse.ArgumentParser, model_shape: bool = True) -> None:
    """EnCodecMAE options; ``model_shape=False`` leaves out --preset/--front-end/--self-train-steps
    (self-training takes the shape from its teacher)."""
    g = parser.add_argument_group("EnCodecMAE model and data")
    if model_shape:
        g.add_argument("--preset", default="tiny", choices=sorted(emae.PRESETS),
                       help="model size: tiny (built-in demo), small/base/large (paper) (default: %(default)s)")
        g.add_argument("--front-end", default="mel256", choices=["mel256", "ec"],
                       help="input features: mel256 (256-bin Kaldi fbank, v2 default) or ec (frozen EnCodec "
                            "encoder) (default: %(default)s)")
        g.add_argument("--self-train-steps", type=int, default=0,
                       help="after pretraining, run self-training (training.self_train with its defaults, "
                            "v2) for this many steps into OUT/self_train; 0 = no (default: %(default)s)")
    g.add_argument("--crop-seconds", type=float, default=None,
                   help="training crop length; shorter clips are zero-padded and the padding is excluded from "
                        "the loss (default: 4.0 with --data, 2.0 synthetic)")
    g.add_argument("--batch-size", type=int, default=None,
                   help="clips per micro-batch per device (default: 128 with --data, 16 synthetic)")
    g.add_argument("--lr", type=float, default=None,
                   help="AdamW learning rate, constant (default: 1e-4 with --data, the paper's; 1e-3 for the "
                        "tiny built-in run, which has 600 steps to show that it learns)")
    g.add_argument("--betas", type=float, nargs=2, default=(0.9, 0.95), help="AdamW betas (default: 0.9 0.95)")
    g.add_argument("--weight-decay", type=float, default=0.05, help="AdamW weight decay (default: %(default)s)")
    D.add_data_args(g, codec_use="the targets (and the ec front end's features)", synthetic_clips=384)


def resolve_defaults(args, **overrides) -> None:
    """Fill the options whose default depends on whether --data was given (``overrides`` first)."""
    defaults = {**(PAPER_DEFAULTS if args.data else SYNTHETIC_DEFAULTS), **overrides}
    for key, value in defaults.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    if args.num_workers is None:
        args.num_workers = max(0, min(8, (os.cpu_count() or 1) - 1))


def build_config(args, **overrides) -> emae.EncodecMAEConfig:
    return emae.preset(args.preset, front_end=args.front_end, codec_weights=args.codec,
                       chunk_seconds=args.crop_seconds, **overrides)


def load_frozen_codec(args):
    return load_codec(args.codec, path=args.codec_path) if args.codec == "pretrained" else load_codec("offline")


def build_data(args, out_dir: Path, config: emae.EncodecMAEConfig, codec) -> tuple:
    """(train_loader, val_loader or None, sampler, data metadata)."""
    crop = int(round(args.crop_seconds * D.SAMPLE_RATE))
    train_set, val_set, meta = D.build_datasets(args, out_dir, codec, config.num_codec_streams)
    sampler = D.StepSampler(train_set.draws_per_epoch, args.batch_size, seed=args.seed)
    collate = MaskingCollate(config.front_end, crop, config.mask_prop, config.mask_gap)
    common = dict(collate_fn=collate, num_workers=args.num_workers, pin_memory=torch.cuda.is_available(),
                  persistent_workers=args.num_workers > 0)
    train_loader = DataLoader(_Seeded(train_set), batch_size=args.batch_size, sampler=sampler,
                              prefetch_factor=4 if args.num_workers else None, **common)
    val_loader = None
    if val_set is not None and len(val_set):
        val_loader = DataLoader(_Seeded(val_set), batch_size=min(args.batch_size, 32), shuffle=False, **common)
    return train_loader, val_loader, sampler, meta


class _Seeded(torch.utils.data.Dataset):
    """Adds the mask seed to each item: the crop seed for training keys, the index for validation."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        item = self.dataset[key]
        item["seed"] = int(key[1]) if isinstance(key, (tuple, list)) else D._mix_seed(int(key), 3)
        return item


def train(args, config: emae.EncodecMAEConfig | None = None, module_kwargs: dict | None = None,
          init_state: dict | None = None, metadata: dict | None = None) -> Path:
    """Run (pre)training as configured by ``args``; returns the exported hear_codec checkpoint path.

    ``config`` replaces the one built from --preset/--front-end (self-training passes the teacher's
    with a k-means stream); ``init_state`` initialises the model (strict=False: a new head stays fresh)."""
    resolve_defaults(args)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    if config is None:
        config = build_config(args)
    codec = load_frozen_codec(args) if (config.num_codec_streams or config.front_end == "ec") else None
    train_loader, val_loader, sampler, data_meta = build_data(args, out_dir, config, codec)
    torch.manual_seed(args.seed)  # model init does not depend on how much data set-up drew
    meta = dict(preset=getattr(args, "preset", None), front_end=config.front_end, codec=args.codec, seed=args.seed,
                trained_by="training.pretrain", **data_meta)
    meta.update(metadata or {})
    module = EncodecMAEModule(config, codec, lr=args.lr, betas=args.betas, weight_decay=args.weight_decay,
                              sampler=sampler, metadata=meta, **(module_kwargs or {}))
    if init_state is not None:
        own = module.model.state_dict()
        usable = {k: v for k, v in init_state.items() if k in own and own[k].shape == v.shape}
        module.model.load_state_dict(usable, strict=False)
        fresh = sorted(set(own) - set(usable))
        log.info("initialised %d tensors from a checkpoint; fresh: %s", len(usable), fresh)
    # The frozen codec (and teacher) stay in eval mode on purpose (see hear_codec/codec.py).
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
    trainer = engine.make_trainer(args, out_dir, use_distributed_sampler=False)
    engine.fit(trainer, module, args, out_dir, train_dataloaders=train_loader, val_dataloaders=val_loader)
    exported = out_dir / EXPORT_NAME
    if getattr(args, "self_train_steps", 0) > 0:
        from training import self_train  # a stage of pretraining: same data and engine options

        st_args = self_train.build_parser().parse_args(["--teacher", str(exported)])
        keep = {k: v for k, v in vars(args).items() if k in vars(st_args) and k not in ("out", "max_steps", "resume")}
        st_args.__dict__.update(keep)
        st_args.out = str(out_dir / "self_train")
        st_args.max_steps = args.self_train_steps
        st_args.resume = "auto" if args.resume else None
        return self_train.run(st_args)
    return exported
