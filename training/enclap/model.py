"""The EnCLAP captioning model: BART whose encoder reads EnCodec codes and a CLAP embedding.

Encoder input, one row per position (``L = frames + 3``)::

    row 0          CLAP slot: clap_projection(clap_embedding)          no positional embedding
    row 1          <s>  (text embedding of id 0)                        BART position 0
    rows 2..T+1    codec frames: sum over k of embed_encodec[k][code_k] BART positions 1..T
    row T+2        </s> (text embedding of id 2)                        BART position T+1
    rows after     padding: all 16 ids = encodec pad id, embedding 0    masked by attention_mask

The tensors follow the official EnCLAP code (github.com/jaeyeonkim99/EnCLAP) so that its published
checkpoints load unchanged: ``input_ids`` is [batch, L, 16] (rows 0, 1 and T+2 carry the text ids
<s>/</s> in every column), ``encodec_mask`` [batch, L] is 1 on the rows whose 16 ids are codec ids
(padding rows included, which are all pad ids and so embed to zero) and 0 on the CLAP/<s>/</s>
rows. Parameter names are the official ones too: ``model.encoder.embed_encodec.{k}``,
``model.encoder.clap_projection``, ``mcm_heads.{k}`` and BART's own names.

Masked codec modelling (MCM): 16 heads Linear(d, 1024) predict the original code of every masked
entry from the encoder output; codebook k's cross-entropy is weighted 1/2^(k+1).
Total loss = caption cross-entropy (label smoothing 0.2) + 0.7 * MCM.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import BartConfig, BartForConditionalGeneration, GenerationConfig
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_outputs import BaseModelOutput, Seq2SeqLMOutput
from transformers.models.bart.modeling_bart import (
    BartDecoder,
    BartEncoder,
    BartModel,
    BartPreTrainedModel,
    BartScaledWordEmbedding,
    shift_tokens_right,
)

IGNORE_INDEX = -100  # label value that the losses skip


@strict
class EnClapBartConfig(BartConfig):
    """BART config plus the EnCLAP fields (names and defaults as in the official code).

    ``model_type`` stays ``"bart"``, as in the published ``config.json`` files.
    """

    d_clap: int = 512  # CLAP audio embedding size
    num_rvq: int = 16  # codebooks per codec frame (EnCodec 24 kHz at 12 kbps)
    encodec_vocab_size: int = 1024  # codes per codebook
    encodec_pad_token_id: int = 1024  # id for padding and for MCM-masked entries
    mcm_loss_scale: float = 0.7
    label_smoothing: float = 0.2

    def validate_token_ids(self):
        """BART's check that every ``*_token_id`` is a text id, minus ``encodec_pad_token_id``,
        which indexes the codec tables (so the stock check would warn on every load)."""
        for name in self:
            value = getattr(self, name)
            if name.endswith("_token_id") and name != "encodec_pad_token_id" and isinstance(value, int):
                if not 0 <= value < self.vocab_size:
                    raise ValueError(f"{name}={value} is outside the text vocabulary (0..{self.vocab_size - 1})")


class EnClapBartEncoder(BartEncoder):
    """BART encoder over ``[CLAP, <s>, codec frames, </s>]`` (see the module docstring)."""

    def __init__(self, config: EnClapBartConfig):
        super().__init__(config)
        # Tables are padded to a multiple of 64 rows (as in the official code) for fast matmuls.
        rows = math.ceil((config.encodec_vocab_size + 1) / 64) * 64
        self.embed_encodec = nn.ModuleList(
            nn.Embedding(rows, config.d_model, padding_idx=config.encodec_pad_token_id)
            for _ in range(config.num_rvq)
        )
        self.clap_projection = nn.Linear(config.d_clap, config.d_model)
        self.post_init()

    def embed_inputs(
        self, input_ids: torch.Tensor, clap_embedding: torch.Tensor, encodec_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Token and positional embeddings before LayerNorm.

        input_ids: [batch, L, num_rvq] int64; clap_embedding: [batch, d_clap]; encodec_mask: [batch, L].
        Returns (inputs_embeds, pos_embeds), both [batch, L, d_model]; pos_embeds[:, 0] is zero.
        """
        config = self.config
        if input_ids.ndim != 3 or input_ids.shape[-1] != config.num_rvq:
            raise ValueError(f"input_ids must be [batch, rows, {config.num_rvq}], got {tuple(input_ids.shape)}")
        if clap_embedding.shape != (input_ids.shape[0], config.d_clap):
            raise ValueError(
                f"clap_embedding must be [batch, {config.d_clap}] = [{input_ids.shape[0]}, {config.d_clap}], "
                f"got {tuple(clap_embedding.shape)}"
            )
        if encodec_mask.shape != input_ids.shape[:2]:
            raise ValueError(f"encodec_mask must be [batch, rows] = {tuple(input_ids.shape[:2])}, got {tuple(encodec_mask.shape)}")
        is_codec = encodec_mask.bool().unsqueeze(-1)
        # Text rows hold a text id in every column; codec rows hold codec ids. Each lookup only sees
        # ids that are valid for its table (the other kind is replaced by a pad id and then discarded).
        text_ids = input_ids[..., 0].masked_fill(is_codec[..., 0], config.pad_token_id)
        codec_ids = input_ids.masked_fill(~is_codec, config.encodec_pad_token_id)
        codec = sum(table(codec_ids[..., k]) for k, table in enumerate(self.embed_encodec))
        text = self.embed_tokens(text_ids)
        inputs_embeds = torch.where(is_codec, codec, text)
        clap = self.clap_projection(clap_embedding.to(inputs_embeds.dtype))
        inputs_embeds = torch.cat([clap.unsqueeze(1), inputs_embeds[:, 1:]], dim=1)

        # Row j >= 1 is BART position j - 1; the CLAP row has no position.
        positions = self.embed_positions(input_ids[:, 1:, 0])  # [batch, L-1, d]
        pos_embeds = torch.cat([positions.new_zeros(positions.shape[0], 1, positions.shape[2]), positions], dim=1)
        return inputs_embeds, pos_embeds.to(inputs_embeds.dtype)

    def forward(
        self,
        input_ids: torch.Tensor,
        clap_embedding: torch.Tensor,
        encodec_mask: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        **kwargs,
    ) -> BaseModelOutput:
        """[batch, L, num_rvq] codes -> BaseModelOutput(last_hidden_state [batch, L, d_model]).

        With ``output_hidden_states`` the output also has a tuple of encoder_layers + 1 states: the
        embedding output after LayerNorm, then each layer's output. Other keyword arguments (the
        output flags ``generate`` passes when it runs the encoder itself, as in the official
        ``model.generate(input_ids=..., clap_embedding=..., encodec_mask=...)``) are ignored.
        """
        inputs_embeds, pos_embeds = self.embed_inputs(input_ids, clap_embedding, encodec_mask)
        hidden = self.layernorm_embedding(inputs_embeds + pos_embeds)
        hidden = nn.functional.dropout(hidden, p=self.dropout, training=self.training)
        mask = create_bidirectional_mask(config=self.config, inputs_embeds=hidden, attention_mask=attention_mask)
        states = [hidden]
        for layer in self.layers:
            if self.training and self.layerdrop > 0.0 and torch.rand([]) < self.layerdrop:
                continue
            hidden = layer(hidden, mask)
            states.append(hidden)
        return BaseModelOutput(last_hidden_state=hidden, hidden_states=tuple(states) if output_hidden_states else None)


class EnClapBartModel(BartModel):
    """BartModel with :class:`EnClapBartEncoder`; shared text embeddings as in BART."""

    def __init__(self, config: EnClapBartConfig):
        BartPreTrainedModel.__init__(self, config)  # BartModel.__init__ would build a plain encoder
        embed_scale = math.sqrt(config.d_model) if config.scale_embedding else 1.0
        self.shared = BartScaledWordEmbedding(config.vocab_size, config.d_model, config.pad_token_id, embed_scale=embed_scale)
        self.encoder = EnClapBartEncoder(config)
        self.decoder = BartDecoder(config)
        self.post_init()


@dataclass
class EnClapOutput(Seq2SeqLMOutput):
    """Seq2SeqLMOutput plus the two loss terms and the MCM logits [batch, L, num_rvq, codebook_size]."""

    lm_loss: torch.Tensor | None = None
    mcm_loss: torch.Tensor | None = None  # already multiplied by mcm_loss_scale
    mcm_logits: torch.Tensor | None = None


class EnClapBartForConditionalGeneration(BartForConditionalGeneration):
    """EnCLAP: :class:`EnClapBartModel`, BART's LM head (with ``final_logits_bias``) and 16 MCM heads."""

    config_class = EnClapBartConfig

    def __init__(self, config: EnClapBartConfig):
        BartPreTrainedModel.__init__(self, config)
        self.model = EnClapBartModel(config)
        self.final_logits_bias = nn.Buffer(torch.zeros((1, self.model.shared.num_embeddings)))
        self.lm_head = nn.Linear(config.d_model, self.model.shared.num_embeddings, bias=False)
        self.mcm_heads = nn.ModuleList(
            nn.Linear(config.d_model, config.encodec_vocab_size) for _ in range(config.num_rvq)
        )
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        clap_embedding: torch.Tensor | None = None,
        encodec_mask: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        mcm_labels: torch.Tensor | None = None,
        encoder_outputs: BaseModelOutput | tuple | None = None,
        past_key_values=None,
        use_cache: bool | None = None,
        output_hidden_states: bool = False,
        output_mcm_logits: bool = False,
        **kwargs,
    ) -> EnClapOutput:
        """Caption logits and, with ``labels``, the EnCLAP losses.

        input_ids [batch, L, num_rvq], clap_embedding [batch, d_clap], encodec_mask and
        attention_mask [batch, L]; labels [batch, S] (``<s> caption </s>``, padded with -100);
        mcm_labels [batch, L, num_rvq] (original code where masked, -100 elsewhere).
        ``output_mcm_logits`` adds every head's logits at every row, [batch, L, num_rvq, 1024]
        (large; the loss itself only evaluates the heads at masked entries).
        Generation passes ``encoder_outputs`` and ``decoder_input_ids`` instead.
        """
        if labels is not None:
            use_cache = False
            if decoder_input_ids is None:
                decoder_input_ids = shift_tokens_right(labels, self.config.pad_token_id, self.config.decoder_start_token_id)
        if encoder_outputs is None:
            if input_ids is None or clap_embedding is None or encodec_mask is None:
                raise ValueError("the encoder needs input_ids, clap_embedding and encodec_mask (or pass encoder_outputs)")
            encoder_outputs = self.model.encoder(
                input_ids, clap_embedding, encodec_mask, attention_mask, output_hidden_states=output_hidden_states
            )
        elif not isinstance(encoder_outputs, BaseModelOutput):
            encoder_outputs = BaseModelOutput(last_hidden_state=encoder_outputs[0])
        encoder_hidden = encoder_outputs.last_hidden_state
        decoder_outputs = self.model.decoder(
            input_ids=decoder_input_ids,
            encoder_hidden_states=encoder_hidden,
            encoder_attention_mask=attention_mask,
            past_key_values=past_key_values,
            use_cache=use_cache,
            output_hidden_states=output_hidden_states,
            **kwargs,
        )
        logits = self.lm_head(decoder_outputs.last_hidden_state) + self.final_logits_bias.to(encoder_hidden.dtype)

        loss = lm_loss = mcm_loss = mcm_logits = None
        if output_mcm_logits:
            mcm_logits = torch.stack([head(encoder_hidden) for head in self.mcm_heads], dim=2)
        if labels is not None:
            lm_loss = nn.functional.cross_entropy(
                logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE_INDEX,
                label_smoothing=self.config.label_smoothing,
            )
            loss = lm_loss
            if mcm_labels is not None:
                mcm_loss = self.config.mcm_loss_scale * self.mcm_loss_unscaled(encoder_hidden, mcm_labels)
                loss = lm_loss + mcm_loss
        return EnClapOutput(
            loss=loss,
            lm_loss=lm_loss,
            mcm_loss=mcm_loss,
            mcm_logits=mcm_logits,
            logits=logits,
            past_key_values=decoder_outputs.past_key_values,
            decoder_hidden_states=decoder_outputs.hidden_states,
            encoder_last_hidden_state=encoder_hidden,
            encoder_hidden_states=encoder_outputs.hidden_states,
        )

    def mcm_loss_unscaled(self, encoder_hidden: torch.Tensor, mcm_labels: torch.Tensor) -> torch.Tensor:
        """Sum over codebooks k of CE_k / 2^(k+1), CE_k = mean cross-entropy of head k over its masked entries.

        encoder_hidden: [batch, L, d_model]; mcm_labels: [batch, L, num_rvq], -100 = not masked.
        Head k only runs on the rows masked in codebook k (about 15 % of them), not on all rows.
        A codebook with no masked entry in the batch contributes 0 (the official code gives NaN).
        """
        total = encoder_hidden.new_zeros((), dtype=torch.float32)
        for k, head in enumerate(self.mcm_heads):
            targets = mcm_labels[..., k]
            selected = targets != IGNORE_INDEX
            if selected.any():
                ce = nn.functional.cross_entropy(head(encoder_hidden[selected]).float(), targets[selected])
                total = total + ce / 2 ** (k + 1)
        return total

    @torch.no_grad()
    def caption_ids(
        self,
        input_ids: torch.Tensor,
        clap_embedding: torch.Tensor,
        encodec_mask: torch.Tensor,
        attention_mask: torch.Tensor,
        generation: GenerationConfig | None = None,
    ) -> torch.Tensor:
        """Generated token ids [batch, steps] (starting with decoder_start_token_id) for a padded batch.

        The encoder runs once here; ``generate`` gets its output, so nothing codec-specific reaches
        the generation code. Default decoding: :func:`beam_search_config`.
        """
        encoder_outputs = self.model.encoder(input_ids, clap_embedding, encodec_mask, attention_mask)
        return self.generate(
            encoder_outputs=encoder_outputs,
            attention_mask=attention_mask,
            generation_config=generation or beam_search_config(self.config),
        )


def beam_search_config(config: BartConfig, num_beams: int = 4, max_length: int = 50) -> GenerationConfig:
    """EnCLAP's decoding: beam 4, no repeated 3-gram, at most 50 tokens, forced <s> first and </s> last."""
    return GenerationConfig(
        num_beams=num_beams,
        do_sample=False,
        max_length=max_length,
        min_length=0,
        no_repeat_ngram_size=3,
        early_stopping=True,
        length_penalty=1.0,
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        decoder_start_token_id=config.decoder_start_token_id,
        forced_bos_token_id=config.bos_token_id,
        forced_eos_token_id=config.eos_token_id,
    )


# Model presets. "tiny" is a random model for tests and the built-in demo; the BART presets start
# from the published BART weights (the EnCLAP parts -- codec tables, CLAP projection, MCM heads --
# start random, as in the paper).
BART_PRESETS = {"bart-base": "facebook/bart-base", "bart-large": "facebook/bart-large"}
PRESETS = ("tiny", *BART_PRESETS)


def tiny_config(vocab_size: int, **overrides) -> EnClapBartConfig:
    """A 2+2-layer, 64-wide EnCLAP for tests and demos (BART special ids, positions for 1021 frames)."""
    settings = dict(
        vocab_size=vocab_size, d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, max_position_embeddings=1024,
        dropout=0.1, attention_dropout=0.0, activation_dropout=0.0,
        forced_bos_token_id=0, forced_eos_token_id=2,
    )
    settings.update(overrides)
    return EnClapBartConfig(**settings)


def new_model(config: EnClapBartConfig) -> EnClapBartForConditionalGeneration:
    """A freshly initialised EnCLAP to train, e.g. ``new_model(tiny_config(vocab_size))``."""
    return EnClapBartForConditionalGeneration(config)


def from_bart(preset: str) -> EnClapBartForConditionalGeneration:
    """An EnCLAP to train that starts from the published BART weights of ``bart-base`` or
    ``bart-large`` (``from_pretrained``; :class:`~training.enclap.text.PretrainedUnavailable`
    offline); its EnCLAP parts start random."""
    if preset not in BART_PRESETS:
        raise ValueError(f"unknown BART preset {preset!r}; choose one of {sorted(BART_PRESETS)}")
    from training.enclap.text import PretrainedUnavailable

    name = BART_PRESETS[preset]
    try:
        bart = BartForConditionalGeneration.from_pretrained(name)
    except Exception as e:
        raise PretrainedUnavailable(
            f"Could not load the pretrained {name!r} ({type(e).__name__}: {e}).\n"
            f"Download it once with network access (`huggingface-cli download {name}`); "
            "for a demo without network use --model tiny."
        ) from e
    model = new_model(EnClapBartConfig(**{k: v for k, v in bart.config.to_dict().items() if k != "model_type"}))
    missing, unexpected = model.load_state_dict(bart.state_dict(), strict=False)
    new_parts = ("model.encoder.embed_encodec.", "model.encoder.clap_projection.", "mcm_heads.")
    left = [k for k in missing if not k.startswith(new_parts)]
    if left or unexpected:
        raise RuntimeError(f"{name} does not fit the EnCLAP model: missing {left}, unexpected {unexpected}")
    return model
