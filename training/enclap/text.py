"""Caption tokenizers: BART's own (pretrained) or a word-level one built from captions (tiny models).

Both use BART's special ids (<s>=0, <pad>=1, </s>=2, <unk>=3) and wrap each caption as
``<s> ... </s>``. A tokenizer travels inside our checkpoints as its JSON (:func:`tokenizer_to_json`),
so evaluation and prediction never need a download.
"""
from __future__ import annotations

import json
import re

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from hear_codec.errors import UserError

SPECIALS = {"bos_token": "<s>", "pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>"}


class PretrainedUnavailable(UserError, RuntimeError):
    """Pretrained weights or a tokenizer could not be loaded (usually: offline and not cached)."""


def load_bart_tokenizer(name: str) -> PreTrainedTokenizerFast:
    """``facebook/bart-base`` / ``facebook/bart-large`` (or a local folder) via ``from_pretrained``."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name)
    except Exception as e:
        raise PretrainedUnavailable(
            f"Could not load the BART tokenizer {name!r} ({type(e).__name__}: {e}).\n"
            f"Download it once with network access (e.g. `huggingface-cli download {name}`) or pass a local "
            "folder; for a demo without network use the 'tiny' model preset, which builds its own vocabulary."
        ) from e


def normalize_caption(text: str) -> str:
    """Lower case, punctuation removed, single spaces (what the word-level vocabulary sees)."""
    return " ".join(re.findall(r"[a-z0-9']+", text.lower()))


def build_word_tokenizer(captions: list[str], min_count: int = 1) -> PreTrainedTokenizerFast:
    """Word-level tokenizer over the normalised words of ``captions`` (for tiny random models)."""
    counts: dict[str, int] = {}
    for caption in captions:
        for word in normalize_caption(caption).split():
            counts[word] = counts.get(word, 0) + 1
    vocab = {tok: i for i, tok in enumerate(SPECIALS.values())}  # <s>=0 <pad>=1 </s>=2 <unk>=3
    for word in sorted(w for w, c in counts.items() if c >= min_count):
        vocab[word] = len(vocab)
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.Punctuation(behavior="removed")]
    )
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    return _wrap(backend)


def _wrap(backend: Tokenizer) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(tokenizer_object=backend, padding_side="right", **SPECIALS)


def tokenizer_to_json(tokenizer: PreTrainedTokenizerFast) -> str:
    """Serialise a fast tokenizer (vocabulary and pipeline) to one JSON string."""
    return json.dumps({"backend": tokenizer.backend_tokenizer.to_str()})


def tokenizer_from_json(text: str) -> PreTrainedTokenizerFast:
    return _wrap(Tokenizer.from_str(json.loads(text)["backend"]))
