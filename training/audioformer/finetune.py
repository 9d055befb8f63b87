"""AudioFormer fine-tuning: ``python -m training.audioformer.finetune`` (FT1 and FT2, SPEC.md §3).

    python -m training.audioformer.finetune --init runs/pretrain/last.ckpt.hearcodec \\
        --train train.csv --valid valid.csv [--test test.csv] --mode ft2 --out runs/ft

FT1: the clip embedding (mean over frames of the embedding backbone(s), as the HEAR scene
embedding) -> Linear -> multiclass cross-entropy or multilabel BCE. FT2 (MPC): the codebook-1
("anchor") backbone and the head train, the backbones of codebooks 2..n_q are frozen, and the
loss is ``alpha * task + (1 - alpha) * MPC`` (training/audioformer/mpc.py); the paper's two stages (alpha 0.8,
T 0.05, then alpha 0.97, T 0.03) are the default: ``--alpha/--temperature`` until
``--second-stage-step`` (default: half of ``--max-steps``), ``--second-alpha/--second-temperature``
after it.

Labelled data
-------------
* CSV with a header naming a ``file`` (or ``filename``) column and a ``label`` (or ``labels``)
  column; several labels in one cell are separated by ``;``.
* JSON: a list of ``{"file": ..., "label": "x"}`` / ``{"file": ..., "labels": ["x", "y"]}``
  objects, or a HEAR split file ``{"file": ["x", "y"], ...}``. JSON Lines (``.jsonl``): one such
  object per line.
Relative paths are relative to the labels file's folder. Any problem (missing or unreadable
audio, a label that is not in the vocabulary, a malformed row) stops the run with
``FILE:LINE: message`` for every offending row (up to 20). The vocabulary is ``--labels FILE``
(one label per line, or HEAR's labelvocabulary.csv) or else the sorted labels of --train.

Every clip is cut or padded to ``--clip-seconds`` and encoded once by the frozen codec (no
augmentation, so caching the codes changes nothing). Validation runs every ``--val-every``
batches; the best model on the validation metric (mAP for multilabel, accuracy for multiclass)
is written to ``OUT/best.hearcodec`` — an AudioFormer checkpoint with its classifier, which
``hear_codec.load_model`` reads like any other — and ``OUT/results.json`` gets the best model's
validation (and test) scores.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from hear_codec import audioformer as af
from hear_codec import cli
from hear_codec import codec as codec_lib
from hear_codec.audio import read_audio
from hear_codec.checkpoint import load_checkpoint, save_checkpoint
from hear_codec.cli import UserError
from hear_codec.files import write_json
from training import engine
from training.audioformer.mpc import ft2_loss, mpc_loss

log = logging.getLogger(__name__)
BEST = "best.hearcodec"
MAX_REPORTED = 20


# ---------------------------------------------------------------- labelled data

class LabelsFileError(UserError, ValueError):
    """A labels file with problems; the message lists every offending line."""


@dataclass
class Example:
    file: Path
    labels: tuple
    line: int


def _split_cell(cell) -> list:
    if isinstance(cell, str):
        return [x.strip() for x in cell.split(";") if x.strip()]
    if isinstance(cell, (list, tuple)):
        return [str(x).strip() for x in cell]
    return [] if cell is None else [str(cell)]


def read_labels_file(path) -> list:
    """Examples of a CSV / JSON / JSON Lines labels file, each with its line number."""
    path = Path(path)
    if not path.is_file():
        raise LabelsFileError(f"labels file not found: {path}")
    text = path.read_text(encoding="utf-8-sig")
    errors, rows = [], []  # rows: (line, file, labels)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        reader = csv.DictReader(text.splitlines())
        fields = reader.fieldnames or []
        file_col = next((c for c in ("file", "filename") if c in fields), None)
        label_col = next((c for c in ("label", "labels") if c in fields), None)
        if file_col is None or label_col is None:
            raise LabelsFileError(f"{path}:1: the header must name a 'file' and a 'label' column, got {fields}")
        for row in reader:
            rows.append((reader.line_num, row.get(file_col), _split_cell(row.get(label_col))))
    elif suffix == ".jsonl":
        for i, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    errors.append(f"{path}:{i}: not valid JSON ({e.msg})")
                    continue
                rows.append(_json_row(obj, i, path, errors))
    elif suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise LabelsFileError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from e
        entries = ([{"file": k, "labels": v} for k, v in data.items()] if isinstance(data, dict)
                   else data if isinstance(data, list) else None)
        if entries is None:
            raise LabelsFileError(f"{path}:1: expected a list of {{file, label}} objects or a {{file: labels}} dict")
        cursor = 0
        for obj in entries:
            line, cursor = _line_of(text, obj.get("file") if isinstance(obj, dict) else None, cursor)
            rows.append(_json_row(obj, line, path, errors))
    else:
        raise LabelsFileError(f"{path}: unknown labels format {suffix!r}; use .csv, .json or .jsonl")
    examples = []
    for line, file, labels in rows:
        if line is None:
            continue
        if not file:
            errors.append(f"{path}:{line}: no audio file named")
        elif not labels:
            errors.append(f"{path}:{line}: no label for {file}")
        else:
            f = Path(file)
            examples.append(Example(f if f.is_absolute() else path.parent / f, tuple(labels), line))
    if not examples and not errors:
        errors.append(f"{path}: no examples")
    _raise(errors)
    return examples


def _json_row(obj, line, path, errors):
    if not isinstance(obj, dict) or "file" not in obj or not ({"label", "labels"} & set(obj)):
        errors.append(f"{path}:{line}: expected an object with 'file' and 'label' or 'labels'")
        return None, None, None
    return line, str(obj["file"]), _split_cell(obj.get("labels", obj.get("label")))


def _line_of(text: str, file, cursor: int) -> tuple:
    """Line number of the next occurrence of ``file`` (as a JSON string) at or after ``cursor``."""
    if file is None:
        return text.count("\n", 0, cursor) + 1, cursor
    pos = text.find(json.dumps(str(file))[1:-1], cursor)
    if pos < 0:
        return text.count("\n", 0, cursor) + 1, cursor
    return text.count("\n", 0, pos) + 1, pos + 1


def _raise(errors: list) -> None:
    if errors:
        more = f"\n... and {len(errors) - MAX_REPORTED} more" if len(errors) > MAX_REPORTED else ""
        raise LabelsFileError("\n".join(errors[:MAX_REPORTED]) + more)


def read_vocabulary(path) -> list:
    """One label per line, or HEAR's labelvocabulary.csv (idx,label with a header)."""
    path = Path(path)
    if not path.is_file():
        raise LabelsFileError(f"label vocabulary not found: {path}")
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8-sig").splitlines() if ln.strip()]
    if path.suffix.lower() == ".csv":
        rows = list(csv.reader(lines))
        if rows and rows[0][-1].lower() == "label":
            rows = rows[1:]
        lines = [r[-1] for r in rows]
    if len(set(lines)) != len(lines):
        raise LabelsFileError(f"{path}: duplicate labels in the vocabulary")
    return lines


def check_labels(examples: list, vocabulary: list, source, multiclass: bool) -> None:
    """Unknown labels, several labels for a multiclass task, missing audio: all reported with their line."""
    known = set(vocabulary)
    errors = []
    for ex in examples:
        unknown = [x for x in ex.labels if x not in known]
        if unknown:
            errors.append(f"{source}:{ex.line}: unknown label {', '.join(map(repr, unknown))} "
                          f"(not in the vocabulary of {len(vocabulary)} labels)")
        if multiclass and len(ex.labels) != 1:
            errors.append(f"{source}:{ex.line}: {len(ex.labels)} labels in a multiclass task")
        if not ex.file.is_file():
            errors.append(f"{source}:{ex.line}: audio file not found: {ex.file}")
    _raise(errors)


def load_clip(path: Path, clip_samples: int) -> tuple:
    """(wav [clip_samples] float32 at 24 kHz, mono, zero-padded; valid samples)."""
    wav, _ = read_audio(path, codec_lib.SAMPLE_RATE)
    n = min(len(wav), clip_samples)
    out = torch.zeros(clip_samples)
    out[:n] = wav[:n]
    return out, n


@torch.no_grad()
def encode_examples(model: af.AudioFormer, examples: list, clip_seconds: float, source, batch_size: int = 16) -> tuple:
    """Codes [N, Q, T] int16 and valid frames [N] for every example (the frozen codec, once)."""
    clip = int(round(clip_seconds * codec_lib.SAMPLE_RATE))
    codes, frames, errors = [], [], []
    wavs = []

    def flush():
        if wavs:
            codes.append(model.encode_codes(torch.stack(wavs)).to(torch.int16))
            wavs.clear()

    for ex in examples:
        try:
            wav, n = load_clip(ex.file, clip)
        except Exception as e:  # unreadable or empty audio
            errors.append(f"{source}:{ex.line}: cannot read audio {ex.file} ({type(e).__name__}: {e})")
            continue
        wavs.append(wav)
        frames.append(codec_lib.num_frames(n))
        if len(wavs) == batch_size:
            flush()
    _raise(errors)
    flush()
    return torch.cat(codes), torch.tensor(frames)


def targets_for(examples: list, vocabulary: list, multilabel: bool) -> torch.Tensor:
    index = {label: i for i, label in enumerate(vocabulary)}
    if not multilabel:
        return torch.tensor([index[ex.labels[0]] for ex in examples])
    y = torch.zeros(len(examples), len(vocabulary))
    for i, ex in enumerate(examples):
        y[i, [index[x] for x in ex.labels]] = 1.0
    return y


# ---------------------------------------------------------------- metrics

def mean_average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
    """Macro mAP over the classes that have at least one positive (as HEAR's and AudioSet's)."""
    from sklearn.metrics import average_precision_score

    keep = targets.sum(axis=0) > 0
    if not keep.any():
        return float("nan")
    return float(average_precision_score(targets[:, keep], scores[:, keep], average="macro"))


def accuracy(scores: np.ndarray, targets: np.ndarray) -> float:
    return float((scores.argmax(axis=1) == targets).mean())


def score(scores: torch.Tensor, targets: torch.Tensor, multilabel: bool) -> float:
    s, t = scores.float().cpu().numpy(), targets.cpu().numpy()
    return mean_average_precision(s, t) if multilabel else accuracy(s, t)


# ---------------------------------------------------------------- the LightningModule

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


# ---------------------------------------------------------------- model set-up

def prepare_model(args, num_classes: int) -> af.AudioFormer:
    """The starting AudioFormer (``--init`` checkpoint or a fresh ``--preset``) with a new classifier."""
    if args.init:
        start = load_checkpoint(args.init)
        if start.family != "audioformer":
            raise UserError(f"--init {args.init}: a {start.family} checkpoint, expected an AudioFormer one")
        config = af.AudioFormerConfig.from_dict(start.config.to_dict())
        codec, state = start.codec, start.state_dict()
    else:
        config = af.preset(args.preset, codec_weights=args.codec)
        codec = (codec_lib.load_codec("pretrained", path=args.codec_path) if args.codec == "pretrained"
                 else codec_lib.load_codec("offline"))
        state = None
    config.num_classes = num_classes
    if args.mode == "ft2":
        config.embedding = "anchor"  # FT2 classifies from the anchor backbone
    elif args.embedding:
        config.embedding = args.embedding
    model = af.new_model(config, codec, seed=args.seed)
    if state is not None:
        state = {k: v for k, v in state.items() if not k.startswith("classifier.")}  # a new head for this task
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or any(not k.startswith("classifier.") for k in missing):
            raise UserError(f"--init {args.init}: weights do not fit (missing {missing}, unexpected {unexpected})")
    return model


@torch.no_grad()
def evaluate(model: af.AudioFormer, codes, frames, targets, multilabel: bool, batch_size: int = 32) -> float:
    model.eval()
    logits = [model.classify(af.codes_to_tokens(codes[i:i + batch_size].long(), frames[i:i + batch_size]))
              for i in range(0, len(codes), batch_size)]
    return score(torch.cat(logits), targets, multilabel)


# ---------------------------------------------------------------- a generated labelled task

TASK_CLASSES = ("hum", "whistle", "hiss", "clicks")


def task_clip(kind: str, rng: np.random.Generator, seconds: float, sr: int = codec_lib.SAMPLE_RATE) -> np.ndarray:
    """One generated sound of a class, random within the class: hum (harmonic tone, f0 80-200 Hz),
    whistle (sine 1.5-4 kHz), hiss (white noise), clicks (decaying clicks at 4-15 Hz); random
    level 0.1-0.6, onset in the first quarter, a faint noise floor."""
    n = int(seconds * sr)
    t = np.arange(n) / sr
    if kind == "hum":
        f0 = rng.uniform(80, 200)
        x = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6.3)) / k for k in range(1, 6))
    elif kind == "whistle":
        x = np.sin(2 * np.pi * rng.uniform(1500, 4000) * t)
    elif kind == "hiss":
        x = rng.standard_normal(n)
    elif kind == "clicks":
        rate = rng.uniform(4, 15)
        phase = (t * rate) % 1.0
        x = np.exp(-phase * 60.0) * np.sign(np.sin(2 * np.pi * 3000 * t))
    else:
        raise ValueError(kind)
    x = x / (np.abs(x).max() + 1e-9) * rng.uniform(0.1, 0.6)
    x[: int(rng.uniform(0, 0.25) * n)] = 0.0
    return (x + 0.003 * rng.standard_normal(n)).astype(np.float32)


def write_synthetic_task(out_dir, train: int = 48, valid: int = 24, test: int = 0, seconds: float = 1.0,
                         multilabel: bool = False, seed: int = 0) -> dict:
    """Write a labelled task of generated sounds (:data:`TASK_CLASSES`, see :func:`task_clip`).

    multiclass: one sound per clip, classes in turn (balanced). multilabel: the sum of two sounds
    of different classes, labels = both. Returns {"train": csv, "valid": csv[, "test": csv]}.
    """
    import soundfile as sf

    out_dir = Path(out_dir)
    (out_dir / "audio").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = {}
    for split, n in (("train", train), ("valid", valid), ("test", test)):
        if n == 0:
            continue
        rows = []
        for i in range(n):
            labels = [TASK_CLASSES[i % len(TASK_CLASSES)]]
            if multilabel:
                labels.append(TASK_CLASSES[(i + 1 + rng.integers(len(TASK_CLASSES) - 1)) % len(TASK_CLASSES)])
            wav = sum(task_clip(kind, rng, seconds) for kind in labels) / len(labels)
            name = f"audio/{split}-{i:04d}.wav"
            sf.write(str(out_dir / name), wav, codec_lib.SAMPLE_RATE)
            rows.append((name, ";".join(sorted(labels))))
        path = out_dir / f"{split}.csv"
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["file", "label"])
            w.writerows(rows)
        paths[split] = path
    return paths


# ---------------------------------------------------------------- CLI

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m training.audioformer.finetune",
        description="Fine-tune an AudioFormer on labelled audio: FT1 (mean-pool + linear head) or FT2 "
                    "(FT1 on the codebook-1 backbone plus the multi-positive contrastive term against the frozen "
                    "codebook 2..n backbones). Writes OUT/best.hearcodec (best on validation) and OUT/results.json.")
    p.add_argument("--train", required=True, help="training labels: .csv (file,label), .json or .jsonl")
    p.add_argument("--valid", required=True, help="validation labels (chooses the best checkpoint); same formats")
    p.add_argument("--test", default=None, help="optional test labels, scored once with the best checkpoint")
    p.add_argument("--labels", default=None,
                   help="label vocabulary: one label per line or HEAR's labelvocabulary.csv "
                        "(default: the sorted labels of --train)")
    p.add_argument("--task", default="auto", choices=["auto", "multiclass", "multilabel"],
                   help="multiclass (softmax CE, accuracy) or multilabel (BCE, mAP); auto: multilabel if any row of "
                        "--train has more than one label (default: %(default)s)")
    p.add_argument("--mode", default="ft1", choices=["ft1", "ft2"],
                   help="ft1: mean-pool + linear head; ft2: ft1 on the anchor + MPC (default: %(default)s)")
    p.add_argument("--out", default="runs/finetune", help="output folder (default: %(default)s)")
    p.add_argument("--init", default=None,
                   help="AudioFormer hear_codec checkpoint to start from (e.g. runs/pretrain/last.ckpt.hearcodec); "
                        "without it a fresh --preset model is trained from scratch")
    p.add_argument("--preset", default="tiny", choices=sorted(af.PRESETS),
                   help="model size when there is no --init (default: %(default)s)")
    p.add_argument("--codec", default="pretrained", choices=["pretrained", "offline"],
                   help="codec weights when there is no --init; offline = random (demos/tests) (default: %(default)s)")
    p.add_argument("--codec-path", default=None, help="local copy of encodec_24khz-d7cc33bc.th")
    p.add_argument("--embedding", default=None, choices=["anchor", "concat"],
                   help="FT1 only: pool the codebook-1 backbone (anchor) or all backbones side by side (concat) "
                        "(default: what the checkpoint uses, anchor for fresh models)")
    p.add_argument("--clip-seconds", type=cli.positive_float, default=None,
                   help="clips are cut to their first CLIP_SECONDS or zero-padded (padding excluded from pooling) "
                        "(default: the model's chunk length)")
    p.add_argument("--batch-size", type=cli.positive_int, default=16, help="clips per batch (default: %(default)s)")
    p.add_argument("--lr", type=cli.positive_float, default=1e-4,
                   help="AdamW learning rate of the backbone (default: %(default)s)")
    p.add_argument("--head-lr", type=cli.positive_float, default=1e-3,
                   help="AdamW learning rate of the linear head (default: %(default)s)")
    p.add_argument("--weight-decay", type=cli.non_negative_float, default=0.01,
                   help="AdamW weight decay (default: %(default)s)")
    p.add_argument("--alpha", type=cli.closed_fraction, default=0.8,
                   help="FT2: loss = alpha * task + (1 - alpha) * MPC (paper: 0.8) (default: %(default)s)")
    p.add_argument("--temperature", type=cli.positive_float, default=0.05,
                   help="FT2: MPC temperature (paper: 0.05) (default: %(default)s)")
    p.add_argument("--second-stage-step", type=cli.non_negative_int, default=None,
                   help="FT2: from this optimiser step on use --second-alpha/--second-temperature (the paper's "
                        "second stage; it gives no step); 0 = one stage (default: half of --max-steps)")
    p.add_argument("--second-alpha", type=cli.closed_fraction, default=0.97,
                   help="FT2 second stage alpha (paper: 0.97) (default: %(default)s)")
    p.add_argument("--second-temperature", type=cli.positive_float, default=0.03,
                   help="FT2 second stage temperature (paper: 0.03) (default: %(default)s)")
    p.add_argument("--encode-batch-size", type=cli.positive_int, default=16,
                   help="clips per codec call when encoding the data once at start-up (default: %(default)s)")
    engine.add_engine_args(p, max_steps=2000, val_every=200, ckpt_every=200, log_every=10)
    return p


def main(argv=None) -> dict:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    splits = {"train": read_labels_file(args.train), "valid": read_labels_file(args.valid)}
    if args.test:
        splits["test"] = read_labels_file(args.test)
    vocabulary = (read_vocabulary(args.labels) if args.labels
                  else sorted({x for ex in splits["train"] for x in ex.labels}))
    multilabel = (args.task == "multilabel" or
                  (args.task == "auto" and any(len(ex.labels) > 1 for ex in splits["train"])))
    for name, examples in splits.items():
        check_labels(examples, vocabulary, getattr(args, name), multiclass=not multilabel)
    model = prepare_model(args, len(vocabulary))
    clip_seconds = args.clip_seconds or model.config.chunk_seconds
    if codec_lib.num_frames(round(clip_seconds * codec_lib.SAMPLE_RATE)) + 2 > model.config.max_positions:
        raise UserError(f"--clip-seconds {clip_seconds} is longer than the model's {model.config.max_positions} positions")
    data = {}
    for name, examples in splits.items():
        codes, frames = encode_examples(model, examples, clip_seconds, getattr(args, name), args.encode_batch_size)
        data[name] = (codes, frames, targets_for(examples, vocabulary, multilabel))
    metric = "mAP" if multilabel else "accuracy"
    if args.second_stage_step is None:
        args.second_stage_step = args.max_steps // 2
    metadata = dict(stage=f"finetune-{args.mode}", labels=vocabulary, task="multilabel" if multilabel else "multiclass",
                    metric=metric, init=str(args.init) if args.init else None, clip_seconds=clip_seconds)
    module = FineTuner(model, args.mode, multilabel, lr=args.lr, head_lr=args.head_lr,
                       weight_decay=args.weight_decay, alpha=args.alpha, temperature=args.temperature,
                       second_stage_step=args.second_stage_step, second_alpha=args.second_alpha,
                       second_temperature=args.second_temperature, out_dir=out_dir, metadata=metadata)
    gen = torch.Generator().manual_seed(args.seed)
    train_loader = DataLoader(TensorDataset(*data["train"]), batch_size=args.batch_size, shuffle=True, generator=gen,
                              drop_last=len(data["train"][0]) > args.batch_size)
    val_loader = DataLoader(TensorDataset(*data["valid"]), batch_size=max(args.batch_size, 32))
    run = engine.EngineConfig.from_args(args)
    trainer = engine.make_trainer(run, out_dir)
    engine.fit(trainer, module, run, out_dir, train_dataloaders=train_loader, val_dataloaders=val_loader)
    if not (out_dir / BEST).exists():  # no validation ran (e.g. --val-every 0): the last model is the best we have
        save_checkpoint(out_dir / BEST, module.model, dict(metadata, step=int(trainer.global_step)))
    best = load_checkpoint(out_dir / BEST)
    results = dict(mode=args.mode, task=metadata["task"], metric=metric, classes=len(vocabulary),
                   chance=_chance(data["valid"][2], multilabel), best_step=best.metadata.get("step"),
                   checkpoint=str(out_dir / BEST))
    for name in ("valid", "test"):
        if name in data:
            results[f"{name}_{metric}"] = evaluate(best, *data[name], multilabel)
    write_json(out_dir / "results.json", results, indent=2)
    print(json.dumps(results, indent=2))
    return results


def _chance(targets: torch.Tensor, multilabel: bool) -> float:
    """Score of an uninformed model: mAP = mean class prevalence; accuracy = majority-class share."""
    if multilabel:
        prevalence = targets.float().mean(0)
        return float(prevalence[prevalence > 0].mean())
    return float(torch.bincount(targets).max()) / len(targets)


if __name__ == "__main__":
    cli.run(main)
