"""AudioFormer (Li et al., arXiv 2308.07221): RoFormer masked-LMs over EnCodec codes.

    wav [B, S] @ 24 kHz
      -> frozen EnCodec encoder + RVQ (part of the model)        codes [B, n_q, T] (75 Hz)
      -> one token sequence per codebook  [BOA] c_1 .. c_T [EOA]  tokens [B, n_q, T + 2]
      -> RoFormer backbone (rotary positions), one per codebook, or one shared
                                                                 hidden [B, n_q, T + 2, D]
      -> per-codebook MLM heads (pretraining)                    logits [B, n_q, T + 2, 1024]
      -> mean over frames + linear classifier (fine-tuning)      logits [B, classes]

The authors released no code; every choice the paper leaves open is listed with its reason in
docs/audioformer.md ("Design choices"). The codec is a submodule so that a checkpoint is
self-contained: HEAR needs codes at inference. Embeddings for HEAR come from
:meth:`AudioFormer.embed_layers`: the per-frame hidden states of the codebook-1 ("anchor")
backbone (or, with ``embedding="concat"``, of all backbones side by side), BOA/EOA dropped.
"""
from __future__ import annotations

import contextlib
import copy
from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from . import codec as codec_lib

# Token layout of one codebook's sequence: ids 0..1023 are codes, then four special tokens.
CODEBOOK_SIZE = codec_lib.CODEBOOK_SIZE
PAD = CODEBOOK_SIZE  # after EOA in clips shorter than the batch's longest
BOA = CODEBOOK_SIZE + 1  # begin of audio
EOA = CODEBOOK_SIZE + 2  # end of audio
MASK = CODEBOOK_SIZE + 3  # MLM mask
NUM_SPECIAL = 4
VOCAB_SIZE = CODEBOOK_SIZE + NUM_SPECIAL


@dataclass
class AudioFormerConfig:
    num_codebooks: int = 4  # EnCodec codebooks modelled (4 = 3 kbps), as in the paper
    shared_backbone: bool = False  # False: one RoFormer per codebook (the paper); True: one for all
    dim: int = 768
    num_layers: int = 12
    num_heads: int = 12
    ff_dim: int = 3072
    dropout: float = 0.1
    max_positions: int = 1024  # tokens per sequence, BOA/EOA included (rotary table size)
    chunk_seconds: float = 10.0  # training crop length; HEAR embeds long audio in chunks of this size
    mask_prob: float = 0.25  # MLM: share of code tokens chosen per sequence
    embedding: str = "anchor"  # HEAR / FT1 embedding: "anchor" (codebook-1 backbone) or "concat"
    num_classes: int = 0  # > 0 after fine-tuning: a linear classifier over the pooled embedding
    codec_weights: str = "pretrained"  # where the codec came from: "pretrained" or "offline"

    def __post_init__(self):
        if not 1 <= self.num_codebooks <= 32:
            raise ValueError(f"num_codebooks must be in 1..32, got {self.num_codebooks}")
        if self.embedding not in ("anchor", "concat"):
            raise ValueError(f"embedding must be 'anchor' or 'concat', got {self.embedding!r}")
        if self.dim % self.num_heads:
            raise ValueError(f"dim {self.dim} is not divisible by num_heads {self.num_heads}")
        if not 0.0 < self.mask_prob < 1.0:
            raise ValueError(f"mask_prob must be in (0, 1), got {self.mask_prob}")
        needed = codec_lib.num_frames(round(self.chunk_seconds * codec_lib.SAMPLE_RATE)) + 2
        if needed > self.max_positions:
            raise ValueError(f"chunk_seconds={self.chunk_seconds} gives {needed} tokens per sequence, "
                             f"more than max_positions={self.max_positions}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "AudioFormerConfig":
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown AudioFormer config keys: {sorted(unknown)}")
        return cls(**d)


# Named presets. "base" is RoFormer-base (= BERT-base) sizes; the paper names RoFormer but gives
# no sizes. "tiny" is for tests and the built-in demo.
PRESETS = {
    "tiny": dict(dim=64, num_layers=2, num_heads=4, ff_dim=256, dropout=0.0, chunk_seconds=4.0),
    "small": dict(dim=384, num_layers=6, num_heads=6, ff_dim=1536),
    "base": dict(dim=768, num_layers=12, num_heads=12, ff_dim=3072),
}


def preset(name: str, **overrides) -> AudioFormerConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown AudioFormer preset {name!r}; choose one of {sorted(PRESETS)}")
    return AudioFormerConfig(**{**PRESETS[name], **overrides})


# ---- token layout ----
def codes_to_tokens(codes: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """[B, n_q, T] codes -> [B, n_q, T + 2] tokens ``[BOA] c_1 .. c_L [EOA] [PAD] ..``.

    lengths [B]: valid frames per clip (default: all T). Codes beyond a clip's length are
    replaced by EOA then PAD, so position t + 1 always holds frame t.
    """
    if codes.ndim != 3:
        raise ValueError(f"codes must be [batch, codebooks, frames], got {tuple(codes.shape)}")
    if codes.numel() and (codes.min() < 0 or codes.max() >= CODEBOOK_SIZE):
        raise ValueError(f"codes must be in [0, {CODEBOOK_SIZE}), got range [{int(codes.min())}, {int(codes.max())}]")
    b, q, t = codes.shape
    tokens = torch.full((b, q, t + 2), PAD, dtype=torch.long, device=codes.device)
    tokens[:, :, 0] = BOA
    if lengths is None:
        tokens[:, :, 1:t + 1] = codes
        tokens[:, :, t + 1] = EOA
        return tokens
    lengths = lengths.to(codes.device).long()
    pos = torch.arange(t, device=codes.device)
    valid = (pos[None, :] < lengths[:, None])[:, None, :]  # [B, 1, T]
    tokens[:, :, 1:t + 1] = torch.where(valid, codes.long(), torch.full_like(codes.long(), PAD))
    tokens.scatter_(2, (lengths + 1).view(b, 1, 1).expand(b, q, 1), EOA)
    return tokens


def token_padding_mask(tokens: torch.Tensor) -> torch.Tensor:
    """True where a token is PAD: [..., L] -> [..., L] bool."""
    return tokens == PAD


def is_code(tokens: torch.Tensor) -> torch.Tensor:
    """True where a token is a codec code (not BOA/EOA/PAD/MASK)."""
    return tokens < CODEBOOK_SIZE


class MLMHead(nn.Sequential):
    """BERT's prediction head: Linear -> GELU -> LayerNorm -> Linear(D, 1024) over the codes only."""

    def __init__(self, dim: int):
        super().__init__(nn.Linear(dim, dim), nn.GELU(), nn.LayerNorm(dim), nn.Linear(dim, CODEBOOK_SIZE))


def _roformer(config: AudioFormerConfig, vocab: int, pad_id: int, type_vocab: int) -> nn.Module:
    try:
        from transformers import RoFormerConfig, RoFormerModel
    except ImportError as e:
        raise ImportError("AudioFormer needs the `transformers` package (RoFormer): pip install 'transformers>=4.40'") from e

    return RoFormerModel(RoFormerConfig(
        vocab_size=vocab, embedding_size=config.dim, hidden_size=config.dim,
        num_hidden_layers=config.num_layers, num_attention_heads=config.num_heads,
        intermediate_size=config.ff_dim, hidden_act="gelu", hidden_dropout_prob=config.dropout,
        attention_probs_dropout_prob=config.dropout, max_position_embeddings=config.max_positions,
        type_vocab_size=type_vocab, pad_token_id=pad_id, rotary_value=False, use_cache=False,
    ))


class AudioFormer(nn.Module):
    family = "audioformer"
    sample_rate = codec_lib.SAMPLE_RATE

    def __init__(self, config: AudioFormerConfig, codec: codec_lib.Codec):
        """``codec``: the frozen EnCodec front end (``load_codec(...)`` or ``build_codec_skeleton()``)."""
        super().__init__()
        self.config = config
        q = config.num_codebooks
        self.codec = _first_codebooks(codec, q)
        if config.shared_backbone:
            # One vocabulary for all codebooks (code c of codebook k has id k * 1024 + c; the
            # special tokens follow) and a token-type embedding per codebook.
            self.backbones = nn.ModuleList([_roformer(config, q * CODEBOOK_SIZE + NUM_SPECIAL,
                                                      q * CODEBOOK_SIZE, q)])
        else:
            self.backbones = nn.ModuleList(_roformer(config, VOCAB_SIZE, PAD, 1) for _ in range(q))
        self.mlm_heads = nn.ModuleList(MLMHead(config.dim) for _ in range(q))
        self.classifier = nn.Linear(self.embedding_dim, config.num_classes) if config.num_classes else None

    # ---- framing (used by the HEAR wrapper and by training) ----
    frame_hop = codec_lib.HOP_LENGTH  # 320 samples at 24 kHz
    frame_window = codec_lib.HOP_LENGTH  # frame k covers [320 k, 320 (k + 1))
    min_samples = 1  # EnCodec pads the last hop

    @staticmethod
    def num_frames(num_samples: int) -> int:
        return codec_lib.num_frames(num_samples)

    @property
    def chunk_samples(self) -> int:
        return int(round(self.config.chunk_seconds * self.sample_rate))

    @property
    def embedding_codebooks(self) -> list:
        return [0] if self.config.embedding == "anchor" else list(range(self.config.num_codebooks))

    @property
    def embedding_dim(self) -> int:
        return self.config.dim * len(self.embedding_codebooks)

    @property
    def num_embedding_layers(self) -> int:
        return self.config.num_layers

    # ---- forward paths ----
    def encode_codes(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [B, S] at 24 kHz -> codes [B, n_q, ceil(S / 320)] int64 (frozen codec, no grad).

        Always in fp32, outside any autocast: bf16 encoder features would change the tokens."""
        with torch.autocast(wav.device.type, enabled=False):
            return self.codec.encode_codes(wav.float(), self.config.num_codebooks)

    def backbone_states(self, tokens: torch.Tensor, codebook: int, all_layers: bool = False,
                        num_layers: int | None = None):
        """Run codebook ``codebook``'s backbone on its sequences.

        tokens [B, L] (layout of :func:`codes_to_tokens`, MASK allowed) -> last hidden state
        [B, L, D], or with ``all_layers`` the list of the layer outputs. num_layers: run only the
        first this many layers (default: all; the later ones are not computed).
        """
        q = self.config.num_codebooks
        attention_mask = (tokens != PAD).long()
        if self.config.shared_backbone:
            backbone = self.backbones[0]
            ids = torch.where(tokens < CODEBOOK_SIZE, tokens + codebook * CODEBOOK_SIZE,
                              tokens - CODEBOOK_SIZE + q * CODEBOOK_SIZE)
            types = torch.full_like(tokens, codebook)
        else:
            backbone, ids, types = self.backbones[codebook], tokens, None
        if tokens.shape[-1] > self.config.max_positions:
            raise ValueError(f"{tokens.shape[-1]} tokens per sequence exceed max_positions="
                             f"{self.config.max_positions}; embed long audio in chunks")
        with _first_layers(backbone, num_layers):
            out = backbone(input_ids=ids, attention_mask=attention_mask, token_type_ids=types,
                           output_hidden_states=all_layers, return_dict=True)
        return list(out.hidden_states[1:]) if all_layers else out.last_hidden_state

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> dict:
        """MLM forward over every codebook. tokens [B, n_q, L] ->

        ``hidden`` [B, n_q, L, D] and ``logits``: [B, n_q, L, 1024] when ``mask`` is None, else
        (mask [B, n_q, L] bool) a list of n_q tensors [n_c, 1024] for codebook c's masked
        positions in row-major order (the head then runs on the masked quarter only).
        """
        hidden = [self.backbone_states(tokens[:, c], c) for c in range(self.config.num_codebooks)]
        if mask is None:
            logits = torch.stack([head(h) for head, h in zip(self.mlm_heads, hidden)], 1)
        else:
            logits = [head(h[mask[:, c]]) for c, (head, h) in enumerate(zip(self.mlm_heads, hidden))]
        return dict(logits=logits, hidden=torch.stack(hidden, 1))

    def pooled(self, tokens: torch.Tensor, codebook: int) -> torch.Tensor:
        """Mean over a clip's code positions of one backbone's last layer: tokens [B, n_q, L] -> [B, D]."""
        hidden = self.backbone_states(tokens[:, codebook], codebook)
        weight = is_code(tokens[:, codebook]).unsqueeze(-1).to(hidden.dtype)
        return (hidden * weight).sum(1) / weight.sum(1).clamp(min=1)

    def clip_embedding(self, tokens: torch.Tensor) -> torch.Tensor:
        """The FT1 / scene embedding before the classifier: [B, n_q, L] -> [B, embedding_dim]."""
        return torch.cat([self.pooled(tokens, c) for c in self.embedding_codebooks], dim=-1)

    def classify(self, tokens: torch.Tensor) -> torch.Tensor:
        """Fine-tuned classifier logits: tokens [B, n_q, L] -> [B, num_classes]."""
        if self.classifier is None:
            raise RuntimeError("this AudioFormer has no classifier (num_classes = 0); fine-tune it first")
        return self.classifier(self.clip_embedding(tokens))

    def embed_layers(self, wav: torch.Tensor, padding_mask: torch.Tensor | None = None,
                     num_layers: int | None = None) -> list:
        """Per-layer frame embeddings for HEAR, no masking.

        wav [B, S] at 24 kHz; padding_mask [B, T] bool (True = frame beyond the clip); num_layers:
        run only the first this many layers (default: all), e.g. ``layer + 1`` for one layer.
        Returns num_layers tensors [B, T, embedding_dim], T = ceil(S / 320): frame t is token
        position t + 1 (BOA and EOA dropped).
        """
        num_layers = self.config.num_layers if num_layers is None else num_layers
        if not 1 <= num_layers <= self.config.num_layers:
            raise ValueError(f"num_layers must be in [1, {self.config.num_layers}], got {num_layers}")
        codes = self.encode_codes(wav)
        t = codes.shape[-1]
        lengths = None if padding_mask is None else (~padding_mask).sum(1)
        tokens = codes_to_tokens(codes, lengths)
        per_codebook = [self.backbone_states(tokens[:, c], c, all_layers=True, num_layers=num_layers)
                        for c in self.embedding_codebooks]
        return [torch.cat([layers[i][:, 1:t + 1] for layers in per_codebook], dim=-1) for i in range(num_layers)]


@contextlib.contextmanager
def _first_layers(backbone: nn.Module, num_layers: int | None):
    """A RoFormer that runs only its first ``num_layers`` layers for the duration of the block.

    transformers' encoder loops over ``encoder.layer`` and has nothing after the last layer, so
    the outputs of the layers kept are exactly what the whole model computes for them."""
    layers = backbone.encoder.layer
    if num_layers is None or num_layers == len(layers):
        yield
        return
    backbone.encoder.layer = layers[:num_layers]
    try:
        yield
    finally:
        backbone.encoder.layer = layers


def _first_codebooks(codec: codec_lib.Codec, n_q: int) -> codec_lib.Codec:
    """The codec with its RVQ cut to the first ``n_q`` codebooks: the others are never used, and
    the checkpoint stays small. The encoder is shared; the given codec is left as it was."""
    layers = codec.quantizer.vq.layers
    if len(layers) < n_q:
        raise ValueError(f"the codec has {len(layers)} codebooks, {n_q} requested")
    if len(layers) == n_q:
        return codec
    quantizer = copy.deepcopy(codec.quantizer)
    quantizer.vq.layers = nn.ModuleList(list(quantizer.vq.layers)[:n_q])
    quantizer.n_q = n_q
    return codec_lib.Codec(codec.encoder, quantizer, codec.weights)


def new_model(config: AudioFormerConfig, codec: str | codec_lib.Codec | None = None, seed: int = 0) -> AudioFormer:
    """A freshly initialised AudioFormer around a codec (default: ``config.codec_weights``).

    codec: "pretrained", "offline" or a :class:`~hear_codec.codec.Codec`. The choice is
    recorded in ``config.codec_weights``.
    """
    if codec is None:
        codec = config.codec_weights
    if isinstance(codec, str):
        codec = codec_lib.load_codec(codec, seed=seed)
    config.codec_weights = codec.weights if codec.weights in ("pretrained", "offline") else config.codec_weights
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AudioFormer(config, codec)


def num_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def build(config: AudioFormerConfig | dict) -> AudioFormer:
    """Rebuild an AudioFormer (untrained codec skeleton) for ``load_state_dict`` to fill."""
    if isinstance(config, dict):
        config = AudioFormerConfig.from_dict(config)
    return AudioFormer(config, codec_lib.build_codec_skeleton())
