"""AudioFormer training (Li et al., 2023): masked-LM pretraining on EnCodec codes, then fine-tuning.

Read in this order (EnCodecMAE's package, ``training/encodecmae/``, has the same files):

* ``masking.py``   which code tokens the MLM predicts and how they are corrupted (BERT's rule)
* ``losses.py``    the MLM loss (cross-entropy on the chosen positions, per codebook)
* ``mpc.py``       FT2's multi-positive contrastive term
* ``module.py``    the LightningModules: MLM pretraining (tokens, masks, loss, optimiser, export)
                   and FT1 / FT2 fine-tuning
* ``train.py``     its optimiser config and ``train()``: data loaders, module, engine
* ``pretrain.py``  the command-line pieces of ``python -m training.pretrain --model audioformer``
* ``labels.py``, ``metrics.py``  fine-tuning's labelled data and its scores
* ``finetune.py``  the second stage's model set-up and command line,
                   ``python -m training.audioformer.finetune``

The shared pieces are one level up: ``training/data/`` (audio files, the mix, crops, the step
sampler), ``training/codec.py`` (the frozen EnCodec), ``training/engine.py`` (devices, checkpoints,
resume, logs).
"""
