"""AudioFormer training (Li et al., 2023): masked-LM pretraining on EnCodec codes, then fine-tuning.

Read in this order (EnCodecMAE's package, ``training/encodecmae/``, has the same files):

* ``masking.py``   which code tokens the MLM predicts and how they are corrupted (BERT's rule)
* ``losses.py``    the MLM loss (cross-entropy on the chosen positions, per codebook)
* ``module.py``    the LightningModule: tokens, masks, loss, optimiser, export
* ``train.py``     its optimiser config and ``train()``: data loaders, module, engine
* ``pretrain.py``  the command-line pieces of ``python -m training.pretrain --model audioformer``
* ``finetune.py``  the second stage (FT1 / FT2 on labelled audio) and its command line,
                   ``python -m training.audioformer.finetune``; ``mpc.py`` is FT2's contrastive term

The shared pieces are one level up: ``training/data.py`` (audio files, the mix, the built-in
corpus), ``training/engine.py`` (devices, checkpoints, resume, logs).
"""
