"""EnCLAP model: encoder input layout, MCM masks, loss arithmetic, batched decoding, checkpoint import."""
import json

import pytest
import torch

from training.enclap.data import EnClapCollator
from training.enclap.model import (
    EnClapBartForConditionalGeneration,
    beam_search_config,
    tiny_config,
)
from training.enclap.text import build_word_tokenizer

CAPTIONS = ["a dog barks twice", "rain falls on a roof", "a car passes by quickly", "birds sing"]


@pytest.fixture(scope="module")
def tokenizer():
    return build_word_tokenizer(CAPTIONS)


def _model(tokenizer, seed=0, **overrides):
    torch.manual_seed(seed)
    # init_std 0.2 (as in the official fixture) makes logits peaky enough that decoding is not a near-tie
    overrides.setdefault("init_std", 0.2)
    return EnClapBartForConditionalGeneration(tiny_config(len(tokenizer), max_position_embeddings=64, **overrides)).eval()


def _items(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        {"id": f"clip{i}", "codes": torch.randint(0, 1024, (t, 16), generator=g),
         "clap": torch.nn.functional.normalize(torch.randn(512, generator=g), dim=0), "caption": CAPTIONS[i % 4]}
        for i, t in enumerate(lengths)
    ]


def test_encoder_input_layout_and_positions(tokenizer):
    model = _model(tokenizer)
    items = _items([5, 3])
    batch = EnClapCollator(model.config, tokenizer)(items)
    ids, enc_mask, att = batch["input_ids"], batch["encodec_mask"], batch["attention_mask"]
    assert ids.shape == (2, 8, 16)
    # item 1: 3 frames -> rows [CLAP, <s>, f1, f2, f3, </s>, pad, pad]
    assert (ids[1, :2] == 0).all() and (ids[1, 5] == 2).all() and (ids[1, 6:] == 1024).all()
    assert torch.equal(ids[1, 2:5], items[1]["codes"])
    assert enc_mask[1].tolist() == [0, 0, 1, 1, 1, 0, 1, 1]  # padding rows count as codec rows (official)
    assert att[1].tolist() == [1, 1, 1, 1, 1, 1, 0, 0]

    enc = model.model.encoder
    with torch.no_grad():
        embeds, positions = enc.embed_inputs(ids, batch["clap_embedding"], enc_mask)
        torch.testing.assert_close(embeds[:, 0], enc.clap_projection(batch["clap_embedding"]))
        torch.testing.assert_close(embeds[1, 1], model.model.shared.weight[0])
        torch.testing.assert_close(embeds[1, 5], model.model.shared.weight[2])
        frame = sum(enc.embed_encodec[k].weight[items[1]["codes"][1, k]] for k in range(16))
        torch.testing.assert_close(embeds[1, 3], frame)
        assert (embeds[1, 6:] == 0).all()  # pad ids embed to zero
        assert (positions[:, 0] == 0).all()  # the CLAP slot has no position
        # row j >= 1 is BART position j - 1, stored at index j + 1 (BART's offset of 2)
        torch.testing.assert_close(positions[0, 1:], enc.embed_positions.weight[2:9].expand(1, -1, -1)[0])


def test_collator_draws_masks_from_the_item_seed_and_labels_hold_the_codes(tokenizer):
    model = _model(tokenizer)
    collate = EnClapCollator(model.config, tokenizer, mask_prob=0.15, mask_span=10)
    items = _items([60, 40])
    seeded = lambda seeds: [dict(it, seed=s) for it, s in zip(items, seeds)]  # noqa: E731
    a, b, again = collate(seeded([1, 2])), collate(seeded([3, 4])), collate(seeded([1, 2]))
    masked_a = a["mcm_labels"] != -100
    assert not torch.equal(masked_a, b["mcm_labels"] != -100)  # another draw, other masks
    assert torch.equal(a["input_ids"], again["input_ids"]) and torch.equal(a["mcm_labels"], again["mcm_labels"])
    clean = EnClapCollator(model.config, tokenizer)(items)["input_ids"]
    assert torch.equal(a["mcm_labels"][masked_a], clean[masked_a])
    assert (a["input_ids"][masked_a] == 1024).all()
    assert torch.equal(a["input_ids"][~masked_a], clean[~masked_a])
    assert not masked_a[:, :2].any() and not masked_a[1, 42:].any()  # only codec frames are masked


def test_long_clips_are_cropped_at_a_random_start_for_training_and_at_the_start_for_evaluation(tokenizer):
    model = _model(tokenizer)  # 64 positions: windows of 61 frames
    (item,) = _items([150])
    item["codes"][:, 0] = torch.arange(150)  # frame index, to read the window's start
    train = EnClapCollator(model.config, tokenizer, random_crop=True)
    starts = [int(train([dict(item, seed=s)])["input_ids"][0, 2, 0]) for s in range(1000)]
    assert min(starts) == 0 and max(starts) == 150 - 61  # every start of a full window, both ends included
    assert len(set(starts)) > 60
    for s in range(3):
        batch = train([dict(item, seed=s)])
        start = int(batch["input_ids"][0, 2, 0])
        assert batch["input_ids"].shape[1] == 61 + 3
        assert torch.equal(batch["input_ids"][0, 2:-1], item["codes"][start : start + 61])
    evaluation = EnClapCollator(model.config, tokenizer)([dict(item, seed=5)])
    assert torch.equal(evaluation["input_ids"][0, 2:-1], item["codes"][:61])
    short = _items([30])
    assert torch.equal(train([dict(short[0], seed=0)])["input_ids"][0, 2:-1], short[0]["codes"])


def test_total_loss_matches_hand_computation(tokenizer):
    model = _model(tokenizer)
    batch = EnClapCollator(model.config, tokenizer, mask_prob=0.3, mask_span=3)(_items([12, 9]))
    inputs = {k: batch[k] for k in ("input_ids", "clap_embedding", "encodec_mask", "attention_mask")}
    with torch.no_grad():
        out = model(**inputs, labels=batch["labels"], mcm_labels=batch["mcm_labels"], output_mcm_logits=True)

    labels = batch["labels"]
    logp = out.logits.log_softmax(-1)
    keep = labels != -100
    nll = -logp[keep].gather(1, labels[keep].unsqueeze(1)).squeeze(1)
    uniform = -logp[keep].mean(-1)
    lm = (0.8 * nll + 0.2 * uniform).mean()  # label smoothing 0.2

    mcm = 0.0
    for k in range(16):
        target = batch["mcm_labels"][..., k]
        sel = target != -100
        if sel.any():
            lp = out.mcm_logits[:, :, k].log_softmax(-1)[sel]
            mcm += -lp.gather(1, target[sel].unsqueeze(1)).mean() * 0.5 ** (k + 1)
    assert out.lm_loss.item() == pytest.approx(lm.item(), rel=1e-5)
    assert out.mcm_loss.item() == pytest.approx(0.7 * mcm.item(), rel=1e-5)
    assert out.loss.item() == pytest.approx(lm.item() + 0.7 * mcm.item(), rel=1e-5)


def test_codebook_without_masks_contributes_zero_not_nan(tokenizer):
    model = _model(tokenizer)
    batch = EnClapCollator(model.config, tokenizer)(_items([6]))
    mcm_labels = torch.full_like(batch["input_ids"], -100)
    mcm_labels[0, 3, 0] = 7  # only codebook 0 has a target
    with torch.no_grad():
        hidden = model.model.encoder(batch["input_ids"], batch["clap_embedding"], batch["encodec_mask"],
                                     batch["attention_mask"]).last_hidden_state
        loss = model.mcm_loss_unscaled(hidden, mcm_labels)
        expected = 0.5 * torch.nn.functional.cross_entropy(model.mcm_heads[0](hidden[0, 3:4]), torch.tensor([7]))
    assert torch.isfinite(loss) and loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_batched_beam_search_equals_one_at_a_time(tokenizer):
    model = _model(tokenizer, seed=3)
    collate = EnClapCollator(model.config, tokenizer)
    items = _items([20, 7, 14, 3, 11], seed=5)
    generation = beam_search_config(model.config, max_length=12)
    batched = model.caption_ids(**_inputs(collate(items)), generation=generation)
    for b, item in enumerate(items):
        single = model.caption_ids(**_inputs(collate([item])), generation=generation)[0]
        got = batched[b][: len(single)]
        assert got.tolist() == single.tolist()
        assert (batched[b][len(single):] == model.config.pad_token_id).all()
    assert len({tuple(r) for r in batched.tolist()}) > 1  # different inputs, not one constant caption


def _inputs(batch):
    return {k: batch[k] for k in ("input_ids", "clap_embedding", "encodec_mask", "attention_mask")}


def test_published_checkpoint_folder_loads_and_captions(tokenizer, tmp_path):
    """An EnCLAP folder as published (config.json with model_type bart + pytorch_model.bin with
    the official key names) loads through load_captioner and captions a clip."""
    from training.enclap.module import load_captioner

    model = _model(tokenizer, seed=1)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    official_names = {"final_logits_bias", "model.encoder.clap_projection.weight", "model.encoder.clap_projection.bias",
                      "lm_head.weight", "model.shared.weight"}
    official_names |= {f"model.encoder.embed_encodec.{i}.weight" for i in range(16)}
    official_names |= {f"mcm_heads.{i}.{p}" for i in range(16) for p in ("weight", "bias")}
    assert official_names <= set(state)
    assert state["model.encoder.embed_encodec.0.weight"].shape == (1088, 64)
    torch.save(state, tmp_path / "pytorch_model.bin")
    config = model.config.to_dict()
    config["architectures"] = ["EnClapBartForConditionalGeneration"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    tokenizer.save_pretrained(tmp_path / "tokenizer")

    captioner = load_captioner(tmp_path, tokenizer=str(tmp_path / "tokenizer"))
    for name, value in state.items():
        torch.testing.assert_close(captioner.model.state_dict()[name], value, rtol=0, atol=0)
    captioner.hparams.max_caption_length = 10
    batch = EnClapCollator(captioner.model.config, captioner.tokenizer)(_items([9]))
    captions = captioner.captions(batch)
    assert len(captions) == 1 and captions[0] and all(w in tokenizer.get_vocab() for w in captions[0].split())
