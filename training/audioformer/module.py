"""AudioFormer's LightningModules: masked-LM pretraining (:class:`AudioFormerMLM`) and FT1 / FT2
fine-tuning (:class:`FineTuner`).

Per batch: audio -> frozen codec -> codes [B, n_q, T] -> token sequences [BOA] c.. [EOA]
-> choose 25 % of each sequence's code tokens (never BOA/EOA/PAD) -> BERT corruption (80 %
[MASK], 10 % random code, 10 % unchanged) (``masking.py``) -> every codebook's backbone + MLM
head -> cross-entropy on the chosen positions, averaged over codebooks (``losses.py``).

Masks are drawn from a generator seeded by (seed, optimiser step, micro-batch, rank), so a resumed
run draws the same masks it would have drawn without the interruption.
"""
from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import torch
from torch.nn import functional as F

from hear_codec import audioformer as af
from hear_codec.checkpoint import save_checkpoint
from training import engine
from training.audioformer.losses import mlm_loss
from training.audioformer.masking import corrupt, mlm_mask
from training.audioformer.metrics import score
from training.audioformer.mpc import ft2_loss, mpc_loss

BEST = "best.hearcodec"  # fine-tuning's best model on validation


def batch_audio(batch):
    """(wav [B, S], lengths [B] in samples or None) from what a data loader yields:
    a tensor, a (wav, lengths, ...) tuple, or a dict with "wav"/"audio" and optional "lengths"."""
    if isinstance(batch, torch.Tensor):
        return batch, None
    if isinstance(batch, dict):
        wav = batch.get("wav", batch.get("audio"))
        if wav is None:
            raise KeyError(f"batch has no 'wav' or 'audio' entry (keys: {sorted(batch)})")
        return wav, batch.get("lengths")
    if isinstance(batch, (list, tuple)):
        return batch[0], (batch[1] if len(batch) > 1 and isinstance(batch[1], torch.Tensor) else None)
    raise TypeError(f"cannot read audio from a batch of type {type(batch).__name__}")


def tokens_for_batch(model: af.AudioFormer, batch) -> torch.Tensor:
    """Audio batch -> tokens [B, Q, T + 2].

    A dict may carry precomputed ``codes`` [B, Q, T] and ``frame_lengths`` [B] (valid frames);
    otherwise the frozen codec encodes ``wav`` and sample ``lengths`` become frame lengths.
    """
    frame_lengths = batch.get("frame_lengths") if isinstance(batch, dict) else None
    if isinstance(batch, dict) and "codes" in batch:
        codes = batch["codes"].long()
    else:
        wav, lengths = batch_audio(batch)
        codes = model.encode_codes(wav)
        if frame_lengths is None and lengths is not None:
            frame_lengths = torch.tensor([model.num_frames(int(n)) for n in lengths], device=codes.device)
    if frame_lengths is not None:
        frame_lengths = frame_lengths.clamp(max=codes.shape[-1])
    return af.codes_to_tokens(codes, frame_lengths)


class AudioFormerMLM(L.LightningModule):
    """Masked-LM pretraining of every codebook's backbone (the codec stays frozen).

    The data order is the engine's business (``engine.make_trainer(..., sampler=...)``).
    """

    def __init__(self, model: af.AudioFormer, lr: float = 1e-4, weight_decay: float = 0.01,
                 betas=(0.9, 0.98), warmup_steps: int = 1000, seed: int = 0, metadata: dict | None = None):
        super().__init__()
        self.model = model
        self.lr, self.weight_decay, self.betas = lr, weight_decay, tuple(betas)
        self.warmup_steps, self.seed = warmup_steps, seed
        self.metadata = dict(metadata or {})

    def _generator(self, batch_idx: int) -> torch.Generator:
        """A function of (seed, optimiser step, micro-batch within the step, rank): a resumed run
        draws the masks an uninterrupted one would, and micro-batches and ranks differ."""
        micro = batch_idx % max(1, self.trainer.accumulate_grad_batches)
        key = ((self.seed * 1_000_003 + self.global_step) * 1_009 + micro) * 131 + self.global_rank
        return torch.Generator().manual_seed(key)

    def _step(self, batch, generator):
        tokens = tokens_for_batch(self.model, batch)
        mask = mlm_mask(tokens, self.model.config.mask_prob, generator)
        out = self.model(corrupt(tokens, mask, generator), mask)
        return mlm_loss(out["logits"], tokens, mask), tokens.shape[0]

    def training_step(self, batch, batch_idx):
        result, n = self._step(batch, self._generator(batch_idx))
        self.log("train/loss", result["loss"], prog_bar=True, batch_size=n)
        self.log("train/masked_accuracy", result["accuracy"].mean(), prog_bar=True, batch_size=n)
        return result["loss"]

    def validation_step(self, batch, batch_idx):
        # Fixed masks per validation batch, so validation numbers are comparable across steps.
        result, n = self._step(batch, torch.Generator().manual_seed(10_007 + batch_idx))
        self.log("val/loss", result["loss"], prog_bar=True, batch_size=n, sync_dist=True)
        self.log("val/masked_accuracy", result["accuracy"].mean(), batch_size=n, sync_dist=True)
        for c, acc in enumerate(result["accuracy"]):
            self.log(f"val/masked_accuracy_cb{c + 1}", acc, batch_size=n, sync_dist=True)

    def configure_optimizers(self):
        params = [p for n, p in self.model.named_parameters() if p.requires_grad and not n.startswith("codec.")]
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]
        opt = torch.optim.AdamW([dict(params=decay, weight_decay=self.weight_decay),
                                 dict(params=no_decay, weight_decay=0.0)], lr=self.lr, betas=self.betas)
        return engine.with_lr_schedule(opt, self.warmup_steps, "constant", None, module=self)

    def export(self, out_dir):
        """OUT/last.ckpt.hearcodec: the file ``hear_codec.load_model`` reads."""
        meta = dict(self.metadata, stage="mlm-pretraining",
                    step=int(self.trainer.global_step) if self._trainer is not None else 0)
        return save_checkpoint(Path(out_dir) / engine.EXPORT, self.model, meta)


class FineTuner(L.LightningModule):
    """FT1 / FT2 over an AudioFormer that has a classifier. Batches: (codes, frames, targets)."""

    def __init__(self, model: af.AudioFormer, mode: str, multilabel: bool, *, lr: float = 1e-4,
                 head_lr: float = 1e-3, weight_decay: float = 0.01, alpha: float = 0.8, temperature: float = 0.05,
                 second_stage_step: int = 0, second_alpha: float = 0.97, second_temperature: float = 0.03,
                 out_dir=None, metadata: dict | None = None):
        super().__init__()
        if mode not in ("ft1", "ft2"):
            raise ValueError(f"mode must be 'ft1' or 'ft2', got {mode!r}")
        if mode == "ft2" and (model.config.shared_backbone or model.config.num_codebooks < 2):
            raise ValueError("FT2 needs one backbone per codebook and at least 2 codebooks")
        self.model, self.mode, self.multilabel = model, mode, multilabel
        self.lr, self.head_lr, self.weight_decay = lr, head_lr, weight_decay
        self.alpha, self.temperature = alpha, temperature
        self.second_stage_step, self.second_alpha, self.second_temperature = second_stage_step, second_alpha, second_temperature
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.metadata = dict(metadata or {})
        self.best_score = -math.inf
        self._val = []
        # What trains: FT1 the embedding backbone(s), FT2 the anchor only; always the classifier.
        model.requires_grad_(False)
        self.trained_codebooks = [0] if mode == "ft2" else model.embedding_codebooks
        for c in self.trained_codebooks:
            model.backbones[c].requires_grad_(True)
        model.classifier.requires_grad_(True)
        for backbone in model.backbones:  # the rotary table is a fixed weight, never trained
            backbone.encoder.embed_positions.weight.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        for c, backbone in enumerate(self.model.backbones):
            if c not in self.trained_codebooks:
                backbone.eval()  # frozen backbones never use dropout
        return self

    def stage(self) -> tuple:
        if self.second_stage_step and self.global_step >= self.second_stage_step:
            return self.second_alpha, self.second_temperature
        return self.alpha, self.temperature

    def task_loss(self, logits, targets):
        if self.multilabel:
            return F.binary_cross_entropy_with_logits(logits, targets.float())
        return F.cross_entropy(logits, targets)

    def forward_batch(self, batch):
        codes, frames, targets = batch
        tokens = af.codes_to_tokens(codes.long(), frames)
        if self.mode == "ft1":
            return self.model.classify(tokens), None, tokens, targets
        anchors = self.model.pooled(tokens, 0)
        return self.model.classifier(anchors), anchors, tokens, targets

    def training_step(self, batch, batch_idx):
        logits, anchors, tokens, targets = self.forward_batch(batch)
        task = self.task_loss(logits, targets)
        n = len(targets)
        if self.mode == "ft2":
            alpha, temperature = self.stage()
            with torch.no_grad():
                views = torch.stack([self.model.pooled(tokens, c)
                                     for c in range(1, self.model.config.num_codebooks)], dim=1)
            mpc = mpc_loss(anchors, views, temperature)
            loss = ft2_loss(task, mpc, alpha)
            self.log("train/mpc_loss", mpc, batch_size=n)
            self.log("train/alpha", alpha, batch_size=n)
        else:
            loss = task
        self.log("train/task_loss", task, batch_size=n)
        self.log("train/loss", loss, prog_bar=True, batch_size=n)
        return loss

    def validation_step(self, batch, batch_idx):
        logits, _, _, targets = self.forward_batch(batch)
        self._val.append((logits.detach().float().cpu(), targets.cpu()))

    def on_validation_epoch_end(self):
        if not self._val:
            return
        logits = torch.cat([x for x, _ in self._val])
        targets = torch.cat([y for _, y in self._val])
        self._val = []
        if self.trainer.world_size > 1:  # every process scores the whole validation set
            logits = self.all_gather(logits.to(self.device)).flatten(0, 1).cpu()
            targets = self.all_gather(targets.to(self.device)).flatten(0, 1).cpu()
        value = score(logits, targets, self.multilabel)
        name = "mAP" if self.multilabel else "accuracy"
        self.log(f"val/{name}", value, prog_bar=True)
        self.log("val/loss", self.task_loss(logits, targets))
        if not self.trainer.sanity_checking and value > self.best_score:
            self.best_score = value
            if self.out_dir is not None and self.trainer.is_global_zero:
                save_checkpoint(self.out_dir / BEST, self.model,
                                dict(self.metadata, step=int(self.global_step), **{f"valid_{name}": value}))

    def configure_optimizers(self):
        head = list(self.model.classifier.parameters())
        head_ids = {id(p) for p in head}
        body = [p for p in self.model.parameters() if p.requires_grad and id(p) not in head_ids]
        groups = [dict(params=head, lr=self.head_lr)]
        if body:
            groups.append(dict(params=body, lr=self.lr))
        return torch.optim.AdamW(groups, weight_decay=self.weight_decay)

    def on_save_checkpoint(self, checkpoint):
        checkpoint["best_score"] = self.best_score

    def on_load_checkpoint(self, checkpoint):
        self.best_score = checkpoint.get("best_score", -math.inf)
