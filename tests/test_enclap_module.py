"""EnCLAP's LightningModule (training/enclap/module.py): optimiser groups and learning-rate schedules.
Whole runs through the CLI: test_caption.py."""
import pytest

from training.enclap.model import tiny_config
from training.enclap.module import CaptioningModule
from training.enclap.text import build_word_tokenizer, tokenizer_to_json


def test_no_weight_decay_on_biases_and_layernorm_and_inverse_sqrt_schedule():
    tok = build_word_tokenizer(["a b c"])
    module = CaptioningModule(tiny_config(len(tok)).to_dict(), tokenizer_to_json(tok), lr=1e-3, warmup_steps=10)
    opt = module.configure_optimizers()
    decay, no_decay = opt["optimizer"].param_groups
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in module.model.named_parameters()}
    assert all(names[id(p)].endswith("bias") or "layer_norm" in names[id(p)] or "layernorm" in names[id(p)]
               for p in no_decay["params"])
    assert not any(names[id(p)].endswith("bias") for p in decay["params"])
    n_params = len({id(p) for p in module.model.parameters()})
    assert len(decay["params"]) + len(no_decay["params"]) == n_params  # tied embeddings counted once

    schedule = opt["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(40):
        lrs.append(opt["optimizer"].param_groups[0]["lr"])
        opt["optimizer"].step()
        schedule.step()
    assert lrs[5] == pytest.approx(5e-4)  # linear warm-up
    assert lrs[10] == pytest.approx(1e-3)  # peak
    assert lrs[40 - 1] == pytest.approx(1e-3 * (10 / 39) ** 0.5)  # 1/sqrt decay


def test_official_clotho_fine_tuning_schedule_no_warmup_timescale_1000():
    tok = build_word_tokenizer(["a b c"])
    module = CaptioningModule(tiny_config(len(tok)).to_dict(), tokenizer_to_json(tok), lr=2e-5, warmup_steps=0,
                              schedule_timescale=1000)
    opt = module.configure_optimizers()
    lrs = []
    for _ in range(3001):
        lrs.append(opt["optimizer"].param_groups[0]["lr"])
        opt["optimizer"].step()
        opt["lr_scheduler"]["scheduler"].step()
    # cfg/clotho_finetune: lr 2e-5 / sqrt((step + 1000) / 1000) from the first step
    assert lrs[0] == pytest.approx(2e-5) and lrs[3000] == pytest.approx(2e-5 * 0.5)
