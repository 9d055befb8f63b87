"""``python -m training.caption``: its subcommands end to end on tiny settings (preprocess, train,
resume, evaluate, predict on a few synthetic clips with a tiny model; long clips, exact resume,
fine-tuning from a trained EnCLAP), and its errors."""
import csv
import json

import pytest
import torch

from conftest import assert_user_error, run_module


@pytest.mark.slow
def test_cli_preprocess_train_resume_evaluate_predict(tmp_path):
    from training.caption import main
    from training.builtin.captions import make_synthetic_set

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


# ---- long clips, exact resume, fine-tuning from a trained EnCLAP (tiny model, codes made in the test) ----

class FrameIndexCodes:
    """Stands in for AudioFeaturizer in ``build_cache``: a clip of n samples gets n codec frames whose
    first two codebooks spell the frame index (t % 1000, t // 1000), so a window's start can be read
    back from the batch; the other codebooks are random, CLAP is zero."""

    settings = {"codec": "frame-index (test)", "clap": "none", "bandwidth": 12.0, "codebooks": 16}

    def __call__(self, clips):
        out = []
        for wav, _ in clips:
            t = torch.arange(len(wav))
            codes = torch.randint(0, 1024, (len(wav), 16), generator=torch.Generator().manual_seed(len(wav)))
            codes[:, 0], codes[:, 1] = t % 1000, t // 1000
            out.append((codes.to(torch.int16), torch.zeros(512)))
        return out


LONG = 1500  # codec frames (20 s); the tiny model's window is 1021


@pytest.fixture(scope="module")
def code_cache(tmp_path_factory):
    """A feature cache of one long clip (1500 frames) and one short clip (50 frames), two captions each."""
    import soundfile as sf

    from training.enclap.cache import build_cache
    from training.enclap.data import read_caption_csv

    root = tmp_path_factory.mktemp("codes")
    for name, frames in (("long.wav", LONG), ("short.wav", 50)):
        sf.write(root / name, torch.zeros(frames).numpy(), 16_000)
    (root / "captions.csv").write_text("file,caption\nlong.wav,a dog barks\nlong.wav,a dog is barking\n"
                                       "short.wav,rain falls\nshort.wav,it rains\n")
    return build_cache(read_caption_csv(root / "captions.csv", root), root / "cache", FrameIndexCodes(), progress=False)


def _train(cache, out, *extra):
    from training.caption import main

    main(["train", "--train", str(cache), "--val", str(cache), "--out", str(out), "--batch-size", "2",
          "--lr", "1e-3", "--warmup-steps", "2", "--val-every", "0", "--ckpt-every", "2", "--log-every", "1",
          "--accelerator", "cpu", "--devices", "1", "--no-progress-bar", *extra])


def _weights(path):
    return {k: v for k, v in torch.load(path, weights_only=False)["state_dict"].items()}


@pytest.fixture()
def window_starts(monkeypatch):
    """{draw seed: first frame} of every window the training collator cuts from the long clip
    (batches the loader prefetches past the last step included)."""
    from training.enclap.data import EnClapCollator

    starts, window = {}, EnClapCollator.window

    def spy(self, codes, generator=None):
        w = window(self, codes, generator)
        if len(codes) == LONG:
            start = int(w[0, 0]) + 1000 * int(w[0, 1])
            assert len(w) == 1021 and torch.equal(w, codes[start : start + 1021])
            starts[generator.initial_seed()] = start
        return w

    monkeypatch.setattr(EnClapCollator, "window", spy)
    return starts


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_long_clip_windows_move_across_steps_and_resume_is_exact(code_cache, tmp_path, window_starts):
    _train(code_cache, tmp_path / "straight", "--model", "tiny", "--max-steps", "6")
    straight = dict(window_starts)
    assert len(straight) >= 6 and len(set(straight.values())) > 3  # a fresh random window each time it is drawn
    assert all(0 <= s <= LONG - 1021 for s in straight.values())

    window_starts.clear()
    _train(code_cache, tmp_path / "resumed", "--model", "tiny", "--max-steps", "3")
    _train(code_cache, tmp_path / "resumed", "--model", "tiny", "--max-steps", "6", "--resume")
    assert window_starts == straight  # the resumed run cuts the windows of the uninterrupted one
    a, b = _weights(tmp_path / "straight" / "last.ckpt"), _weights(tmp_path / "resumed" / "last.ckpt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    window_starts.clear()
    _train(code_cache, tmp_path / "fixed", "--model", "tiny", "--max-steps", "6", "--fixed-crops-and-masks")
    assert len(window_starts) == 2  # one window per (clip, caption) pair, the same in every epoch


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_train_continues_from_a_trained_enclap_checkpoint_not_from_a_fresh_model(code_cache, tmp_path):
    from training.caption import main
    from training.enclap.module import load_captioner

    _train(code_cache, tmp_path / "first", "--model", "tiny", "--max-steps", "2")
    trained = _weights(tmp_path / "first" / "last.ckpt")

    # lr 0: the fine-tuning run's weights are exactly where it started
    _train(code_cache, tmp_path / "still", "--init", str(tmp_path / "first" / "last.ckpt"), "--lr", "0",
           "--max-steps", "1")
    still = _weights(tmp_path / "still" / "last.ckpt")
    assert all(torch.equal(still[k], trained[k]) for k in trained)
    _train(code_cache, tmp_path / "fresh", "--model", "tiny", "--lr", "0", "--max-steps", "1")
    fresh = _weights(tmp_path / "fresh" / "last.ckpt")
    assert not torch.equal(fresh["model.model.encoder.embed_encodec.0.weight"],
                           trained["model.model.encoder.embed_encodec.0.weight"])

    # a published-style folder (config.json + weights, tokenizer apart) starts there too
    first = load_captioner(tmp_path / "first" / "last.ckpt")
    first.model.save_pretrained(tmp_path / "published")
    first.tokenizer.save_pretrained(tmp_path / "tokenizer")
    _train(code_cache, tmp_path / "from-published", "--init", str(tmp_path / "published"), "--tokenizer",
           str(tmp_path / "tokenizer"), "--lr", "0", "--max-steps", "1")
    assert all(torch.equal(_weights(tmp_path / "from-published" / "last.ckpt")[k], trained[k]) for k in trained)

    # and it trains further: a fresh optimiser from step 0, weights moving away from the start
    _train(code_cache, tmp_path / "further", "--init", str(tmp_path / "first" / "last.ckpt"), "--max-steps", "2")
    further = torch.load(tmp_path / "further" / "last.ckpt", weights_only=False)
    assert further["global_step"] == 2
    assert any(not torch.equal(further["state_dict"][k], trained[k]) for k in trained)
    assert load_captioner(tmp_path / "further" / "last.ckpt").tokenizer.get_vocab() == first.tokenizer.get_vocab()

    with pytest.raises(SystemExit):
        main(["train", "--train", str(code_cache), "--val", str(code_cache), "--out", str(tmp_path / "x"),
              "--init", str(tmp_path / "first" / "last.ckpt"), "--model", "tiny"])


def test_cli_missing_feature_cache_is_a_message_not_a_traceback(tmp_path):
    result = run_module("training.caption", "train", "--train", tmp_path / "cache-train", "--val", tmp_path / "cache-val",
                        "--out", tmp_path / "run", "--model", "tiny")
    assert_user_error(result, r"error: .*cache-train is not a feature cache \(no manifest.json\)")


def test_options_out_of_their_range_are_refused_by_the_parser(capsys):
    """A batch of 0, a negative learning rate, no beams, a masked share of 1 or a NaN: the parser's
    message naming the option, before any model or data is loaded."""
    from training.caption import build_parser

    base = ["train", "--train", "t", "--val", "v", "--out", "o", "--model", "tiny"]
    for option, value, rule in (("--batch-size", "0", "a whole number > 0"), ("--lr", "-0.0001", "a number >= 0"),
                                ("--lr", "nan", "a number >= 0"), ("--weight-decay", "-0.1", "a number >= 0"),
                                ("--warmup-steps", "-5", "a whole number >= 0"), ("--beams", "0", "a whole number > 0"),
                                ("--mask-prob", "1", r"a number in [0, 1)"), ("--mcm-weight", "-1", "a number >= 0"),
                                ("--mask-span", "0", "a whole number > 0")):
        with pytest.raises(SystemExit) as exit_info:
            build_parser().parse_args(base + [option, value])
        assert exit_info.value.code == 2
        assert f"argument {option}: must be {rule}, got '{value}'" in capsys.readouterr().err
    assert build_parser().parse_args(base + ["--mask-prob", "0", "--mcm-weight", "0"]).mcm_weight == 0.0  # MCM off
