"""EnCodecMAE pretraining and self-training as a LightningModule.

One training step, shapes for batch B, crop S samples, T frames::

    batch (masking.MaskingCollate, on CPU in the data workers): wav [B, S], padding_mask [B, T],
          mask [B, T] (exactly floor(L/2) of each clip's L valid frames, 15-frame gaps),
          optional codes [B, streams, T] (targets precomputed for fixed clips: targets.py), max_visible (int:
          the most visible frames of any clip, so the model needs no device-to-host read),
          optional augment (per-clip parameters of an input augmentation, drawn by the collate)
    features = front end (fp32, no autocast)                        [B, T, 256 | 128]
               (+ the augmentation, in the training steps it covers, when the run has one)
    targets  = the run's target source (targets.py), frozen         [B, streams, T]
               (EnCodec's 8 codebooks at 6 kbps; after self-training the teacher's k-means stream)
    logits   = EncodecMAE(features, mask, padding_mask)             [B, T, streams, vocab]
    loss     = losses.encodecmae_loss (0.9 masked / 0.1 unmasked, padding excluded)
"""
from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from torch import nn

from hear_codec import encodecmae as emae
from hear_codec.checkpoint import save_checkpoint
from hear_codec.errors import UserError
from training import engine
from training.encodecmae.losses import encodecmae_loss

INIT_EXPORT_NAME = "init.ckpt.hearcodec"  # the model before its first step, for comparisons with the trained one


class EncodecMAEModule(L.LightningModule):
    """Trains ``self.model`` (a hear_codec EncodecMAE) to predict ``targets`` (a target source,
    training/encodecmae/targets.py) at the masked frames.

    codec_encoder: the frozen EnCodec encoder of the ec front end. augment: an input augmentation
    (``draw(batch, generator)`` in the collate, ``active(step, run_steps)`` and ``apply(features,
    drawn)`` here, ``describe()`` for the checkpoints' metadata), or None, the paper's. The data order is the engine's business
    (``engine.make_trainer(..., sampler=...)``).
    """

    def __init__(self, config: emae.EncodecMAEConfig, targets: nn.Module, *, codec_encoder: nn.Module | None = None,
                 lr: float = 1e-4, betas=(0.9, 0.95), weight_decay: float = 0.05, warmup_steps: int = 0,
                 schedule: str = "constant", decay_steps: int | None = None, augment=None,
                 metadata: dict | None = None):
        super().__init__()
        if len(targets.weights) != config.num_streams or targets.vocab_size != config.vocab_size:
            raise ValueError(f"the model predicts {config.num_streams} streams of {config.vocab_size} codes, the targets "
                             f"({targets.name}) are {len(targets.weights)} of {targets.vocab_size}")
        self.model = emae.new_model(config, codec_encoder=codec_encoder)
        self.targets = targets.requires_grad_(False)
        self.lr, self.betas, self.weight_decay = lr, tuple(betas), weight_decay
        self.warmup_steps, self.schedule, self.decay_steps = warmup_steps, schedule, decay_steps
        self.augment = augment
        self.metadata = dict(metadata or {})
        self.register_buffer("stream_weights", torch.tensor(targets.weights, dtype=torch.float32), persistent=False)

    def train(self, mode: bool = True):
        super().train(mode)
        self.targets.eval()  # frozen: a codec's quantizer would update its codebooks in training mode
        return self

    @staticmethod
    def rebuilt(key: str) -> bool:
        """Whether a state-dict entry is rebuilt from the run's options rather than trained (the
        frozen targets): ``engine.check_resumable`` does not ask a checkpoint for it."""
        return not key.startswith("model.")

    def on_load_checkpoint(self, checkpoint):
        """On resume the frozen targets stay the ones this run built; where the checkpoint has the
        same tensor it must be equal (the same targets). Its other target tensors are dropped:
        checkpoints written before the targets had one interface kept them under other names."""
        state = checkpoint["state_dict"]
        own = {k: v for k, v in self.state_dict().items() if self.rebuilt(k)}
        for key in [k for k in state if self.rebuilt(k)]:
            stored = state.pop(key)
            if key in own and not torch.equal(stored.cpu(), own[key].cpu()):
                raise UserError(f"--resume: the checkpoint's targets differ from this run's ({key}): resume with the "
                                "targets the run was trained on, or train into a new --out")
        state.update(own)

    # ---- steps ----
    def targets_and_features(self, batch):
        """(features [B, T, F] fp32, targets [B, streams, T] int64)."""
        t = batch["mask"].shape[1]
        wav = batch["wav"]
        with torch.autocast(wav.device.type, enabled=False), torch.no_grad():
            features = self.model.input_features(wav.float())[:, :t]
            targets = self.targets(batch, features)
        return features, targets

    @property
    def _run_steps(self) -> int | None:
        """The run's length in steps (its trainer's max_steps), None without a trainer: where the
        cosine schedule ends and an augmentation's share of the steps is counted from."""
        return self._trainer.max_steps if self._trainer is not None else None

    def _step(self, batch, stage: str):
        features, targets = self.targets_and_features(batch)
        if stage == "train" and "augment" in batch and self.augment.active(self.global_step, self._run_steps):
            features = self.augment.apply(features, batch["augment"])  # the targets stay those of the clean clip
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
            # The untrained model, for comparisons with the trained one.
            save_checkpoint(Path(self.trainer.default_root_dir) / INIT_EXPORT_NAME, self.model,
                            metadata=dict(self.metadata, step=0))

    def export(self, out_dir):
        """OUT/last.ckpt.hearcodec: the model alone, in hear_codec's checkpoint format."""
        meta = dict(self.metadata, step=int(self.trainer.global_step) if self._trainer is not None else 0)
        save_checkpoint(Path(out_dir) / engine.EXPORT, self.model, metadata=meta)
