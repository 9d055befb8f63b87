"""EnCodecMAE pretraining and self-training as a LightningModule.

One training step, shapes for batch B, crop S samples, T frames::

    batch (masking.MaskingCollate, on CPU in the data workers): wav [B, S], padding_mask [B, T],
          mask [B, T] (exactly floor(L/2) of each clip's L valid frames, 15-frame gaps),
          optional codes [B, 8, T] (precomputed targets), max_visible (int: the most
          visible frames of any clip, so the model needs no device-to-host read)
    features = front end (fp32, no autocast)                        [B, T, 256 | 128]
               (+ the batch's colouring curves [B, 1, 256], the first colour_until share of the
                training steps only: colouring.py)
    targets  = frozen codec in eval mode, RVQ at 6 kbps             [B, 8, T]
               (ec front end: the same encoder features are quantized, the encoder runs once)
             | k-means stream: nearest centroid of the teacher's last-layer x0 stream, fp32  [B, 1, T]
    logits   = EncodecMAE(features, mask, padding_mask)             [B, T, streams, 1024]
    loss     = losses.encodecmae_loss (0.9 masked / 0.1 unmasked, padding excluded)
"""
from __future__ import annotations

from pathlib import Path

import lightning as L
import torch

from hear_codec import encodecmae as emae
from hear_codec.checkpoint import save_checkpoint
from training import engine
from training.encodecmae import colouring
from training.encodecmae.losses import encodecmae_loss

INIT_EXPORT_NAME = "init.ckpt.hearcodec"  # the model before its first step (training/learning_check.py)
KMEANS_STREAM_WEIGHT = 1.0  # official self-training configs: quantizer_weights [..., 1.0]


# ---------------------------------------------------------------- k-means targets

def nearest_centroid(x: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """x [..., D], centroids [K, D] -> index of the nearest centroid (squared L2) [...]."""
    flat = x.reshape(-1, x.shape[-1]).float()
    c = centroids.float()
    d = (flat * flat).sum(1, keepdim=True) - 2 * flat @ c.T + (c * c).sum(1)[None, :]
    return d.argmin(dim=1).view(x.shape[:-1])


# ---------------------------------------------------------------- the LightningModule

class EncodecMAEModule(L.LightningModule):
    """Trains ``self.model`` (a hear_codec EncodecMAE) on codec codes and/or k-means streams.

    codec: the frozen EnCodec (needed unless every batch carries precomputed ``codes`` and the
    model has no codec streams). teacher + centroids: the k-means stream(s) (self-training).
    colour_until: the share of the run's first steps that add a batch's colouring curves (when
    the collate drew any) to its input. The data order is the engine's business
    (``engine.make_trainer(..., sampler=...)``).
    """

    def __init__(self, config: emae.EncodecMAEConfig, codec=None, *, lr: float = 1e-4,
                 betas=(0.9, 0.95), weight_decay: float = 0.05, warmup_steps: int = 0, schedule: str = "constant",
                 decay_steps: int | None = None, colour_until: float = 1.0,
                 teacher: emae.EncodecMAE | None = None,
                 centroids: torch.Tensor | None = None, metadata: dict | None = None):
        super().__init__()
        encoder = codec.encoder if (config.front_end == "ec" and codec is not None) else None
        self.model = emae.new_model(config, codec_encoder=encoder)
        self.codec = codec
        self.teacher = teacher.eval().requires_grad_(False) if teacher is not None else None
        if config.num_kmeans_streams and (teacher is None or centroids is None):
            raise ValueError("k-means streams need a teacher model and centroids")
        if centroids is not None:
            self.register_buffer("centroids", centroids.float().clone())
        else:
            self.centroids = None
        self.lr, self.betas, self.weight_decay = lr, tuple(betas), weight_decay
        self.warmup_steps, self.schedule, self.decay_steps = warmup_steps, schedule, decay_steps
        self.colour_until = colour_until  # share of the run's steps that colour a batch's input (colouring.py)
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
                hidden = self.teacher.last_layer_x0(features, batch["padding_mask"])
                targets.append(nearest_centroid(hidden, self.centroids).unsqueeze(1))
        return features, torch.cat(targets, dim=1)

    @property
    def _run_steps(self) -> int | None:
        """The run's length in steps (its trainer's max_steps), None without a trainer: where the
        cosine schedule ends and the colouring's share is counted from."""
        return self._trainer.max_steps if self._trainer is not None else None

    def _step(self, batch, stage: str):
        features, targets = self.targets_and_features(batch)
        if stage == "train" and "colour" in batch and colouring.is_coloured_step(self.global_step, self._run_steps,
                                                                                 self.colour_until):
            # the targets stay those of the clean clip
            features = features + colouring.in_feature_units(batch["colour"], self.model.config.mel_std)[:, None, :]
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
        opt = torch.optim.AdamW(params, lr=self.lr, betas=self.betas, weight_decay=self.weight_decay)
        return engine.with_lr_schedule(opt, self.warmup_steps, self.schedule, self._run_steps, self.decay_steps,
                                       module=self)

    # ---- export ----
    def on_train_start(self):
        if self.trainer.global_step == 0 and self.trainer.is_global_zero:
            # The untrained model, for comparisons (training/learning_check.py).
            save_checkpoint(Path(self.trainer.default_root_dir) / INIT_EXPORT_NAME, self.model,
                            metadata=dict(self.metadata, step=0))

    def export(self, out_dir):
        """OUT/last.ckpt.hearcodec: the model alone, in hear_codec's checkpoint format."""
        meta = dict(self.metadata, step=int(self.trainer.global_step) if self._trainer is not None else 0)
        save_checkpoint(Path(out_dir) / engine.EXPORT, self.model, metadata=meta)
