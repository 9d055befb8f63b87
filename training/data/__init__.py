"""Audio data for pretraining, one module per job:

- ``manifest.py``: which files a run trains on (folders and manifests, header probing, the
  official length-proportional mix, the validation split, the run's data reports);
- ``crops.py``: random crops at 24 kHz from those files, the run's data options and loaders;
- ``sampler.py``: the resumable training order (:class:`~training.data.sampler.StepSampler`) and
  the seed mixer every family shares.

The built-in synthetic corpus is not here: it belongs to the offline demo (``training/builtin/``).
"""
