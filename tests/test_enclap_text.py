"""Caption tokenizers (training/enclap/text.py): the word-level vocabulary, BART's special ids and
the JSON a checkpoint carries."""
import pytest

from training.enclap.text import (PretrainedUnavailable, build_word_tokenizer, load_bart_tokenizer, normalize_caption,
                                  tokenizer_from_json, tokenizer_to_json)


def test_word_tokenizer_uses_bart_special_ids_and_wraps_each_caption():
    tok = build_word_tokenizer(["A dog barks.", "a dog, twice!", "rare"], min_count=2)
    assert [tok.bos_token_id, tok.pad_token_id, tok.eos_token_id, tok.unk_token_id] == [0, 1, 2, 3]
    assert set(tok.get_vocab()) == {"<s>", "<pad>", "</s>", "<unk>", "a", "dog"}  # words seen twice, sorted after
    ids = tok("A DOG barks.")["input_ids"]
    assert ids == [0, tok.convert_tokens_to_ids("a"), tok.convert_tokens_to_ids("dog"), 3, 2]
    assert normalize_caption("A dog's bark -- twice!") == "a dog's bark twice"


def test_json_round_trip_keeps_vocabulary_and_ids():
    tok = build_word_tokenizer(["rain falls on a roof", "birds sing"])
    again = tokenizer_from_json(tokenizer_to_json(tok))
    assert again.get_vocab() == tok.get_vocab()
    assert again("birds sing on a roof")["input_ids"] == tok("birds sing on a roof")["input_ids"]


def test_missing_bart_tokenizer_is_a_user_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PretrainedUnavailable, match="Could not load the BART tokenizer"):
        load_bart_tokenizer(str(tmp_path / "no-such-tokenizer"))
