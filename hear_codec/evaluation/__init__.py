"""Full HEAR evaluation (embeddings → downstream predictions → scores) on today's Python stack.

Modules
-------
* :mod:`~hear_codec.evaluation.compat` -- the in-process compatibility layer that lets heareval
  2021.1.3's runners work with numpy 2, Lightning 2 and torch >= 2.6 without editing installed files.
* :mod:`~hear_codec.evaluation.embeddings` -- ``python -m hear_codec.evaluation.embeddings``:
  heareval's embeddings runner, unchanged, with the compatibility layer applied.
* :mod:`~hear_codec.evaluation.predictions` -- ``python -m hear_codec.evaluation.predictions``:
  heareval's predictions runner, unchanged, with the compatibility layer applied.
* :mod:`~hear_codec.evaluation.scores` -- reads heareval's score files into one table.
* :mod:`~hear_codec.evaluation.tasks` -- writes small synthetic tasks in the HEAR 2021 layout.
* :mod:`~hear_codec.evaluation.spectral_baseline` -- a parameter-free HEAR module (band energies),
  a sanity baseline for the pipeline.

The end-to-end command is ``python -m hear_codec.evaluate`` (:mod:`hear_codec.evaluate`).
Nothing here is imported by ``import hear_codec``: heareval pulls in TensorFlow and Lightning.
"""
