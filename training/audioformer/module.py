"""AudioFormer masked-LM pretraining: masking, loss and the LightningModule for training.pretrain.

Per batch: audio -> frozen codec -> codes [B, n_q, T] -> token sequences [BOA] c.. [EOA]
-> choose 25 % of each sequence's code tokens (never BOA/EOA/PAD) -> BERT corruption (80 %
[MASK], 10 % random code, 10 % unchanged) -> every codebook's backbone + MLM head -> cross-
entropy on the chosen positions, averaged over codebooks.

Masks are drawn from a generator seeded by (seed, optimiser step, micro-batch, rank), so a resumed run draws the
same masks it would have drawn without the interruption.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import lightning as L
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader

from hear_codec import audioformer as af
from hear_codec import codec as codec_lib
from hear_codec.checkpoint import save_checkpoint
from training import data as D
from training import engine

log = logging.getLogger(__name__)

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


def mlm_loss(logits, tokens: torch.Tensor, mask: torch.Tensor) -> dict:
    """Cross-entropy on the chosen positions, averaged per codebook, then over codebooks.

    logits: [B, Q, L, 1024], or a list of Q tensors [n_c, 1024] holding only codebook c's masked
    positions in row-major order (``AudioFormer.forward(tokens, mask)``); tokens [B, Q, L]
    (uncorrupted); mask [B, Q, L] chosen positions. Also returns per-codebook ``ce`` and ``accuracy`` [Q].
    """
    q = tokens.shape[1]
    if isinstance(logits, torch.Tensor):
        logits = [logits[:, c][mask[:, c]] for c in range(q)]
    ce, acc = [], []
    for c in range(q):
        target = tokens[:, c][mask[:, c]]
        if len(target) == 0:
            ce.append(logits[c].sum() * 0.0)
            acc.append(torch.zeros((), device=tokens.device))
            continue
        ce.append(F.cross_entropy(logits[c].float(), target))
        acc.append((logits[c].argmax(-1) == target).float().mean())
    ce = torch.stack(ce)
    return dict(loss=ce.mean(), ce=ce.detach(), accuracy=torch.stack(acc).detach())


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

    sampler: the training StepSampler, told the resume step by ``on_load_checkpoint``.
    """

    def __init__(self, model: af.AudioFormer, lr: float = 1e-4, weight_decay: float = 0.01,
                 betas=(0.9, 0.98), warmup_steps: int = 1000, seed: int = 0,
                 sampler: D.StepSampler | None = None, metadata: dict | None = None):
        super().__init__()
        self.model = model
        self.lr, self.weight_decay, self.betas = lr, weight_decay, tuple(betas)
        self.warmup_steps, self.seed = warmup_steps, seed
        self.sampler = sampler
        self.metadata = dict(metadata or {})

    # Lightning fetches the first training batch before on_train_start, and restores
    # trainer.global_step only after on_fit_start: the sampler learns the resume step from the
    # checkpoint itself, and its layout at on_fit_start, both before the first fetch.
    def on_load_checkpoint(self, checkpoint):
        if self.sampler is not None:
            self.sampler.start_step = int(checkpoint["global_step"])

    def on_fit_start(self):
        if self.sampler is not None:
            self.sampler.accumulate = self.trainer.accumulate_grad_batches
            self.sampler.rank = self.trainer.global_rank
            self.sampler.world = self.trainer.world_size

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
        warmup = max(1, self.warmup_steps)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, (step + 1) / warmup))
        return dict(optimizer=opt, lr_scheduler=dict(scheduler=sched, interval="step"))

    def export(self, out_dir):
        """OUT/last.ckpt.hearcodec: the file ``hear_codec.load_model`` reads."""
        meta = dict(self.metadata, stage="mlm-pretraining",
                    step=int(self.trainer.global_step) if self._trainer is not None else 0)
        return save_checkpoint(Path(out_dir) / EXPORT_NAME, self.model, meta)


# ---------------------------------------------------------------- CLI glue (used by training.pretrain)

ENGINE_DEFAULTS = dict(max_steps=None, val_every=None, ckpt_every=None, log_every=10)
# Built-in default (no --data) vs the paper's setting (--data), for options whose default depends on it.
SYNTHETIC_DEFAULTS = dict(max_steps=300, val_every=100, ckpt_every=100, batch_size=16, crop_seconds=2.0,
                          codec="offline", lr=1e-3, warmup_steps=30)
PAPER_DEFAULTS = dict(max_steps=400_000, val_every=10_000, ckpt_every=10_000, batch_size=64, crop_seconds=10.0,
                      codec="pretrained", lr=1e-4, warmup_steps=10_000)


def add_args(parser) -> None:
    g = parser.add_argument_group("AudioFormer model and data")
    g.add_argument("--preset", default="tiny", choices=sorted(af.PRESETS),
                   help="backbone size per codebook: tiny (built-in demo), small, base (RoFormer-base) "
                        "(default: %(default)s)")
    g.add_argument("--codebooks", type=int, default=4,
                   help="EnCodec codebooks modelled, one token sequence each (paper: 4) (default: %(default)s)")
    g.add_argument("--shared-backbone", action="store_true",
                   help="one RoFormer for all codebooks (codebook-offset vocabulary + a token type per "
                        "codebook) instead of one per codebook as in the paper")
    g.add_argument("--mask-prob", type=float, default=0.25,
                   help="share of each sequence's code tokens chosen for the MLM loss (paper: 0.25) "
                        "(default: %(default)s)")
    g.add_argument("--crop-seconds", type=float, default=None,
                   help="training crop length, also the chunk length for HEAR embeddings; shorter clips are "
                        "padded and the padding is never a target (default: 10.0 with --data, 2.0 synthetic)")
    g.add_argument("--batch-size", type=int, default=None,
                   help="clips per micro-batch per device (default: 64 with --data, 16 synthetic)")
    g.add_argument("--lr", type=float, default=None,
                   help="AdamW peak learning rate after linear warm-up, then constant "
                        "(default: 1e-4 with --data as in the paper, 1e-3 synthetic)")
    g.add_argument("--warmup-steps", type=int, default=None,
                   help="linear learning-rate warm-up (default: 10000 with --data, 30 synthetic)")
    g.add_argument("--betas", type=float, nargs=2, default=(0.9, 0.98), help="AdamW betas (default: 0.9 0.98)")
    g.add_argument("--weight-decay", type=float, default=0.01,
                   help="AdamW weight decay on matrices (default: %(default)s)")
    D.add_data_args(g, codec_use="the tokens", synthetic_clips=160)


def resolve_defaults(args) -> None:
    """Fill the options whose default depends on whether --data was given."""
    defaults = PAPER_DEFAULTS if args.data else SYNTHETIC_DEFAULTS
    for key, value in defaults.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    if args.num_workers is None:
        args.num_workers = max(0, min(8, (os.cpu_count() or 1) - 1))


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


def build_data(args, out_dir: Path, n_q: int, codec) -> tuple:
    """(train_loader, val_loader or None, sampler, data metadata): the pipeline EnCodecMAE uses."""
    crop = int(round(args.crop_seconds * D.SAMPLE_RATE))
    train_set, val_set, meta = D.build_datasets(args, out_dir, codec, n_q)
    sampler = D.StepSampler(train_set.draws_per_epoch, args.batch_size, seed=args.seed)
    common = dict(collate_fn=Collate(crop), num_workers=args.num_workers, pin_memory=torch.cuda.is_available(),
                  persistent_workers=args.num_workers > 0)
    train_loader = DataLoader(train_set, batch_size=args.batch_size, sampler=sampler,
                              prefetch_factor=4 if args.num_workers else None, **common)
    val_loader = None
    if val_set is not None and len(val_set):
        val_loader = DataLoader(val_set, batch_size=min(args.batch_size, 32), shuffle=False, **common)
    return train_loader, val_loader, sampler, meta


def train(args) -> Path:
    """Run MLM pretraining as configured by ``args``; returns the exported hear_codec checkpoint path."""
    resolve_defaults(args)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = af.preset(args.preset, num_codebooks=args.codebooks, shared_backbone=args.shared_backbone,
                       mask_prob=args.mask_prob, chunk_seconds=args.crop_seconds, codec_weights=args.codec)
    codec = (codec_lib.load_codec("pretrained", path=args.codec_path) if args.codec == "pretrained"
             else codec_lib.load_codec("offline"))
    train_loader, val_loader, sampler, data_meta = build_data(args, out_dir, config.num_codebooks, codec)
    model = af.new_model(config, codec, seed=args.seed)  # init does not depend on how much data set-up drew
    metadata = dict(preset=args.preset, codec=args.codec, trained_by="training.pretrain --model audioformer",
                    **data_meta)
    module = AudioFormerMLM(model, lr=args.lr, weight_decay=args.weight_decay, betas=args.betas,
                            warmup_steps=args.warmup_steps, seed=args.seed, sampler=sampler, metadata=metadata)
    trainer = engine.make_trainer(args, out_dir, use_distributed_sampler=False)
    engine.fit(trainer, module, args, out_dir, train_dataloaders=train_loader, val_dataloaders=val_loader)
    return out_dir / EXPORT_NAME

