"""Convert published EnCodecMAE weights (official code: habla-liaa/encodecmae) into our model.

Reading files is hear_codec/checkpoint.py's job (each file once), telling the published ones apart
by content hear_codec/published.py's, and their gin text is read by hear_codec/gin.py. What is
left here is the conversion itself, in the shape of transformers' ``convert_*_original_to_pytorch``
scripts, and :func:`load_any`, which loads a model file of any kind (ours, or published and
converted on the fly: what ``hear_codec.load_model(path)`` runs):

1. **config**: :func:`config_from_gin` reads everything about the model (front end, sizes, heads,
   feed-forward width, target streams, mel normalisation, loss weights) from the gin text;
   variants this package cannot reproduce exactly raise :class:`UnsupportedVariant`, whose
   message lists what is supported;
2. **rename keys**: :func:`convert_state_dict` maps the official names onto ours (table below);
3. **convert**: :func:`model_from_published` builds our model and loads every weight strictly;
4. **check on a dummy input**: :func:`convert_file` (the command line) writes our checkpoint,
   reads it back and runs both models on the same noise (:func:`check_on_dummy_input`).

Two published layouts (detected by content, never by name):

* **v2** (code at 2dd6759; hub repo ``lpepino/encodecmae-v2``, files such as ``mel256-ec-base_st.pt``):
  one file holding a dict ``{'imports', 'config' (gin text), 'state_dict'}``.
* **v1** (tag v.1.0.0; hub repos ``lpepino/encodecmae-{small,base,large,base-st,large-st}``): a folder
  with ``model.pt`` (a dict with ``'state_dict'``) and ``config.gin`` beside it.

Weight mapping (official -> ours)::

    v2                                                  v1                              ours
    wav_encoder.post_net.*                              feat_projector.*                input_proj.*
    wav_encoder.encoder.model.*       (ec only)         wav_encoder.model.*             front_end.encoder.*
    masker.positional_encoder.scale                     positional_encoder.scale        position.scale
    decoder.positional_encoder.scale                    positional_encoder.scale (*)    decoder_position.scale
    visible_encoder.post_net.*                          decoder_projector.*             decoder_proj.*
    {visible_encoder,decoder}.encoder_layers.{i}.att_layer.w{q,k,v,o}.weight            {encoder,decoder}.layers.{i}.attention.w?.weight  (head layout permuted)
    {visible_encoder,decoder}.encoder_layers.{i}.norm{1,2}.*                            {encoder,decoder}.layers.{i}.norm{1,2}.*
    {visible_encoder,decoder}.encoder_layers.{i}.ff_layer.{0,2}.*                       {encoder,decoder}.ffn.{0,2}.*  (one shared block)
    {visible_encoder,decoder}.final_norm.*                                              {encoder,decoder}.final_norm.*
    head.layer.*                                        head.layer.* + extra_head.layer.* (stacked)   head.*
    target_encoder.*                                    target_encoder.*                (dropped: the codec that made the targets)

(*) v1 has one positional encoder, used before the encoder and again before the decoder.

The official attention splits channels into heads with the head index fastest (channel
c = d * H + h); ours is head-major (c = h * head_dim + d), so q/k/v rows and o columns are permuted.

Command line::

    python -m hear_codec.convert SRC DST     # SRC: a published v2 file or v1 folder; DST: our checkpoint

It also rewrites one of our format-1 checkpoints (no weight hashes) in the current format.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import re
from pathlib import Path

import torch

from . import cli
from .checkpoint import FORMAT_VERSION, detect, load_checkpoint, model_from_checkpoint, save_checkpoint
from .encodecmae import EncodecMAE, EncodecMAEConfig
from .errors import CheckpointError, UnsupportedVariant
from .gin import GinConfig, GinError, reference

OFFICIAL_COMMIT_V2 = "2dd6759c595bf20c9d836914fef5cde9a6386843"
OFFICIAL_TAG_V1 = "v.1.0.0"
# The official TransformerEncoder's default feed-forward size.
OFFICIAL_FF_DIM = 4096
# The official MelspectrogramProcessor settings that hear_codec's Kaldi fbank implements.
SUPPORTED_MEL = dict(sample_frequency=24000, frame_shift=13.28, frame_length=26.56, htk_compat=True,
                     use_energy=False, window_type="hanning", num_mel_bins=256, dither=0.0)

SUPPORTED = """\
hear_codec reads these published EnCodecMAE variants:
  - layouts: v2 file (dict with 'config' gin text + 'state_dict'; code 2dd6759) or v1 folder (model.pt + config.gin; tag v.1.0.0)
  - front ends: 'mel256' (WavEncoder over MelspectrogramProcessor: 24 kHz Kaldi fbank, 256 bins, 13.28/26.56 ms,
    hanning, htk_compat, no energy, no dither) or 'ec' (frozen EnCodec 24 kHz encoder, scale 1.0)
  - transformers: ResiDual norm, bias-free MultiHeadAttention with model_dim divisible by num_heads, default feed-forward
  - targets: EnCodec codebooks (EncodecQuantizer, return_only_last=False), optionally plus k-means streams
    (v1 extra_head), or k-means streams alone (v2 self-training, IdentityTarget)"""


# ---------------------------------------------------------------------------------------------
# config
# ---------------------------------------------------------------------------------------------
def _unsupported(what: str):
    raise UnsupportedVariant(f"unsupported EnCodecMAE variant: {what}\n{SUPPORTED}")


def _check_default(gin: GinConfig, cls: str, param: str, scope: str, allowed, what: str):
    value = gin.get(cls, param, scope, allowed[0])
    if value not in allowed:
        _unsupported(f"{what} ({scope + '/' if scope else ''}{cls}.{param} = {value!r})")
    return value


def gin_layout(text: str) -> str:
    """'v2' or 'v1', read from which modules the config's EncodecMAE is assembled from."""
    return _read_gin(text, _layout)


def config_from_gin(text: str) -> EncodecMAEConfig:
    """Our EncodecMAEConfig from an official gin config string (v2 or v1 layout)."""
    return _read_gin(text, _config)


def _read_gin(text: str, read):
    try:
        return read(GinConfig(text))
    except GinError as e:
        raise UnsupportedVariant(f"{e}\n{SUPPORTED}") from e


def _layout(gin: GinConfig) -> str:
    _, wav_encoder = reference(gin.get("EncodecMAE", "wav_encoder"))
    if wav_encoder == "WavEncoder":
        return "v2"
    if wav_encoder is not None and gin.get("EncodecMAE", "positional_encoder") is not None:
        return "v1"
    if wav_encoder is None:
        raise UnsupportedVariant(f"the gin config does not bind EncodecMAE.wav_encoder: not an EnCodecMAE config\n{SUPPORTED}")
    _unsupported(f"wav_encoder {wav_encoder}")


def _stack(gin: GinConfig, ref_value, what: str) -> dict:
    scope, cls = reference(ref_value)
    if cls != "TransformerEncoder":
        _unsupported(f"{what} is {ref_value!r}, expected a TransformerEncoder")
    _check_default(gin, "TransformerEncoder", "norm_type", scope, ["ResiDual"], f"{what} normalisation")
    _check_default(gin, "TransformerEncoder", "ff_layer", scope, [None], f"{what} custom feed-forward")
    _check_default(gin, "TransformerEncoder", "cross_attention_layer", scope, [None], f"{what} cross-attention")
    _check_default(gin, "TransformerEncoder", "init_values", scope, [None, 0, 0.0], f"{what} LayerScale")
    _check_default(gin, "TransformerEncoder", "pre_net", scope, [None], f"{what} pre_net")
    att_scope, att_cls = reference(gin.get("TransformerEncoder", "attention_layer", scope))
    if att_cls != "MultiHeadAttention":
        _unsupported(f"{what} attention layer {att_cls}")
    for param in ("qk_proj_dim", "v_proj_dim", "att_scale"):
        _check_default(gin, "MultiHeadAttention", param, att_scope, [None], f"{what} attention {param}")
    for param in ("q_bias", "k_bias", "v_bias", "out_bias"):
        _check_default(gin, "MultiHeadAttention", param, att_scope, [False], f"{what} attention {param}")
    dim = gin.get("TransformerEncoder", "model_dim", scope)
    att_dim = gin.get("MultiHeadAttention", "model_dim", att_scope, dim)
    heads = gin.get("MultiHeadAttention", "num_heads", att_scope)
    layers = gin.get("TransformerEncoder", "num_layers", scope)
    if None in (dim, heads, layers):
        raise UnsupportedVariant(f"the gin config does not set the {what}'s model_dim, num_layers and num_heads\n{SUPPORTED}")
    if att_dim != dim:
        _unsupported(f"{what} attention model_dim {att_dim} differs from the stack's {dim}")
    return dict(dim=int(dim), layers=int(layers), heads=int(heads),
                ff_dim=int(gin.get("TransformerEncoder", "ff_dim", scope, OFFICIAL_FF_DIM)),
                positional=reference(gin.get("TransformerEncoder", "positional_encoder", scope))[1],
                post_net=gin.get("TransformerEncoder", "post_net", scope))


def _mel_front_end(gin: GinConfig) -> dict:
    if not gin.mentions("MelspectrogramProcessor"):
        _unsupported("WavEncoder.encoder is Identity but no MelspectrogramProcessor is configured "
                     "(precomputed features other than the 256-bin mel are not supported)")
    for param, want in SUPPORTED_MEL.items():
        got = gin.get("MelspectrogramProcessor", param, "", want)
        if isinstance(want, float) and isinstance(got, (int, float)) and abs(got - want) < 1e-9:
            continue
        if got != want:
            _unsupported(f"mel front end with {param}={got!r} (supported: {want!r})")
    stats = gin.get("MelspectrogramProcessor", "norm_stats", "", None)
    if stats is None:
        _unsupported("mel front end without norm_stats (unnormalised fbank)")
    return dict(front_end="mel256", mel_mean=float(stats[0]), mel_std=float(stats[1]))


def _ec_front_end(gin: GinConfig, ref_value) -> dict:
    scope, _ = reference(ref_value)
    _check_default(gin, "EncodecEncoder", "scale", scope, [1.0, 1], "EnCodec encoder with a feature scale")
    return dict(front_end="ec")


def _config(gin: GinConfig) -> EncodecMAEConfig:
    layout = _layout(gin)
    kwargs = {}
    # ---- front end ----
    if layout == "v2":
        enc_scope, _ = reference(gin.get("EncodecMAE", "wav_encoder"))
        inner = gin.get("WavEncoder", "encoder", enc_scope)
        _, inner_cls = reference(inner)
        _check_default(gin, "WavEncoder", "pre_net", enc_scope, [None], "wav encoder pre_net")
        if inner_cls == "Identity":
            kwargs.update(_mel_front_end(gin))
        elif inner_cls == "EncodecEncoder":
            kwargs.update(_ec_front_end(gin, inner))
        else:
            _unsupported(f"front end WavEncoder.encoder = {inner!r}")
        proj_scope, proj_cls = reference(gin.get("WavEncoder", "post_net", enc_scope))
        if proj_cls != "Linear":
            _unsupported(f"input projection {proj_cls}")
        in_features = gin.get("Linear", "in_features", proj_scope)
        expected_in = 256 if kwargs["front_end"] == "mel256" else 128
        if in_features is not None and in_features != expected_in:
            _unsupported(f"input projection with in_features={in_features} for the {kwargs['front_end']} front end")
        masker_scope, masker = reference(gin.get("EncodecMAE", "masker"))
        if masker != "PatchoutMask":
            _unsupported(f"masker {masker}")
        if reference(gin.get("PatchoutMask", "positional_encoder", masker_scope))[1] != "SinusoidalPositionalEmbeddings":
            _unsupported("no sinusoidal positional encoding before masking")
    else:
        wav_encoder = gin.get("EncodecMAE", "wav_encoder")
        if reference(wav_encoder)[1] != "EncodecEncoder":
            _unsupported(f"v1 wav_encoder {wav_encoder!r}")
        kwargs.update(_ec_front_end(gin, wav_encoder))
        if reference(gin.get("EncodecMAE", "positional_encoder"))[1] != "SinusoidalPositionalEmbeddings":
            _unsupported("v1 positional encoder other than SinusoidalPositionalEmbeddings")
    # ---- transformers ----
    enc = _stack(gin, gin.get("EncodecMAE", "visible_encoder"), "visible encoder")
    dec = _stack(gin, gin.get("EncodecMAE", "decoder"), "decoder")
    if enc["dim"] != dec["dim"]:
        _unsupported(f"decoder width {dec['dim']} differs from the encoder's {enc['dim']}")
    if enc["positional"] is not None:
        _unsupported("a positional encoder inside the visible encoder")
    if layout == "v2":
        if dec["positional"] != "SinusoidalPositionalEmbeddings":
            _unsupported("a v2 decoder without its sinusoidal positional encoder")
        if reference(enc["post_net"])[1] != "Linear":
            _unsupported("a v2 visible encoder without its Linear post_net (decoder projection)")
    elif dec["positional"] is not None:
        _unsupported("a v1 decoder with a positional encoder of its own")
    # ---- targets and head ----
    head_scope, head_cls = reference(gin.get("EncodecMAE", "head"))
    if head_cls != "FrameLevelClassificationHead":
        _unsupported(f"head {head_cls}")
    head_streams = gin.get("FrameLevelClassificationHead", "num_streams", head_scope, 8)
    vocab = gin.get("FrameLevelClassificationHead", "num_tokens", head_scope)
    _, target = reference(gin.get("EncodecMAE", "target_encoder"))
    if target == "EncodecQuantizer":
        if gin.get("EncodecQuantizer", "return_only_last", "", False):
            _unsupported("EncodecQuantizer.return_only_last=True (only the last codebook as target)")
        n_codec = gin.get("EncodecQuantizer", "n", "", 8)
        extra = int(gin.get("EncodecMAE", "n_extra_targets", "", 0)) if layout == "v1" else 0
        if head_streams != n_codec:
            _unsupported(f"a head of {head_streams} streams for {n_codec} EnCodec codebooks")
        n_kmeans = extra
    elif target == "IdentityTarget" and layout == "v2":
        n_codec, n_kmeans = 0, head_streams  # v2 self-training: the student predicts the k-means stream(s) only
    else:
        _unsupported(f"target encoder {target}")
    total = int(n_codec) + int(n_kmeans)
    if layout == "v2":
        weights = gin.get("EnCodecMAEClassificationLoss", "quantizer_weights", "", None)
        masked_weight = gin.get("EnCodecMAEClassificationLoss", "masked_weight", "", 0.9)
        mask_prop = gin.get("TimeGapMask", "p_mask", "", 0.5)
        chunk = gin.get("ReadAudioProcessor", "max_length", "", None)
    else:
        weights = gin.get("EncodecMAE", "quantizer_weights", "", None)
        masked_weight = gin.get("EncodecMAE", "masked_weight", "", 0.9)
        mask_prop = gin.get("TimeGapMask", "mask_prop", "", 0.5)
        chunk = gin.get("ProcessorReadAudio", "max_length", "", None)
    if weights is None:
        weights = [1.0 / total] * total
    weights = [float(w) for w in weights]
    if len(weights) == n_codec and n_kmeans:
        weights += [1.0] * int(n_kmeans)
    if len(weights) != total:
        _unsupported(f"{len(weights)} loss weights for {total} target streams")
    if chunk is None:
        chunk = gin.macro("MAX_AUDIO_DURATION", 4)
    kwargs.update(
        dim=enc["dim"], num_layers=enc["layers"], num_heads=enc["heads"], ff_dim=enc["ff_dim"],
        decoder_layers=dec["layers"], decoder_heads=dec["heads"], decoder_ff_dim=dec["ff_dim"],
        num_codec_streams=int(n_codec), num_kmeans_streams=int(n_kmeans),
        vocab_size=int(vocab if vocab is not None else 1024),
        mask_prop=float(mask_prop), mask_gap=int(gin.get("TimeGapMask", "gap_size", "", 15)),
        masked_loss_weight=float(masked_weight), chunk_seconds=float(chunk),
        # Per-stream loss weights of every predicted stream (EnCodec codebooks, then k-means).
        codec_stream_weights=tuple(weights),
        # The published models were trained with (and ec models embed) the pretrained EnCodec.
        codec_weights="pretrained",
    )
    known = {f.name for f in dataclasses.fields(EncodecMAEConfig)}
    return EncodecMAEConfig(**{k: v for k, v in kwargs.items() if k in known})


# ---------------------------------------------------------------------------------------------
# weights
# ---------------------------------------------------------------------------------------------
def _head_major_permutation(dim: int, heads: int) -> torch.Tensor:
    """perm[c_ours] = c_official for channel layouts head-major (ours) vs head-fastest (official)."""
    head_dim = dim // heads
    c = torch.arange(dim)
    return (c % head_dim) * heads + c // head_dim


V2_PREFIXES = {
    "wav_encoder.post_net.": "input_proj.",
    "wav_encoder.encoder.model.": "front_end.encoder.",
    "visible_encoder.post_net.": "decoder_proj.",
    "head.layer.": "head.",
}
V1_PREFIXES = {
    "feat_projector.": "input_proj.",
    "wav_encoder.model.": "front_end.encoder.",
    "decoder_projector.": "decoder_proj.",
    "head.layer.": "head.",
}


def convert_state_dict(official: dict, config: EncodecMAEConfig, layout: str = "v2") -> dict:
    """Map an official EncodecMAE state_dict (``layout`` 'v2' or 'v1') onto ours (see the module docstring)."""
    if layout not in ("v1", "v2"):
        raise ValueError(f"layout must be 'v1' or 'v2', got {layout!r}")
    prefixes = V2_PREFIXES if layout == "v2" else V1_PREFIXES
    ours, unused, extra_head = {}, [], {}
    stacks = {"visible_encoder": ("encoder", config.num_heads), "decoder": ("decoder", config.decoder_heads)}
    for key, value in official.items():
        new = None
        prefix = next((p for p in prefixes if key.startswith(p)), None)
        if prefix is not None:
            new = prefixes[prefix] + key[len(prefix):]
        elif layout == "v2" and key == "masker.positional_encoder.scale":
            new = "position.scale"
        elif layout == "v2" and key == "decoder.positional_encoder.scale":
            new = "decoder_position.scale"
        elif layout == "v1" and key == "positional_encoder.scale":
            ours["decoder_position.scale"] = value.clone()
            new = "position.scale"
        elif layout == "v1" and key.startswith("extra_head.layer."):
            extra_head[key[len("extra_head.layer."):]] = value
            continue
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
                        raise CheckpointError(f"{key}: per-layer feed-forward weights differ; expected one shared block")
                elif part.startswith("att_layer.") and part.endswith(".weight"):
                    name = part[len("att_layer."):]
                    width = value.shape[1] if name == "wo.weight" else value.shape[0]
                    if width % heads:
                        raise UnsupportedVariant(f"{key} has {width} attention channels for {heads} heads\n{SUPPORTED}")
                    perm = _head_major_permutation(width, heads)
                    value = value[:, perm] if name == "wo.weight" else value[perm]
                    new = f"{ours_stack}.layers.{layer}.attention.{name}"
                elif re.match(r"norm[12]\.", part):
                    new = f"{ours_stack}.layers.{layer}.{part}"
        if new is None:
            unused.append(key)
            continue
        ours[new] = value
    if extra_head:
        if set(extra_head) != {"weight", "bias"} or "head.weight" not in ours:
            raise CheckpointError("v1 state_dict has an incomplete extra_head")
        ours["head.weight"] = torch.cat([ours["head.weight"], extra_head["weight"]], dim=0)
        ours["head.bias"] = torch.cat([ours["head.bias"], extra_head["bias"]], dim=0)
    unexpected = [k for k in unused if not k.startswith("target_encoder.")]
    if unexpected:
        raise UnsupportedVariant(
            f"official state_dict has {len(unexpected)} keys this importer does not know, e.g. {unexpected[:6]}\n{SUPPORTED}")
    return ours


def build_published_model(config: EncodecMAEConfig, state: dict, source: str = "published file") -> EncodecMAE:
    """Our model with the converted weights; every weight must be present with the expected shape."""
    model = EncodecMAE(config)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
             if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} weights, e.g. {missing[:5]}")
        if unexpected:
            parts.append(f"{len(unexpected)} weights the config does not explain, e.g. {unexpected[:5]}")
        if wrong:
            parts.append(f"shapes that disagree with the gin config: {wrong[:5]}")
        raise CheckpointError(f"{source}: the state_dict does not match its gin config: " + "; ".join(parts))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=True)
    return model.eval()


# ---------------------------------------------------------------------------------------------
# a published file -> our model, checked
# ---------------------------------------------------------------------------------------------
def load_any(path: str | os.PathLike, allow_pickle: bool = False) -> torch.nn.Module:
    """The model in ``path`` (eval mode, on CPU): our checkpoint, or a published EnCodecMAE file or
    folder converted on the fly. The file is read once. The metadata is on ``model.metadata`` (for
    published files, where the weights came from and their gin text). ``allow_pickle`` lets a
    published file that holds pickled Python objects run them: only for files you trust."""
    kind, payload = detect(path, allow_pickle)
    if kind == "hear_codec":
        return model_from_checkpoint(payload, str(path))
    return model_from_published(kind, payload, str(path))


def model_from_published(kind: str, payload: dict, source: str) -> EncodecMAE:
    """Our model from what checkpoint.detect read (kind 'encodecmae-v2' or 'encodecmae-v1')."""
    layout = {"encodecmae-v2": "v2", "encodecmae-v1": "v1"}[kind]
    text = payload["config"]
    config = config_from_gin(text)
    found = gin_layout(text)
    if found != layout:
        raise UnsupportedVariant(f"{source}: a {layout} file whose gin config describes a {found} model\n{SUPPORTED}")
    state = convert_state_dict(payload["state_dict"], config, layout)
    model = build_published_model(config, state, source)
    model.metadata = {"source": "published EnCodecMAE", "layout": layout, "converted_from": str(source),
                      "official_code": OFFICIAL_COMMIT_V2 if layout == "v2" else OFFICIAL_TAG_V1,
                      "gin_config": text}
    return model


def check_on_dummy_input(converted: EncodecMAE, written: EncodecMAE, source: str) -> None:
    """One second of noise through both models: finite logits [1, frames, streams, vocab], and the same."""
    wav = torch.randn(1, converted.sample_rate, generator=torch.Generator().manual_seed(0)) * 0.1
    with torch.no_grad():
        expected, got = converted(wav)["logits"], written(wav)["logits"]
    c = converted.config
    shape = (1, converted.num_frames(wav.shape[-1]), c.num_streams, c.vocab_size)
    if tuple(expected.shape) != shape or not torch.isfinite(expected).all():
        raise CheckpointError(f"{source}: on a dummy input the converted model gives logits of shape "
                              f"{tuple(expected.shape)} (finite: {bool(torch.isfinite(expected).all())}); "
                              f"expected finite logits of shape {shape}")
    if not torch.equal(expected, got):
        raise CheckpointError(f"the checkpoint written from {source} does not reproduce the converted model")


def convert_file(src: str | os.PathLike, dst: str | os.PathLike, allow_pickle: bool = False,
                 metadata: dict | None = None) -> torch.nn.Module:
    """Write the published EnCodecMAE file/folder ``src`` as our checkpoint ``dst``; return the model read back.

    ``src`` may also be one of our format-1 checkpoints, rewritten in the current format.
    """
    kind, payload = detect(src, allow_pickle)
    if kind == "hear_codec":
        if payload["format_version"] == FORMAT_VERSION:
            raise CheckpointError(f"{src} is already a hear_codec checkpoint in format {FORMAT_VERSION}; "
                                  "nothing to convert")
        model = model_from_checkpoint(payload, str(src))
        save_checkpoint(dst, model, {**model.metadata, **(metadata or {})})
        return load_checkpoint(dst)
    model = model_from_published(kind, payload, str(src))
    save_checkpoint(dst, model, {**model.metadata, **(metadata or {})})
    written = load_checkpoint(dst)
    check_on_dummy_input(model, written, str(src))
    return written


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m hear_codec.convert",
        description="Convert a published EnCodecMAE model (habla-liaa/encodecmae) into a hear_codec checkpoint. "
                    "The format is detected from the content: a v2 file (dict with a gin 'config' and a "
                    "'state_dict', e.g. mel256-ec-base_st.pt) or a v1 folder with model.pt and config.gin. "
                    "A hear_codec checkpoint of format 1 is rewritten in the current format (with weight hashes).",
        epilog="Example: python -m hear_codec.convert mel256-ec-base_st.pt encodecmae-base-st.ckpt && "
               "hear-validator hear_codec --model encodecmae-base-st.ckpt")
    parser.add_argument("src", help="published v2 .pt file, or v1 folder (or its model.pt with config.gin beside it)")
    parser.add_argument("dst", help="where to write the hear_codec checkpoint")
    parser.add_argument("--allow-pickle", action="store_true",
                        help="load SRC with weights_only=False (runs pickled code: only for files you trust)")
    parser.add_argument("--force", action="store_true", help="overwrite DST if it exists")
    args = parser.parse_args(argv)
    if Path(args.dst).exists() and not args.force:
        parser.error(f"{args.dst} exists; pass --force to overwrite it")
    model = convert_file(args.src, args.dst, allow_pickle=args.allow_pickle)
    c = model.config
    if model.family == "encodecmae":
        print(f"wrote {args.dst}: EnCodecMAE {c.front_end}, {c.num_layers} layers, dim {c.dim}, {c.num_heads} heads, "
              f"{c.num_codec_streams} EnCodec + {c.num_kmeans_streams} k-means target streams")
    else:
        print(f"wrote {args.dst}: {model.family} {c}")


if __name__ == "__main__":
    cli.run(main)
