"""EnCodecMAE training (Pepino et al., 2023): pretraining on EnCodec targets, then self-training.

Read in this order (AudioFormer's package, ``training/audioformer/``, has the same files):

* ``masking.py``    which frames the encoder does not see (the official time-gap rule) and the
                    collate that draws them in the data workers
* ``losses.py``     the loss (weighted cross-entropy over target streams, masked / unmasked)
* ``targets.py``    what the masked frames are predicted as: EnCodec's codes, a teacher's k-means
* ``module.py``     the LightningModule: features, targets, loss, optimiser, export
* ``train.py``      its optimiser config and ``train()``: data loaders, module, engine
* ``pretrain.py``   the command-line pieces of ``python -m training.pretrain --model encodecmae``
* ``self_train.py`` the second stage (k-means targets from a teacher) and its command line,
                    ``python -m training.encodecmae.self_train``; ``kmeans.py`` is its k-means

The shared pieces are one level up: ``training/data/`` (audio files, the mix, crops, the step
sampler), ``training/codec.py`` (the frozen EnCodec), ``training/engine.py`` (devices, checkpoints,
resume, logs). The built-in offline run's pieces (corpus, stand-in targets, input colouring) are in
``training/builtin/``, which nothing here imports.
"""
