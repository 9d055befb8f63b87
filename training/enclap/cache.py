"""Feature cache: EnCodec codes and CLAP embeddings computed once per dataset split.

A cache is a folder::

    manifest.json      settings (codec, CLAP, codebooks, shard size) and every clip with its captions
    shard-00000.pt     {"ids": [...], "codes": [[frames, 16] int16, ...], "clap": [clips, 512] float32}
    shard-00001.pt     ...

Shards are written atomically (temporary file + rename) in manifest order, so an interrupted run
resumes at the first missing shard. Training and evaluation read only the cache, never audio.

:class:`AudioFeaturizer` is the one place where audio becomes model input: the cache builder and
``predict`` on raw audio files both use it.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from hear_codec.audio import read_audio, resample
from hear_codec.files import atomic_torch_save
from hear_codec.codec import SAMPLE_RATE as CODEC_RATE
from hear_codec.codec import codebooks_for_bandwidth, load_codec
from hear_codec.files import write_json
from training.enclap.data import CaptionDataError, Clip
from training.enclap.text import PretrainedUnavailable

CLAP_RATE = 48_000
CLAP_DIM = 512
DEFAULT_CLAP = "laion/clap-htsat-fused"
CLAP_CHOICES = ("pretrained", "tiny-random", "none")
CACHE_VERSION = 1


class ClapEmbedder:
    """CLAP audio embeddings [batch, 512], L2-normalised, from 48 kHz audio.

    kind ``pretrained``: transformers' ClapModel ``name`` (default ``laion/clap-htsat-fused``, or a
    local folder); ``tiny-random``: a small random CLAP (tests and demos; deterministic);
    ``none``: zero vectors (the model then learns from codec tokens alone).
    """

    def __init__(self, kind: str = "pretrained", name: str = DEFAULT_CLAP, device="cpu"):
        if kind not in CLAP_CHOICES:
            raise ValueError(f"CLAP must be one of {CLAP_CHOICES}, got {kind!r}")
        self.kind, self.name, self.device = kind, name if kind == "pretrained" else kind, device
        self.model = self.extractor = None
        if kind == "none":
            return
        from transformers import ClapFeatureExtractor, ClapModel

        if kind == "pretrained":
            try:
                self.model = ClapModel.from_pretrained(name)
                self.extractor = ClapFeatureExtractor.from_pretrained(name)
            except Exception as e:
                raise PretrainedUnavailable(
                    f"Could not load CLAP {name!r} ({type(e).__name__}: {e}).\n"
                    f"Download it once with network access (`huggingface-cli download {name}`) or pass a "
                    "local folder; for a demo without network choose --clap tiny-random or --clap none."
                ) from e
        else:
            self.model, self.extractor = tiny_random_clap(), ClapFeatureExtractor()
        self.model.to(device).eval().requires_grad_(False)

    @torch.no_grad()
    def __call__(self, wavs_48k: list[np.ndarray]) -> torch.Tensor:
        if self.model is None:
            return torch.zeros(len(wavs_48k), CLAP_DIM)
        features, longer = [], []
        for wav in wavs_48k:
            # One clip at a time with a fixed numpy seed, so that a clip's embedding does not depend on
            # its batch or on the run: the extractor draws random crops for clips over 10 s, and it
            # flags one random short clip per batch as "longer" (a LAION-CLAP training trick) -- we
            # pass the true flag instead.
            state = np.random.get_state()
            np.random.seed(0)
            try:
                features.append(self.extractor([wav], sampling_rate=CLAP_RATE, return_tensors="pt")["input_features"])
            finally:
                np.random.set_state(state)
            longer.append([len(wav) > self.extractor.nb_max_samples])
        inputs = {"input_features": torch.cat(features), "is_longer": torch.tensor(longer)}
        out = self.model.get_audio_features(**{k: v.to(self.device) for k, v in inputs.items()})
        emb = out if isinstance(out, torch.Tensor) else out.pooler_output  # transformers 4.x returns a tensor
        return F.normalize(emb.float(), dim=-1).cpu()


def tiny_random_clap(seed: int = 0):
    """A 1-stage, 16-wide random CLAP with the real 512-d projection and input format."""
    from transformers import ClapAudioConfig, ClapConfig, ClapModel, ClapTextConfig

    audio = ClapAudioConfig(hidden_size=16, depths=[1], num_attention_heads=[2], patch_embeds_hidden_size=16,
                            projection_dim=CLAP_DIM, projection_hidden_size=64, enable_fusion=True)
    text = ClapTextConfig(vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                          intermediate_size=32, projection_dim=CLAP_DIM, projection_hidden_size=64)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ClapModel(ClapConfig(text_config=text.to_dict(), audio_config=audio.to_dict(), projection_dim=CLAP_DIM))


class AudioFeaturizer:
    """Audio -> (codes [frames, 16] int16, CLAP embedding [512] float32).

    codec: ``pretrained`` (published EnCodec weights) or ``offline`` (random, for tests/demos).
    """

    def __init__(self, codec: str = "pretrained", clap: str = "pretrained", clap_name: str = DEFAULT_CLAP,
                 bandwidth: float = 12.0, device="cpu"):
        self.n_q = codebooks_for_bandwidth(bandwidth)
        self.codec = load_codec(codec).to(device)
        self.clap = ClapEmbedder(clap, clap_name, device)
        self.device = device
        self.settings = {"codec": codec, "clap": self.clap.name, "bandwidth": bandwidth, "codebooks": self.n_q}

    def __call__(self, clips: list[tuple[torch.Tensor, int]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """[(mono samples [n] float32, sample rate), ...] (what :func:`hear_codec.audio.read_audio`
        returns) -> [(codes [frames, n_q] int16, clap [512] float32), ...]."""
        codes = []
        for wav, rate in clips:  # one at a time: padding a batch would change the last frames' codes
            x = resample(wav.to(self.device).unsqueeze(0), rate, CODEC_RATE)
            codes.append(self.codec.encode_codes(x, n_q=self.n_q)[0].T.to(torch.int16).cpu())
        wavs_48k = [resample(w.unsqueeze(0), r, CLAP_RATE)[0].numpy() for w, r in clips]
        clap = self.clap(wavs_48k)
        return list(zip(codes, clap))


def build_cache(clips: list[Clip], out_dir, featurizer: AudioFeaturizer, shard_size: int = 256,
                batch_size: int = 8, progress: bool = True) -> Path:
    """Compute and store features for ``clips`` in ``out_dir``; resumes an interrupted run."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = dict(featurizer.settings, shard_size=shard_size, version=CACHE_VERSION)
    manifest = {
        "settings": settings,
        "clips": [{"id": c.id, "file": str(c.path), "captions": c.captions} for c in clips],
    }
    manifest_path = out_dir / "manifest.json"
    if manifest_path.exists():
        old = json.loads(manifest_path.read_text())
        if old["settings"] != settings or [c["id"] for c in old["clips"]] != [c.id for c in clips]:
            raise CaptionDataError(
                f"{out_dir} already holds a cache made with other settings or clips "
                f"({old['settings']}); use a new folder or delete this one"
            )
    write_json(manifest_path, manifest)
    shards = [clips[i : i + shard_size] for i in range(0, len(clips), shard_size)]
    todo = [i for i in range(len(shards)) if not _shard_path(out_dir, i).exists()]
    done_clips = len(clips) - sum(len(shards[i]) for i in todo)
    with tqdm(total=len(clips), initial=done_clips, desc="features", unit="clip", disable=not progress) as bar:
        for i in todo:
            ids, codes, clap = [], [], []
            for j in range(0, len(shards[i]), batch_size):
                chunk = shards[i][j : j + batch_size]
                for clip, (c, e) in zip(chunk, featurizer([read_audio(c.path) for c in chunk])):
                    ids.append(clip.id)
                    codes.append(c)
                    clap.append(e)
                bar.update(len(chunk))
            atomic_torch_save({"ids": ids, "codes": codes, "clap": torch.stack(clap)}, _shard_path(out_dir, i))
    return out_dir


def _shard_path(out_dir: Path, i: int) -> Path:
    return out_dir / f"shard-{i:05d}.pt"


class FeatureCache:
    """A finished cache, loaded into memory: ``clips`` (with captions), ``features`` id -> (codes, clap)."""

    def __init__(self, path):
        self.path = Path(path)
        manifest_path = self.path / "manifest.json"
        if not manifest_path.is_file():
            raise FileNotFoundError(f"{self.path} is not a feature cache (no manifest.json); run `preprocess` first")
        manifest = json.loads(manifest_path.read_text())
        self.settings = manifest["settings"]
        self.clips = [Clip(c["id"], Path(c["file"]), list(c["captions"])) for c in manifest["clips"]]
        n_shards = -(-len(self.clips) // self.settings["shard_size"])
        missing = [i for i in range(n_shards) if not _shard_path(self.path, i).exists()]
        if missing:
            raise CaptionDataError(
                f"feature cache {self.path} is incomplete ({len(missing)} of {n_shards} shards missing); "
                "rerun the same `preprocess` command to finish it"
            )
        self.features: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for i in range(n_shards):
            shard = torch.load(_shard_path(self.path, i), weights_only=True)
            for clip_id, codes, clap in zip(shard["ids"], shard["codes"], shard["clap"]):
                self.features[clip_id] = (codes, clap)
