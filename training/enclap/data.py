"""Captioning datasets: CSV readers (Clotho, AudioCaps, generic), training/eval items, batch layout.

Readers return :class:`Clip` lists (audio path + every reference caption). The feature cache
(:mod:`training.enclap.cache`) stores them together with codec codes and CLAP embeddings, and
training and evaluation read only the cache:

* :class:`CaptionPairs` -- training: one item per (clip, caption), so every caption is used;
* :class:`ClipReferences` -- evaluation: one item per clip with all its references.

:class:`EnClapCollator` builds the encoder batch in the official EnCLAP layout (see
:mod:`training.enclap.model`) and, for training, crops clips longer than the model's positions at
a random start and draws the MCM span masks. Both draws come from each item's ``seed`` (which
:class:`CaptionPairs` takes from :class:`training.data.sampler.StepSampler`), so they are a function of
(run seed, global sample index): fresh every time a pair is drawn, and repeated exactly by a
resumed run.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import torch

from hear_codec.audio import AUDIO_EXTENSIONS
from hear_codec.errors import UserError
from training.data.sampler import mix_seed
from training.enclap.model import IGNORE_INDEX, EnClapBartConfig

DATASET_KINDS = ("clotho", "audiocaps", "csv")


class CaptionDataError(UserError, ValueError):
    """A captions CSV, audio file or feature cache that cannot be used; the message names the file."""


@dataclass
class Clip:
    """One audio file and its reference captions."""

    id: str
    path: Path
    captions: list[str] = field(default_factory=list)


def read_dataset(kind: str, csv_path, audio_dir) -> list[Clip]:
    """Clips of one split. kind: ``clotho`` | ``audiocaps`` | ``csv`` (columns ``file,caption``)."""
    readers = {"clotho": read_clotho, "audiocaps": read_audiocaps, "csv": read_caption_csv}
    if kind not in readers:
        raise ValueError(f"unknown dataset kind {kind!r}; choose one of {DATASET_KINDS}")
    return readers[kind](csv_path, audio_dir)


def _read_rows(csv_path, required: list[str]) -> list[dict]:
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"caption CSV not found: {csv_path}")
    # utf-8-sig: Clotho's CSVs are sometimes saved with a byte-order mark
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in required if c not in columns]
        if missing:
            raise CaptionDataError(f"{csv_path}: missing column(s) {missing}; found {columns}")
        rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k is not None} for row in reader]
    if not rows:
        raise CaptionDataError(f"{csv_path}: no rows")
    return rows


def _check_files(clips: list[Clip], csv_path) -> list[Clip]:
    missing = [str(c.path) for c in clips if not c.path.is_file()]
    if missing:
        shown = "\n  ".join(missing[:5])
        raise FileNotFoundError(f"{len(missing)} audio file(s) listed in {csv_path} do not exist, e.g.\n  {shown}")
    empty = [c.id for c in clips if not c.captions]
    if empty:
        raise CaptionDataError(f"{csv_path}: {len(empty)} clip(s) have no caption, e.g. {empty[:5]}")
    return clips


def read_clotho(csv_path, audio_dir) -> list[Clip]:
    """Clotho ``clotho_captions_<split>.csv``: ``file_name, caption_1 .. caption_5``."""
    columns = ["file_name"] + [f"caption_{i}" for i in range(1, 6)]
    rows = _read_rows(csv_path, columns)
    clips = [
        Clip(r["file_name"], Path(audio_dir) / r["file_name"], [r[c] for c in columns[1:] if r[c]]) for r in rows
    ]
    return _check_files(clips, csv_path)


def read_audiocaps(csv_path, audio_dir) -> list[Clip]:
    """AudioCaps ``train.csv``/``val.csv``/``test.csv``: ``audiocap_id, youtube_id, start_time, caption``.

    One row per caption; rows of the same ``youtube_id`` form one clip. Downloaders name the audio
    files differently, so ``<id>``, ``Y<id>`` and ``<id>_<start_time>`` (any audio extension) are
    all accepted.
    """
    rows = _read_rows(csv_path, ["youtube_id", "start_time", "caption"])
    audio_dir = Path(audio_dir)
    if not audio_dir.is_dir():
        raise FileNotFoundError(f"audio directory not found: {audio_dir}")
    by_stem = {p.stem: p for p in audio_dir.iterdir() if p.suffix.lower() in AUDIO_EXTENSIONS}
    clips: dict[str, Clip] = {}
    for r in rows:
        yid = r["youtube_id"]
        if yid not in clips:
            start = r["start_time"].split(".")[0]
            names = (yid, "Y" + yid, f"{yid}_{start}", f"Y{yid}_{start}")
            path = next((by_stem[n] for n in names if n in by_stem), audio_dir / f"{yid}.wav")
            clips[yid] = Clip(yid, path)
        if r["caption"]:
            clips[yid].captions.append(r["caption"])
    return _check_files(list(clips.values()), csv_path)


def read_caption_csv(csv_path, audio_dir) -> list[Clip]:
    """Generic ``file,caption`` CSV (paths relative to ``audio_dir``); repeated files collect captions."""
    rows = _read_rows(csv_path, ["file", "caption"])
    clips: dict[str, Clip] = {}
    for r in rows:
        clip = clips.setdefault(r["file"], Clip(r["file"], Path(audio_dir) / r["file"]))
        if r["caption"]:
            clip.captions.append(r["caption"])
    return _check_files(list(clips.values()), csv_path)


class CaptionPairs(torch.utils.data.Dataset):
    """Training items: one per (clip, caption). ``features``: id -> (codes [frames, 16], clap [512]).

    Indexed by ``(pair_index, draw_seed)`` (what :class:`training.data.sampler.StepSampler` yields) the item
    carries ``seed`` = draw_seed, from which the collator draws its crop and MCM masks; with
    ``fixed_draws`` the seed is a function of (``seed``, pair index) instead, so every epoch sees
    the same crop and masks of a pair, as the official preprocessing (run once, cached) gives.
    A plain int index gives an item without a seed.
    """

    def __init__(self, clips: list[Clip], features: dict, fixed_draws: bool = False, seed: int = 0):
        self.items = [(clip.id, caption) for clip in clips for caption in clip.captions]
        self.features = features
        self.fixed_draws, self.seed = fixed_draws, seed

    def __len__(self):
        return len(self.items)

    def __getitem__(self, key):
        i, draw_seed = key if isinstance(key, (tuple, list)) else (key, None)
        clip_id, caption = self.items[i]
        codes, clap = self.features[clip_id]
        item = {"id": clip_id, "codes": codes, "clap": clap, "caption": caption}
        if draw_seed is not None:
            item["seed"] = mix_seed(self.seed, i, 5) if self.fixed_draws else int(draw_seed)
        return item


class ClipReferences(torch.utils.data.Dataset):
    """Evaluation items: one per clip, with all its reference captions."""

    def __init__(self, clips: list[Clip], features: dict):
        self.clips = clips
        self.features = features

    def __len__(self):
        return len(self.clips)

    def __getitem__(self, i):
        clip = self.clips[i]
        codes, clap = self.features[clip.id]
        return {"id": clip.id, "codes": codes, "clap": clap, "references": list(clip.captions)}


def span_mask(frames: int, num_codebooks: int, prob: float, span: int, generator=None) -> torch.Tensor:
    """MCM span masks of one clip, drawn as the official EnCLAP preprocessing does: [frames, num_codebooks] bool.

    One u ~ U[0, 1) per clip gives every codebook ``n = floor(prob * frames / span + u)`` spans
    (``prob * frames / span`` on average), capped so that the spans fit (``n * span <= frames``,
    ``n <= frames - span + 1``); each codebook then draws its own ``n`` distinct starts, so the
    codebooks share the span count but not the positions. Overlaps make the masked share a little
    below ``prob``. A clip shorter than ``span`` frames uses spans of its length (the official
    code raises an error there).
    """
    mask = torch.zeros(num_codebooks, frames, dtype=torch.bool)
    width = min(span, frames)
    if width == 0:
        return mask.T
    starts_available = frames - width + 1
    n = int(prob * frames / width + torch.rand((), generator=generator).item())
    n = min(n, frames // width, starts_available)
    if n > 0:
        offsets = torch.arange(width)
        for k in range(num_codebooks):
            starts = torch.randperm(starts_available, generator=generator)[:n]
            mask[k, (starts[:, None] + offsets).flatten()] = True
    return mask.T


class EnClapCollator:
    """Items -> padded model batch in the official EnCLAP layout.

    Output (L = longest frames + 3, S = longest caption + 2):
      input_ids [batch, L, 16], encodec_mask [batch, L], attention_mask [batch, L],
      clap_embedding [batch, 512], and with captions ``labels`` [batch, S] (-100 padded);
      when ``mask_prob > 0`` also ``mcm_labels`` [batch, L, 16] (masked entries keep their code,
      -100 elsewhere) with those entries replaced by the pad id in ``input_ids``;
      ``ids`` (clip ids) and, for evaluation items, ``references``.
    Clips longer than ``max_position_embeddings - 3`` frames (1021 for BART, 13.6 s) keep a window
    of that many frames (BART has no more positions): at a random start with ``random_crop``
    (training, as the official preprocessing does), else the first frames (evaluation, as
    officially). The crop start and the masks are drawn from a generator seeded with the item's
    ``seed`` when it has one (training items from :class:`CaptionPairs`), from torch's global
    generator otherwise.
    """

    def __init__(self, config: EnClapBartConfig, tokenizer=None, mask_prob: float = 0.0, mask_span: int = 10,
                 max_caption_tokens: int = 64, random_crop: bool = False):
        self.config = config
        self.tokenizer = tokenizer
        self.mask_prob = mask_prob
        self.mask_span = mask_span
        self.max_caption_tokens = max_caption_tokens
        self.max_frames = config.max_position_embeddings - 3
        self.random_crop = random_crop

    def window(self, codes: torch.Tensor, generator=None) -> torch.Tensor:
        """The [<= max_frames, 16] frames of a clip the model sees (see the class docstring)."""
        excess = codes.shape[0] - self.max_frames
        start = int(torch.randint(excess + 1, (), generator=generator)) if self.random_crop and excess > 0 else 0
        return codes[start : start + self.max_frames]

    def __call__(self, items: list[dict]) -> dict:
        cfg = self.config
        generators = [torch.Generator().manual_seed(int(it["seed"])) if "seed" in it else None for it in items]
        codes = []
        for it, gen in zip(items, generators):
            c = torch.as_tensor(it["codes"], dtype=torch.long)
            if c.ndim != 2 or c.shape[1] != cfg.num_rvq or c.shape[0] == 0:
                raise ValueError(f"clip {it['id']}: codes must be [frames>0, {cfg.num_rvq}], got {tuple(c.shape)}")
            codes.append(self.window(c, gen))
        lengths = [c.shape[0] for c in codes]
        batch, rows = len(items), max(lengths) + 3
        input_ids = torch.full((batch, rows, cfg.num_rvq), cfg.encodec_pad_token_id, dtype=torch.long)
        # Padding rows count as codec rows (all pad ids, zero embedding), as in the official collator.
        encodec_mask = torch.ones(batch, rows, dtype=torch.long)
        attention_mask = torch.zeros(batch, rows, dtype=torch.long)
        for b, (c, t) in enumerate(zip(codes, lengths)):
            input_ids[b, :2] = cfg.bos_token_id  # CLAP slot (overwritten in the encoder) and <s>
            input_ids[b, 2 : t + 2] = c
            input_ids[b, t + 2] = cfg.eos_token_id
            encodec_mask[b, [0, 1, t + 2]] = 0
            attention_mask[b, : t + 3] = 1
        out = {
            "ids": [it["id"] for it in items],
            "input_ids": input_ids,
            "encodec_mask": encodec_mask,
            "attention_mask": attention_mask,
            "clap_embedding": torch.stack([torch.as_tensor(it["clap"], dtype=torch.float32) for it in items]),
        }
        if self.mask_prob > 0:
            mask = torch.zeros(batch, rows, cfg.num_rvq, dtype=torch.bool)
            for b, (t, gen) in enumerate(zip(lengths, generators)):
                mask[b, 2 : 2 + t] = span_mask(t, cfg.num_rvq, self.mask_prob, self.mask_span, gen)
            out["mcm_labels"] = torch.where(mask, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
            out["input_ids"] = input_ids.masked_fill(mask, cfg.encodec_pad_token_id)
        if "caption" in items[0]:
            out["labels"] = self.encode_captions([it["caption"] for it in items])
        if "references" in items[0]:
            out["references"] = [it["references"] for it in items]
        return out

    def encode_captions(self, captions: list[str]) -> torch.Tensor:
        """Captions -> [batch, S] ids ``<s> ... </s>`` right-padded with -100."""
        ids = self.tokenizer(list(captions), truncation=True, max_length=self.max_caption_tokens)["input_ids"]
        labels = torch.full((len(ids), max(map(len, ids))), IGNORE_INDEX, dtype=torch.long)
        for b, seq in enumerate(ids):
            labels[b, : len(seq)] = torch.tensor(seq)
        return labels
