"""Test helpers: published-format EnCodecMAE files built without the official code.

* gin texts in both official layouts (v2: the repo's block style; v1: gin's own ``config_str``
  output, with short selectors, ``\\`` continuations and lists over several lines);
* state dicts with the official key names and shapes derived from the sizes (independently of
  hear_codec/convert.py's mapping), filled with seeded random values;
* the official attention written out (head index fastest), to check the head-layout permutation.
"""
from __future__ import annotations

from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]

QW = [0.22407463, 0.1759858, 0.14499009, 0.12150037, 0.10315603, 0.08831368, 0.07608274, 0.06589669]


def v2_gin(front_end="mel256", dim=32, layers=2, heads=4, dec_layers=1, dec_heads=4, ff=64, st=False, extra=""):
    """A v2 gin text in the layout of configs/models/encodecmae.gin + features/{mel,wav_only}.gin (+ st.gin)."""
    text = f"""NUM_ENCODEC_TARGETS=8
NUM_TOTAL_TARGETS=8
NUM_TARGET_TOKENS=1024
MASK_GAP_SIZE=15
MASK_PROP=0.5
MODEL_DIM=768
NUM_ENCODER_LAYERS=10
NUM_ENCODER_HEADS=12
NUM_DECODER_LAYERS=2
NUM_DECODER_HEADS=12
MASKED_LOSS_WEIGHT=0.9
WAV_FEATURE_DIM=128
QUANTIZER_WEIGHTS=[{', '.join(map(str, QW))}]
encodecmae.models.EncodecMAE:
    wav_encoder = @encodecmae.models.encoders.WavEncoder
    target_encoder = @encodecmae.models.targets.EncodecQuantizer
    masker = @encodecmae.models.masks.PatchoutMask
    visible_encoder = @encoder/encodecmae.models.transformers.TransformerEncoder
    decoder = @decoder/encodecmae.models.transformers.TransformerEncoder
    head = @encodecmae.models.heads.FrameLevelClassificationHead
    loss = @encodecmae.models.losses.EnCodecMAEClassificationLoss
encodecmae.models.encoders.WavEncoder:
    encoder = @encodecmae.models.encoders.EncodecEncoder
    post_net = @wav_encoder_proj/torch.nn.Linear
wav_encoder_proj/torch.nn.Linear:
    in_features = %WAV_FEATURE_DIM
    out_features = %MODEL_DIM
encodecmae.models.masks.PatchoutMask:
    masker = @encodecmae.models.masks.TimeGapMask
    positional_encoder = @encodecmae.models.transformers.SinusoidalPositionalEmbeddings
encodecmae.models.masks.TimeGapMask:
    gap_size = %MASK_GAP_SIZE
    p_mask = %MASK_PROP
encoder/encodecmae.models.transformers.TransformerEncoder:
    model_dim=%MODEL_DIM
    num_layers=%NUM_ENCODER_LAYERS
    attention_layer=@encoder/encodecmae.models.transformers.MultiHeadAttention
    post_net=@decoder_proj/torch.nn.Linear
encoder/encodecmae.models.transformers.MultiHeadAttention:
    model_dim=%MODEL_DIM
    num_heads=%NUM_ENCODER_HEADS
decoder/encodecmae.models.transformers.TransformerEncoder:
    model_dim=%MODEL_DIM
    num_layers=%NUM_DECODER_LAYERS
    attention_layer=@decoder/encodecmae.models.transformers.MultiHeadAttention
    positional_encoder = @encodecmae.models.transformers.SinusoidalPositionalEmbeddings
decoder/encodecmae.models.transformers.MultiHeadAttention:
    model_dim=%MODEL_DIM
    num_heads=%NUM_DECODER_HEADS
encodecmae.models.heads.FrameLevelClassificationHead:
    model_dim=%MODEL_DIM
    num_tokens=%NUM_TARGET_TOKENS
    num_streams=%NUM_TOTAL_TARGETS
encodecmae.models.targets.EncodecQuantizer:
    n = %NUM_ENCODEC_TARGETS
    return_only_last = False
encodecmae.models.losses.EnCodecMAEClassificationLoss:
    masked_weight=%MASKED_LOSS_WEIGHT
    quantizer_weights=%QUANTIZER_WEIGHTS
encodecmae.tasks.features.ReadAudioProcessor:
    max_length = %MAX_AUDIO_DURATION
"""
    if front_end == "mel256":
        text += """NUM_MEL_BINS=256
encodecmae.tasks.features.SequentialProcessor:
    processors=[@encodecmae.tasks.features.ReadAudioProcessor, @encodecmae.tasks.features.MelspectrogramProcessor]
encodecmae.tasks.features.MelspectrogramProcessor:
    sample_frequency=24000
    frame_shift=13.28
    frame_length=26.56
    htk_compat=True
    use_energy=False
    window_type='hanning'
    num_mel_bins=%NUM_MEL_BINS
    dither=0.0
    norm_stats=[-6.12, 4.82]
encodecmae.models.encoders.WavEncoder:
    encoder = @torch.nn.Identity
    post_net = @wav_encoder_proj/torch.nn.Linear
    key_in = 'wav_features'
wav_encoder_proj/torch.nn.Linear:
    in_features = %NUM_MEL_BINS
    out_features = %MODEL_DIM
"""
    if st:
        text += """NUM_TOTAL_TARGETS=1
encodecmae.tasks.data.DictDataset.out_cols+=['targets']
encodecmae.models.EncodecMAE.target_encoder=@encodecmae.models.targets.IdentityTarget
encodecmae.models.losses.EnCodecMAEClassificationLoss.quantizer_weights=[1.]
"""
    text += f"""MAX_AUDIO_DURATION=4
MODEL_DIM={dim}
NUM_ENCODER_LAYERS={layers}
NUM_ENCODER_HEADS={heads}
NUM_DECODER_LAYERS={dec_layers}
NUM_DECODER_HEADS={dec_heads}
encoder/encodecmae.models.transformers.TransformerEncoder.ff_dim={ff}
decoder/encodecmae.models.transformers.TransformerEncoder.ff_dim={ff}
{extra}"""
    return text


def v1_gin(dim=32, layers=2, heads=4, dec_layers=1, dec_heads=4, ff=64, extra_targets=0):
    """A v1 config.gin as gin's config_str writes it (short selectors, continuations)."""
    weights = QW + ([1.0] * extra_targets)
    weight_lines = ",\n     ".join(str(w) for w in weights)
    st = f"EncodecMAE.n_extra_targets = {extra_targets}\n" if extra_targets else ""
    return f"""# Macros:
# ==============================================================================
MASK_AMOUNT = 150
MASK_GAP_SIZE = 15
MASKED_LOSS_WEIGHT = 0.9
MAX_AUDIO_DURATION = 4
MODEL_DIM = {dim}
NUM_DECODER_HEADS = {dec_heads}
NUM_DECODER_LAYERS = {dec_layers}
NUM_ENCODEC_TARGETS = 8
NUM_ENCODER_HEADS = {heads}
NUM_ENCODER_LAYERS = {layers}
NUM_TARGET_TOKENS = 1024
NUM_TOTAL_TARGETS = 8

# Parameters for EncodecMAE:
# ==============================================================================
EncodecMAE.decoder = @decoder/tasks.models.transformers.TransformerEncoder
EncodecMAE.head = @tasks.models.encodecmae.heads.FrameLevelClassificationHead
EncodecMAE.lr_scheduler = None
EncodecMAE.masked_weight = %MASKED_LOSS_WEIGHT
EncodecMAE.masker = @tasks.models.encodecmae.masking.TimeGapMask
EncodecMAE.optimizer = @torch.optim.AdamW
EncodecMAE.positional_encoder = \\
    @tasks.models.transformers.SinusoidalPositionalEmbeddings
EncodecMAE.quantizer_weights = \\
    [{weight_lines}]
EncodecMAE.target_encoder = @tasks.models.encodecmae.targets.EncodecQuantizer
EncodecMAE.visible_encoder = @encoder/tasks.models.transformers.TransformerEncoder
EncodecMAE.wav_encoder = @tasks.models.encodecmae.encoders.EncodecEncoder
{st}
# Parameters for EncodecQuantizer:
# ==============================================================================
EncodecQuantizer.n = %NUM_ENCODEC_TARGETS

# Parameters for FrameLevelClassificationHead:
# ==============================================================================
FrameLevelClassificationHead.model_dim = %MODEL_DIM
FrameLevelClassificationHead.num_streams = %NUM_TOTAL_TARGETS
FrameLevelClassificationHead.num_tokens = %NUM_TARGET_TOKENS

# Parameters for decoder/MultiHeadAttention:
# ==============================================================================
decoder/MultiHeadAttention.model_dim = %MODEL_DIM
decoder/MultiHeadAttention.num_heads = %NUM_DECODER_HEADS

# Parameters for encoder/MultiHeadAttention:
# ==============================================================================
encoder/MultiHeadAttention.model_dim = %MODEL_DIM
encoder/MultiHeadAttention.num_heads = %NUM_ENCODER_HEADS

# Parameters for ProcessorReadAudio:
# ==============================================================================
ProcessorReadAudio.max_length = %MAX_AUDIO_DURATION

# Parameters for SinusoidalPositionalEmbeddings:
# ==============================================================================
SinusoidalPositionalEmbeddings.embedding_dim = %MODEL_DIM

# Parameters for TimeGapMask:
# ==============================================================================
TimeGapMask.gap_size = %MASK_GAP_SIZE
TimeGapMask.mask_amount = %MASK_AMOUNT

# Parameters for decoder/TransformerEncoder:
# ==============================================================================
decoder/TransformerEncoder.attention_layer = \\
    @decoder/tasks.models.transformers.MultiHeadAttention
decoder/TransformerEncoder.compile = True
decoder/TransformerEncoder.ff_dim = {ff}
decoder/TransformerEncoder.model_dim = %MODEL_DIM
decoder/TransformerEncoder.num_layers = %NUM_DECODER_LAYERS

# Parameters for encoder/TransformerEncoder:
# ==============================================================================
encoder/TransformerEncoder.attention_layer = \\
    @encoder/tasks.models.transformers.MultiHeadAttention
encoder/TransformerEncoder.compile = True
encoder/TransformerEncoder.ff_dim = {ff}
encoder/TransformerEncoder.model_dim = %MODEL_DIM
encoder/TransformerEncoder.num_layers = %NUM_ENCODER_LAYERS
"""


def _stack_state(prefix, dim, layers, ff, gen, positional=False, heads=None):
    """One official TransformerEncoder: per-layer copies of the one shared feed-forward block.

    Attention width is heads * (dim // heads), as the official MultiHeadAttention makes it.
    """
    width = dim if heads is None else heads * (dim // heads)
    r = lambda *shape: torch.randn(*shape, generator=gen) * 0.1  # noqa: E731
    ffn = {"ff_layer.0.weight": r(ff, dim), "ff_layer.0.bias": r(ff), "ff_layer.2.weight": r(dim, ff),
           "ff_layer.2.bias": r(dim)}
    state = {}
    for i in range(layers):
        p = f"{prefix}.encoder_layers.{i}."
        for w in ("wq", "wk", "wv"):
            state[p + f"att_layer.{w}.weight"] = r(width, dim)
        state[p + "att_layer.wo.weight"] = r(dim, width)
        state.update({p + k: v.clone() for k, v in ffn.items()})
        for n in ("norm1", "norm2"):
            state[p + f"{n}.weight"] = 1 + r(dim)
            state[p + f"{n}.bias"] = r(dim)
    state[f"{prefix}.final_norm.weight"] = 1 + r(dim)
    state[f"{prefix}.final_norm.bias"] = r(dim)
    if positional:
        state[f"{prefix}.positional_encoder.scale"] = torch.tensor(1.0) + r(())
    return state


def official_state(layout, dim, layers, dec_layers, ff, in_dim, streams, extra_streams=0, vocab=1024, seed=0,
                   codec_encoder_state=None, heads=None, dec_heads=None):
    """A state dict with the official key names and shapes for the given sizes."""
    gen = torch.Generator().manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, generator=gen) * 0.1  # noqa: E731
    state = {}
    if layout == "v2":
        state["wav_encoder.post_net.weight"], state["wav_encoder.post_net.bias"] = r(dim, in_dim), r(dim)
        state["masker.positional_encoder.scale"] = torch.tensor(1.0) + r(())
        state.update(_stack_state("visible_encoder", dim, layers, ff, gen, heads=heads))
        state["visible_encoder.post_net.weight"], state["visible_encoder.post_net.bias"] = r(dim, dim), r(dim)
        state.update(_stack_state("decoder", dim, dec_layers, ff, gen, positional=True, heads=dec_heads))
        enc_prefix = "wav_encoder.encoder.model."
    else:
        state["feat_projector.weight"], state["feat_projector.bias"] = r(dim, in_dim), r(dim)
        state["positional_encoder.scale"] = torch.tensor(1.0) + r(())
        state.update(_stack_state("visible_encoder", dim, layers, ff, gen))
        state["decoder_projector.weight"], state["decoder_projector.bias"] = r(dim, dim), r(dim)
        state.update(_stack_state("decoder", dim, dec_layers, ff, gen))
        enc_prefix = "wav_encoder.model."
        if extra_streams:
            state["extra_head.layer.weight"] = r(extra_streams * vocab, dim)
            state["extra_head.layer.bias"] = r(extra_streams * vocab)
    state["head.layer.weight"], state["head.layer.bias"] = r(streams * vocab, dim), r(streams * vocab)
    # The training-target codec (dropped by the importer): a couple of representative keys.
    state["target_encoder.model.vq.layers.0._codebook.embed"] = r(1024, 128)
    state["target_encoder.model.vq.layers.0._codebook.inited"] = torch.ones(1)
    if codec_encoder_state is not None:
        state.update({enc_prefix + k: v for k, v in codec_encoder_state.items()})
    return state


def official_attention(x, wq, wk, wv, wo, heads):
    """The official MultiHeadAttention forward (channel c = d * H + h), no mask."""
    n, t, _ = x.shape
    dh = wq.shape[0] // heads
    split = lambda y: y.view(n, t, dh, heads).permute(0, 3, 1, 2).reshape(n * heads, t, dh)  # noqa: E731
    q, k, v = split(x @ wq.T), split(x @ wk.T), split(x @ wv.T)
    att = (q @ k.transpose(-2, -1) * dh ** -0.5).softmax(-1)
    out = (att @ v).view(n, heads, t, dh).permute(0, 2, 3, 1).reshape(n, t, dh * heads)
    return out @ wo.T


def v2_to_v1_state(v2_state: dict) -> dict:
    """Rename a v2 state dict to v1 key names (both layouts hold the same tensors)."""
    out = {}
    for k, v in v2_state.items():
        if k.startswith("wav_encoder.post_net."):
            out["feat_projector." + k[len("wav_encoder.post_net."):]] = v
        elif k.startswith("wav_encoder.encoder.model."):
            out["wav_encoder.model." + k[len("wav_encoder.encoder.model."):]] = v
        elif k == "masker.positional_encoder.scale":
            out["positional_encoder.scale"] = v
        elif k == "decoder.positional_encoder.scale":
            continue
        elif k.startswith("visible_encoder.post_net."):
            out["decoder_projector." + k[len("visible_encoder.post_net."):]] = v
        else:
            out[k] = v
    return out


def v1_block_gin(dim=32, layers=2, heads=4, dec_layers=1, dec_heads=4, ff=64, extra_targets=0):
    """A v1 config.gin in the repo's own block style (configs/models/encodecmae.gin at v.1.0.0)."""
    weights = QW + ([1.0] * extra_targets)
    st = f"tasks.models.EncodecMAE.n_extra_targets={extra_targets}\n" if extra_targets else ""
    return f"""NUM_ENCODEC_TARGETS=8
NUM_TOTAL_TARGETS=8
NUM_TARGET_TOKENS=1024
MASK_GAP_SIZE=15
MASK_PROP=0.5
MODEL_DIM={dim}
NUM_ENCODER_LAYERS={layers}
NUM_ENCODER_HEADS={heads}
NUM_DECODER_LAYERS={dec_layers}
NUM_DECODER_HEADS={dec_heads}
MASKED_LOSS_WEIGHT=0.9
tasks.models.EncodecMAE:
    wav_encoder = @tasks.models.encodecmae.encoders.EncodecEncoder
    target_encoder = @tasks.models.encodecmae.targets.EncodecQuantizer
    masker = @tasks.models.encodecmae.masking.TimeGapMask
    visible_encoder = @encoder/tasks.models.transformers.TransformerEncoder
    positional_encoder = @tasks.models.transformers.SinusoidalPositionalEmbeddings
    decoder = @decoder/tasks.models.transformers.TransformerEncoder
    head = @tasks.models.encodecmae.heads.FrameLevelClassificationHead
    masked_weight=%MASKED_LOSS_WEIGHT
    quantizer_weights=[{', '.join(map(str, weights))}]
tasks.models.encodecmae.targets.EncodecQuantizer:
    n = %NUM_ENCODEC_TARGETS
tasks.models.encodecmae.masking.TimeGapMask:
    gap_size = %MASK_GAP_SIZE
    mask_prop = %MASK_PROP
encoder/tasks.models.transformers.TransformerEncoder:
    model_dim=%MODEL_DIM
    num_layers=%NUM_ENCODER_LAYERS
    attention_layer=@encoder/tasks.models.transformers.MultiHeadAttention
    ff_dim={ff}
encoder/tasks.models.transformers.MultiHeadAttention:
    model_dim=%MODEL_DIM
    num_heads=%NUM_ENCODER_HEADS
decoder/tasks.models.transformers.TransformerEncoder:
    model_dim=%MODEL_DIM
    num_layers=%NUM_DECODER_LAYERS
    attention_layer=@decoder/tasks.models.transformers.MultiHeadAttention
    ff_dim={ff}
decoder/tasks.models.transformers.MultiHeadAttention:
    model_dim=%MODEL_DIM
    num_heads=%NUM_DECODER_HEADS
tasks.models.transformers.SinusoidalPositionalEmbeddings.embedding_dim = %MODEL_DIM
tasks.models.encodecmae.heads.FrameLevelClassificationHead:
    model_dim=%MODEL_DIM
    num_tokens=%NUM_TARGET_TOKENS
    num_streams=%NUM_TOTAL_TARGETS
{st}"""
