"""Parity with the official EnCLAP code: a tiny random model's state dict and its outputs.

The fixture (../shared/fixtures/enclap_official/tiny.pt, described in its README) was produced by
the official implementation under transformers 4.29. Loading its published-format state dict into
our model must reproduce every intermediate: this is also the EnCLAP checkpoint importer test.
"""
import pytest
import torch
from transformers import GenerationConfig

from conftest import ENCLAP_FIXTURES, require_fixture
from training.enclap.model import EnClapBartConfig, EnClapBartForConditionalGeneration

ATOL = 1e-5  # the fixture README: about 1e-5 absolute for activations, 1e-6 for losses


@pytest.fixture(scope="module")
def ref():
    return torch.load(require_fixture(ENCLAP_FIXTURES / "tiny.pt"), weights_only=True)


@pytest.fixture(scope="module")
def model(ref):
    model = EnClapBartForConditionalGeneration(EnClapBartConfig(**ref["config"]))
    # strict: every published key name must exist in our model and nothing may be left out
    model.load_state_dict(ref["state_dict"], strict=True)
    return model.eval()


def _train_batch(ref):
    return {k: ref[k] for k in ("input_ids", "clap_embedding", "encodec_mask", "attention_mask")}


def _eval_batch(ref):
    return {k: ref["eval_" + k] for k in ("input_ids", "clap_embedding", "encodec_mask", "attention_mask")}


def test_encoder_input_embeddings_and_positions(ref, model):
    with torch.no_grad():
        embeds, positions = model.model.encoder.embed_inputs(ref["input_ids"], ref["clap_embedding"], ref["encodec_mask"])
        eval_embeds, _ = model.model.encoder.embed_inputs(
            ref["eval_input_ids"], ref["eval_clap_embedding"], ref["eval_encodec_mask"]
        )
    torch.testing.assert_close(embeds, ref["encoder_inputs_embeds"], atol=ATOL, rtol=0)
    torch.testing.assert_close(positions, ref["encoder_pos_embeds"], atol=ATOL, rtol=0)
    torch.testing.assert_close(eval_embeds, ref["eval_encoder_inputs_embeds"], atol=ATOL, rtol=0)


def test_forward_activations_logits_and_losses(ref, model):
    with torch.no_grad():
        out = model(
            **_train_batch(ref), labels=ref["labels"], mcm_labels=ref["mcm_labels"], output_hidden_states=True,
            output_mcm_logits=True,
        )
    torch.testing.assert_close(torch.stack(out.encoder_hidden_states), ref["encoder_hidden_states"], atol=ATOL, rtol=0)
    torch.testing.assert_close(out.encoder_last_hidden_state, ref["encoder_last_hidden_state"], atol=ATOL, rtol=0)
    torch.testing.assert_close(torch.stack(out.decoder_hidden_states), ref["decoder_hidden_states"], atol=ATOL, rtol=0)
    torch.testing.assert_close(out.logits, ref["logits"], atol=ATOL, rtol=0)
    torch.testing.assert_close(out.mcm_logits, ref["mcm_logits"], atol=ATOL, rtol=0)
    assert out.lm_loss.item() == pytest.approx(ref["lm_loss"], abs=2e-6)
    assert out.mcm_loss.item() == pytest.approx(ref["mcm_loss"], abs=2e-6)
    assert out.loss.item() == pytest.approx(ref["loss"], abs=2e-6)


def test_eval_encoder_output(ref, model):
    with torch.no_grad():
        enc = model.model.encoder(**_eval_batch(ref))
    torch.testing.assert_close(enc.last_hidden_state, ref["eval_encoder_last_hidden_state"], atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", ["greedy", "greedy_official_processors", "beam"])
def test_generation_matches_official(ref, model, name):
    kwargs = dict(ref["generation_kwargs"][name])
    generation = GenerationConfig(**kwargs, output_scores=True, return_dict_in_generate=True)
    # transformers 5 fills a None processor setting from the model's defaults (forced_eos 2 here);
    # the official run (4.29) had it off for plain greedy, so the model default is cleared too.
    saved = model.generation_config.forced_eos_token_id, model.generation_config.forced_bos_token_id
    model.generation_config.forced_eos_token_id = kwargs["forced_eos_token_id"]
    model.generation_config.forced_bos_token_id = kwargs["forced_bos_token_id"]
    try:
        with torch.no_grad():
            enc = model.model.encoder(**_eval_batch(ref))
            out = model.generate(
                encoder_outputs=enc, attention_mask=ref["eval_attention_mask"], generation_config=generation
            )
    finally:
        model.generation_config.forced_eos_token_id, model.generation_config.forced_bos_token_id = saved
    key = {"greedy": "greedy_ids", "greedy_official_processors": "greedy_official_processors_ids", "beam": "beam_ids"}[name]
    assert out.sequences.tolist() == ref[key].tolist()
    if name == "beam":
        torch.testing.assert_close(out.sequences_scores, ref["beam_sequences_scores"], atol=ATOL, rtol=0)


def test_default_caption_decoding_is_the_official_beam_search(ref, model):
    """caption_ids' defaults (beam 4, no-repeat 3, forced bos/eos) reproduce the official beam run."""
    from training.enclap.model import beam_search_config

    ids = model.caption_ids(**_eval_batch(ref), generation=beam_search_config(model.config, max_length=10))
    assert ids.tolist() == ref["beam_ids"].tolist()
