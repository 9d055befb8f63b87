"""EnCLAP training: optimiser groups and schedule; the CLI end to end (preprocess, train, resume,
evaluate, predict) on a few synthetic clips with a tiny model."""
import csv
import json

import pytest
import torch

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


@pytest.mark.slow
def test_cli_preprocess_train_resume_evaluate_predict(tmp_path):
    from training.caption import main
    from training.enclap.synthetic import make_synthetic_set

    csvs = make_synthetic_set(tmp_path / "data", {"train": 6, "val": 2}, seed=0)
    for split, path in csvs.items():
        main(["preprocess", "--dataset", "csv", "--csv", str(path), "--audio-dir", str(tmp_path / "data" / "audio"),
              "--out", str(tmp_path / f"cache-{split}"), "--codec", "offline", "--clap", "none", "--device", "cpu",
              "--no-progress-bar"])
    run = tmp_path / "run"
    train = ["train", "--train", str(tmp_path / "cache-train"), "--val", str(tmp_path / "cache-val"), "--out", str(run),
             "--model", "tiny", "--batch-size", "4", "--lr", "1e-3", "--warmup-steps", "2", "--val-every", "1",
             "--ckpt-every", "2", "--log-every", "1", "--accelerator", "cpu", "--devices", "1",
             "--max-caption-length", "8", "--beams", "2", "--no-progress-bar"]
    main(train + ["--max-steps", "2"])
    assert (run / "best.ckpt").is_file() and (run / "last.ckpt").is_file()
    assert torch.load(run / "last.ckpt", weights_only=False)["global_step"] == 2
    main(train + ["--max-steps", "3", "--resume"])
    assert torch.load(run / "last.ckpt", weights_only=False)["global_step"] == 3

    main(["evaluate", "--checkpoint", str(run / "best.ckpt"), "--cache", str(tmp_path / "cache-val"),
          "--out", str(tmp_path / "eval"), "--metrics", "cider_d", "spider", "--max-caption-length", "8",
          "--device", "cpu", "--no-progress-bar"])
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert isinstance(report["metrics"]["cider_d"]["value"], float)
    assert report["metrics"]["spider"]["value"] is not None or report["metrics"]["spider"]["unavailable"]

    audio = sorted((tmp_path / "data" / "audio").glob("val_*.wav"))
    main(["predict", "--checkpoint", str(run / "best.ckpt"), "--audio", *map(str, audio), "--out",
          str(tmp_path / "pred.csv"), "--codec", "offline", "--clap", "none", "--device", "cpu", "--batch-size", "2",
          "--max-caption-length", "8", "--no-progress-bar"])
    with open(tmp_path / "pred.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["file"] for r in rows] == list(map(str, audio))
    with open(tmp_path / "eval" / "predictions.csv") as f:  # same model, same clips: same captions
        from_cache = {r["file"]: r["caption"] for r in csv.DictReader(f)}
    assert [r["caption"] for r in rows] == [from_cache[p.name] for p in audio]
