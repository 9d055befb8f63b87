"""AudioFormer masked-LM pretraining as a LightningModule.

Per batch: audio -> frozen codec -> codes [B, n_q, T] -> token sequences [BOA] c.. [EOA]
-> choose 25 % of each sequence's code tokens (never BOA/EOA/PAD) -> BERT corruption (80 %
[MASK], 10 % random code, 10 % unchanged) (``masking.py``) -> every codebook's backbone + MLM
head -> cross-entropy on the chosen positions, averaged over codebooks (``losses.py``).

Masks are drawn from a generator seeded by (seed, optimiser step, micro-batch, rank), so a resumed
run draws the same masks it would have drawn without the interruption.
"""
from __future__ import annotations

from pathlib import Path

import lightning as L
import torch

from hear_codec import audioformer as af
from hear_codec.checkpoint import save_checkpoint
from training import engine
from training.audioformer.losses import mlm_loss
from training.audioformer.masking import corrupt, mlm_mask


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
