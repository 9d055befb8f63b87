"""AudioFormer masked-LM pretraining: masking, loss and the LightningModule for training.pretrain.

Per batch: audio -> frozen codec -> codes [B, n_q, T] -> token sequences [BOA] c.. [EOA]
-> choose 25 % of each sequence's code tokens (never BOA/EOA/PAD) -> BERT corruption (80 %
[MASK], 10 % random code, 10 % unchanged) -> every codebook's backbone + MLM head -> cross-
entropy on the chosen positions, averaged over codebooks.

Masks are drawn from a generator seeded by (seed, global step), so a resumed run draws the
same masks it would have drawn without the interruption.
"""
from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from torch.nn import functional as F

from hear_codec import audioformer as af
from hear_codec.checkpoint import save_checkpoint

EXPORT_NAME = "last.ckpt.hearcodec"


def mlm_mask(tokens: torch.Tensor, prob: float = 0.25, generator: torch.Generator | None = None) -> torch.Tensor:
    """Choose the positions to predict: tokens [..., L] -> mask [..., L] bool.

    In every sequence exactly round(prob * n) of its n code tokens are chosen (at least one if
    n > 0), uniformly without replacement; special tokens (BOA, EOA, PAD) never are.
    """
    codes = af.is_code(tokens)
    n = codes.sum(-1, keepdim=True)
    k = torch.where(n > 0, (n.double() * prob).round().long().clamp(min=1), n)
    scores = torch.rand(tokens.shape, generator=generator).to(tokens.device)
    scores = scores.masked_fill(~codes, 2.0)  # specials sort last
    rank = scores.argsort(-1).argsort(-1)
    return rank < k


def corrupt(tokens: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None,
            mask_token: float = 0.8, random_token: float = 0.1) -> torch.Tensor:
    """BERT corruption of the chosen positions: [MASK] with p=0.8, a random code with p=0.1, else kept."""
    u = torch.rand(tokens.shape, generator=generator).to(tokens.device)
    random_codes = torch.randint(0, af.CODEBOOK_SIZE, tokens.shape, generator=generator).to(tokens.device)
    out = torch.where(mask & (u < mask_token), torch.full_like(tokens, af.MASK), tokens)
    return torch.where(mask & (u >= mask_token) & (u < mask_token + random_token), random_codes, out)


def mlm_loss(logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor) -> dict:
    """logits [B, Q, L, 1024]; tokens [B, Q, L] (uncorrupted); mask [B, Q, L] chosen positions.

    loss = mean over codebooks of the mean cross-entropy on that codebook's chosen positions.
    Also returns per-codebook ``ce`` and ``accuracy`` [Q].
    """
    targets = tokens.clamp(max=af.CODEBOOK_SIZE - 1)  # specials are never chosen; keep CE in range
    ce = F.cross_entropy(logits.float().flatten(0, 2), targets.flatten(), reduction="none").view(tokens.shape)
    n = mask.sum(dim=(0, 2)).clamp(min=1)
    ce_per_codebook = (ce * mask).sum(dim=(0, 2)) / n
    correct = (logits.argmax(-1) == tokens) & mask
    return dict(loss=ce_per_codebook.mean(), ce=ce_per_codebook.detach(),
                accuracy=correct.sum(dim=(0, 2)).float() / n)


def unigram_accuracy(train_tokens: torch.Tensor, eval_tokens: torch.Tensor, eval_mask: torch.Tensor) -> torch.Tensor:
    """The baseline an MLM must beat: always predict each codebook's most frequent training code.

    train_tokens [N, Q, L]; eval_tokens/eval_mask [M, Q, L] -> accuracy per codebook [Q].
    """
    q = train_tokens.shape[1]
    out = torch.zeros(q)
    for c in range(q):
        seq = train_tokens[:, c]
        mode = torch.bincount(seq[af.is_code(seq)], minlength=af.CODEBOOK_SIZE).argmax()
        m = eval_mask[:, c]
        out[c] = (eval_tokens[:, c][m] == mode).float().mean()
    return out


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
    """Audio batch (or a dict with precomputed "codes" [B, Q, T]) -> tokens [B, Q, T + 2]."""
    if isinstance(batch, dict) and "codes" in batch:
        codes, frame_lengths = batch["codes"], batch.get("frame_lengths")
    else:
        wav, lengths = batch_audio(batch)
        codes = model.encode_codes(wav)
        frame_lengths = None if lengths is None else torch.tensor(
            [model.num_frames(int(n)) for n in lengths], device=codes.device)
    return af.codes_to_tokens(codes, frame_lengths)


class AudioFormerMLM(L.LightningModule):
    """Masked-LM pretraining of every codebook's backbone (the codec stays frozen)."""

    def __init__(self, model: af.AudioFormer, lr: float = 1e-4, weight_decay: float = 0.01,
                 betas=(0.9, 0.98), warmup_steps: int = 1000, seed: int = 0):
        super().__init__()
        self.model = model
        self.lr, self.weight_decay, self.betas = lr, weight_decay, tuple(betas)
        self.warmup_steps, self.seed = warmup_steps, seed

    def _generator(self, batch_idx: int) -> torch.Generator:
        """A function of (seed, step, micro-batch, rank): resumable, and distinct per micro-batch and rank."""
        key = ((self.seed * 1_000_003 + self.global_step) * 1_009 + batch_idx % 1_009) * 131 + self.global_rank
        return torch.Generator().manual_seed(key)

    def _step(self, batch, generator):
        tokens = tokens_for_batch(self.model, batch)
        mask = mlm_mask(tokens, self.model.config.mask_prob, generator)
        out = self.model(corrupt(tokens, mask, generator))
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
        warmup = max(1, self.warmup_steps)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, (step + 1) / warmup))
        return dict(optimizer=opt, lr_scheduler=dict(scheduler=sched, interval="step"))

    def export(self, out_dir):
        """OUT/last.ckpt.hearcodec: the file ``hear_codec.load_model`` reads."""
        return save_checkpoint(Path(out_dir) / EXPORT_NAME, self.model,
                               {"stage": "mlm-pretraining", "step": int(self.global_step)})
