"""Audio data for pretraining, one module per job:

- ``manifest.py``: which files a run trains on (folders, manifests and prepared corpora, header
  probing, the official length-proportional mix, the validation split, the run's data reports);
- ``index.py``: those files as numpy arrays (paths in one byte blob), shared by DataLoader workers;
- ``prepared.py``: prepared corpora (``python -m training.prepare``): the manifest parsed with
  numpy, crops read from the 24 kHz segment files (16-bit WAV by ``os.pread``);
- ``crops.py``: random crops at 24 kHz from those files, the run's data options and loaders;
- ``sampler.py``: the resumable training order (:class:`~training.data.sampler.StepSampler`) and
  the seed mixer every family shares.

The built-in synthetic corpus is not here: it belongs to the offline demo (``training/builtin/``).
"""
