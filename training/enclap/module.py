"""Lightning wrapper for EnCLAP training: loss logging, validation captioning, optimiser and schedule.

The checkpoint is self-contained: the model config and the tokenizer (as JSON) are hyper-parameters,
so ``CaptioningModule.load_from_checkpoint`` needs no download.

Exact resume: the training data order is a :class:`training.data.sampler.StepSampler` (wired by the
engine), and the global torch generator (dropout) is re-seeded at every micro-batch from (seed,
step, micro-batch, rank), so a resumed run draws what an uninterrupted one would.

Validation generates a caption per clip (beam search), gathers them from every process and scores
them once (rank 0, broadcast): ``val/cider_d``, ``val/spider`` when SPICE runs, and
``val/selection`` (SPIDEr, or CIDEr-D where SPICE cannot run) for checkpoint selection.
"""
from __future__ import annotations

import lightning as L
import torch
from transformers import get_inverse_sqrt_schedule

from training.data.sampler import mix_seed
from training.enclap.metrics import evaluate_captions, selection_metric
from training.enclap.model import EnClapBartConfig, EnClapBartForConditionalGeneration, beam_search_config
from training.enclap.text import tokenizer_from_json

MODEL_INPUTS = ("input_ids", "clap_embedding", "encodec_mask", "attention_mask")


class CaptioningModule(L.LightningModule):
    def __init__(self, config: dict, tokenizer_json: str, lr: float = 5e-5, weight_decay: float = 0.01,
                 warmup_steps: int = 1000, schedule_timescale: int | None = None, num_beams: int = 4,
                 max_caption_length: int = 50, val_metrics: tuple = ("cider_d", "spice", "spider"), seed: int = 0):
        super().__init__()
        # In the checkpoint (so it is self-contained), not in the loggers' hparams.yaml: the
        # tokenizer JSON is megabytes for BART.
        self.save_hyperparameters(logger=False)
        self.model = EnClapBartForConditionalGeneration(EnClapBartConfig(**config))
        self.tokenizer = tokenizer_from_json(tokenizer_json)
        self._val_outputs: list[tuple[str, str, list[str]]] = []

    def on_train_batch_start(self, batch, batch_idx):
        micro = batch_idx % max(1, self.trainer.accumulate_grad_batches)
        torch.manual_seed(mix_seed(self.hparams.seed, self.global_step, micro, self.global_rank, 13))

    def generation_config(self):
        return beam_search_config(self.model.config, self.hparams.num_beams, self.hparams.max_caption_length)

    def training_step(self, batch, batch_idx):
        out = self.model(**{k: batch[k] for k in MODEL_INPUTS}, labels=batch["labels"], mcm_labels=batch.get("mcm_labels"))
        n = len(batch["ids"])
        self.log("train/loss", out.loss, prog_bar=True, batch_size=n)
        self.log("train/lm_loss", out.lm_loss, batch_size=n)
        if out.mcm_loss is not None:
            self.log("train/mcm_loss", out.mcm_loss, batch_size=n)
        return out.loss

    @torch.no_grad()
    def captions(self, batch) -> list[str]:
        """Beam-search captions for a collated batch (see :class:`~training.enclap.data.EnClapCollator`)."""
        ids = self.model.caption_ids(**{k: batch[k] for k in MODEL_INPUTS}, generation=self.generation_config())
        return [t.strip() for t in self.tokenizer.batch_decode(ids, skip_special_tokens=True)]

    def validation_step(self, batch, batch_idx):
        for clip_id, caption, refs in zip(batch["ids"], self.captions(batch), batch["references"]):
            self._val_outputs.append((clip_id, caption, refs))

    def on_validation_epoch_end(self):
        outputs = self._val_outputs
        self._val_outputs = []
        if self.trainer.world_size > 1:
            gathered = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(gathered, outputs)
            outputs = [o for part in gathered for o in part]
        scores = [None]
        if self.trainer.is_global_zero and outputs:
            # DistributedSampler may repeat clips to even out ranks: keep one caption per clip.
            preds = {clip_id: caption for clip_id, caption, _ in outputs}
            refs = {clip_id: r for clip_id, _, r in outputs}
            results, _ = evaluate_captions(preds, refs, self.hparams.val_metrics)
            scores = [{name: r.value for name, r in results.items() if r.value is not None}]
            scores[0]["selection"] = selection_metric(results)[1]
        if self.trainer.world_size > 1:
            torch.distributed.broadcast_object_list(scores, src=0)
        for name, value in (scores[0] or {}).items():
            # every rank holds the same broadcast value; sync_dist averages identical numbers
            self.log(f"val/{name}", float(value), prog_bar=name == "selection", sync_dist=True)

    def configure_optimizers(self):
        """AdamW, no weight decay on biases and LayerNorm weights; inverse-sqrt schedule with warm-up
        (transformers' get_inverse_sqrt_schedule, as the official code: timescale None = the warm-up
        steps, or 10000 without warm-up)."""
        decay, no_decay, seen = [], [], set()
        for module in self.model.modules():
            for name, p in module.named_parameters(recurse=False):
                if not p.requires_grad or id(p) in seen:  # tied embeddings appear in several modules
                    continue
                seen.add(id(p))
                is_norm = isinstance(module, torch.nn.LayerNorm)
                (no_decay if is_norm or name == "bias" else decay).append(p)
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.hparams.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=self.hparams.lr,
        )
        schedule = get_inverse_sqrt_schedule(optimizer, num_warmup_steps=self.hparams.warmup_steps,
                                             timescale=self.hparams.schedule_timescale)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def load_captioner(path, tokenizer: str | None = None, map_location="cpu") -> CaptioningModule:
    """A trained captioner from our Lightning checkpoint (``*.ckpt``) or a published EnCLAP folder.

    A published folder (``config.json`` + ``pytorch_model.bin``/``model.safetensors`` with the
    official key names) has no tokenizer: ``tokenizer`` names one (default ``facebook/bart-base``,
    or ``facebook/bart-large`` for 1024-wide models).
    """
    from pathlib import Path

    from training.enclap.text import load_bart_tokenizer, tokenizer_to_json

    path = Path(path)
    if path.is_file():
        module = CaptioningModule.load_from_checkpoint(path, map_location=map_location)
    elif (path / "config.json").is_file():
        model = EnClapBartForConditionalGeneration.from_pretrained(path)
        name = tokenizer or ("facebook/bart-large" if model.config.d_model == 1024 else "facebook/bart-base")
        module = CaptioningModule(model.config.to_dict(), tokenizer_to_json(load_bart_tokenizer(name)))
        module.model = model
    else:
        raise FileNotFoundError(f"{path} is neither a checkpoint file nor a folder with config.json")
    return module.eval()
