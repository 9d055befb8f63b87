"""EnCLAP audio captioning (CLI: ``python -m training.caption``; docs: docs/captioning.md).

model.py      the EnCLAP BART (official parameter names), loss, decoding settings, presets
data.py       Clotho / AudioCaps / generic CSV readers, training and evaluation items, batch layout, MCM masks
cache.py      audio -> EnCodec codes + CLAP embedding, the sharded feature cache
metrics.py    METEOR, CIDEr-D, SPICE, SPIDEr (pycocoevalcap), with reasons for what cannot run
module.py     the Lightning module (training, validation captions, optimiser) and checkpoint loading
text.py       tokenizers (BART's, or a word vocabulary for tiny models)

The CLI is ``training/caption.py``; its ``demo`` command's generated captioned set is
``training/builtin/captions.py``.
"""
