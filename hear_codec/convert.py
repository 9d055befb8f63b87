"""Import published EnCodecMAE weights (official code: habla-liaa/encodecmae) into our model.

The official v2 files are dicts ``{'imports', 'config' (gin text), 'state_dict'}``. Sizes are read
from the gin text itself, and every weight is mapped by name:

    official                                            ours
    wav_encoder.post_net.*                              input_proj.*
    wav_encoder.encoder.model.*           (ec only)     front_end.encoder.*
    masker.positional_encoder.scale                     position.scale
    visible_encoder.encoder_layers.{i}.att_layer.w?     encoder.layers.{i}.attention.w?   (head layout permuted)
    visible_encoder.encoder_layers.{i}.norm{1,2}.*      encoder.layers.{i}.norm{1,2}.*
    visible_encoder.encoder_layers.0.ff_layer.{0,2}.*   encoder.ffn.{0,2}.*               (one shared block)
    visible_encoder.final_norm.*                        encoder.final_norm.*
    visible_encoder.post_net.*                          decoder_proj.*
    decoder.*                                           decoder.* / decoder_position.scale
    head.layer.*                                        head.*
    target_encoder.*                                    (dropped: the codec that made the targets)

The official attention splits channels into heads with the head index fastest (channel
c = d * H + h); ours is head-major (c = h * head_dim + d), so q/k/v rows and o columns are permuted.
"""
from __future__ import annotations

import ast
import re

import torch

from .encodecmae import EncodecMAEConfig

GIN_BINDING = re.compile(r"^([A-Za-z_][\w./]*)\s*=\s*(.+)$")


def parse_gin(text: str) -> dict:
    """Flatten gin text into {binding: value string}; later bindings win, as in gin.

    Handles macros (``MODEL_DIM=768``), dotted bindings (``scope/pkg.Class.param=1``) and
    block bindings (``pkg.Class:`` followed by indented ``param = value`` lines).
    """
    bindings, block = {}, None
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        if not raw[0].isspace() and line.endswith(":"):
            block = line[:-1].strip()
            continue
        indented = raw[0].isspace()
        match = GIN_BINDING.match(line.strip())
        if not match:
            continue
        key, value = match.groups()
        if indented and block:
            key = f"{block}.{key}"
        else:
            block = None
        bindings[key] = value.strip()
    return bindings


def _macro(bindings: dict, name: str, default=None):
    value = bindings.get(name, default)
    if isinstance(value, str) and value.startswith("%"):
        value = bindings.get(value[1:], default)
    if value is None:
        raise ValueError(f"the gin config does not set {name}")
    return ast.literal_eval(value) if isinstance(value, str) else value


def _scoped(bindings: dict, scope: str, param: str, default):
    """A TransformerEncoder parameter under ``encoder/`` or ``decoder/`` (macros resolved)."""
    value = bindings.get(f"{scope}/encodecmae.models.transformers.TransformerEncoder.{param}")
    if value is None:
        return default
    if value.startswith("%"):
        return _macro(bindings, value[1:])
    return ast.literal_eval(value)


# The official TransformerEncoder's default feed-forward size.
OFFICIAL_FF_DIM = 4096


def config_from_gin(text: str) -> EncodecMAEConfig:
    """Our EncodecMAEConfig from an official gin config string."""
    b = parse_gin(text)
    front_end = "mel256" if any("MelspectrogramProcessor" in k for k in b) else "ec"
    if front_end == "mel256" and _macro(b, "NUM_MEL_BINS", "256") != 256:
        raise ValueError("only 256-bin mel front ends are supported")
    n_codec = _macro(b, "NUM_ENCODEC_TARGETS", "8")
    n_total = _macro(b, "NUM_TOTAL_TARGETS", str(n_codec))
    weights = _macro(b, "QUANTIZER_WEIGHTS", None) if "QUANTIZER_WEIGHTS" in b else None
    kwargs = dict(
        front_end=front_end,
        dim=_macro(b, "MODEL_DIM"),
        num_layers=_macro(b, "NUM_ENCODER_LAYERS"),
        num_heads=_macro(b, "NUM_ENCODER_HEADS"),
        ff_dim=_scoped(b, "encoder", "ff_dim", OFFICIAL_FF_DIM),
        decoder_layers=_macro(b, "NUM_DECODER_LAYERS"),
        decoder_heads=_macro(b, "NUM_DECODER_HEADS"),
        decoder_ff_dim=_scoped(b, "decoder", "ff_dim", OFFICIAL_FF_DIM),
        num_codec_streams=n_codec,
        num_kmeans_streams=n_total - n_codec,
        vocab_size=_macro(b, "NUM_TARGET_TOKENS", "1024"),
        mask_prop=float(_macro(b, "MASK_PROP", "0.5")),
        mask_gap=_macro(b, "MASK_GAP_SIZE", "15"),
        masked_loss_weight=float(_macro(b, "MASKED_LOSS_WEIGHT", "0.9")),
        chunk_seconds=float(_macro(b, "MAX_AUDIO_DURATION", "4")),
    )
    if weights is not None:
        kwargs["codec_stream_weights"] = tuple(float(w) for w in weights)
    return EncodecMAEConfig(**kwargs)


def _head_major_permutation(dim: int, heads: int) -> torch.Tensor:
    """perm[c_ours] = c_official for channel layouts head-major (ours) vs head-fastest (official)."""
    head_dim = dim // heads
    c = torch.arange(dim)
    return (c % head_dim) * heads + c // head_dim


def convert_state_dict(official: dict, config: EncodecMAEConfig) -> dict:
    """Map an official EncodecMAE state_dict onto ours (see the module docstring)."""
    ours, unused = {}, []
    stacks = {"visible_encoder": ("encoder", config.num_heads), "decoder": ("decoder", config.decoder_heads)}
    for key, value in official.items():
        new = None
        if key.startswith("wav_encoder.post_net."):
            new = "input_proj." + key[len("wav_encoder.post_net."):]
        elif key.startswith("wav_encoder.encoder.model."):
            new = "front_end.encoder." + key[len("wav_encoder.encoder.model."):]
        elif key == "masker.positional_encoder.scale":
            new = "position.scale"
        elif key == "decoder.positional_encoder.scale":
            new = "decoder_position.scale"
        elif key.startswith("visible_encoder.post_net."):
            new = "decoder_proj." + key[len("visible_encoder.post_net."):]
        elif key.startswith("head.layer."):
            new = "head." + key[len("head.layer."):]
        elif key.split(".")[0] in stacks:
            stack, rest = key.split(".", 1)
            ours_stack, heads = stacks[stack]
            m = re.match(r"encoder_layers\.(\d+)\.(.+)$", rest)
            if rest.startswith("final_norm."):
                new = f"{ours_stack}.{rest}"
            elif m:
                layer, part = m.groups()
                if part.startswith("ff_layer."):
                    new = f"{ours_stack}.ffn.{part[len('ff_layer.'):]}"
                    if new in ours and not torch.equal(ours[new], value):
                        raise ValueError(f"{key}: per-layer feed-forward weights differ; expected one shared block")
                elif part.startswith("att_layer."):
                    name = part[len("att_layer."):]
                    perm = _head_major_permutation(value.shape[0] if name != "wo.weight" else value.shape[1], heads)
                    value = value[:, perm] if name == "wo.weight" else value[perm]
                    new = f"{ours_stack}.layers.{layer}.attention.{name}"
                elif part.startswith("norm"):
                    new = f"{ours_stack}.layers.{layer}.{part}"
        if new is None:
            unused.append(key)
            continue
        ours[new] = value
    unexpected = [k for k in unused if not k.startswith("target_encoder.")]
    if unexpected:
        raise ValueError(f"official state_dict has keys this importer does not know: {unexpected[:8]}")
    return ours
