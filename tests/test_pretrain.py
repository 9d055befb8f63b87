"""End to end: `python -m training.pretrain` on tiny settings (CPU, a few steps)."""
import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from lightning.pytorch.callbacks import Callback

import hear_codec
from conftest import assert_user_error, fill_disk, run_module
from hear_codec import cli
from hear_codec.checkpoint import read_checkpoint
from hear_codec.codec import load_codec
from training import engine, pretrain
from training.codec import CodecConfig

TINY = ["--synthetic-clips", "6", "--synthetic-val-clips", "2", "--batch-size", "2", "--crop-seconds", "1.0",
        "--num-workers", "0", "--no-progress-bar", "--log-every", "1", "--val-every", "2"]


@pytest.fixture(scope="module", autouse=True)
def shared_codec():
    """Build the offline codec once for the module (it is deterministic; building it takes seconds)."""
    original = CodecConfig.load
    codec = load_codec("offline")
    CodecConfig.load = lambda self: codec if self.weights == "offline" else original(self)
    yield codec
    CodecConfig.load = original


class Crash(Callback):
    """Kills the run (an exception, no clean end) when it is about to take step ``at``."""

    def __init__(self, at):
        self.at = at

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.at:
            raise RuntimeError("simulated kill")


def weights(path):
    return read_checkpoint(path)["state_dict"]


def test_killed_then_resumed_run_matches_uninterrupted(tmp_path, monkeypatch):
    steps = ["--max-steps", "4", "--ckpt-every", "2", "--accumulate-grad-batches", "2"]
    pretrain.main(["--out", str(tmp_path / "straight")] + TINY + steps)

    make_trainer = engine.make_trainer
    monkeypatch.setattr(engine, "make_trainer",
                        lambda *a, **k: make_trainer(*a, callbacks=[Crash(3)], **k))
    with pytest.raises(RuntimeError, match="simulated kill"):
        pretrain.main(["--out", str(tmp_path / "killed")] + TINY + steps)
    monkeypatch.setattr(engine, "make_trainer", make_trainer)
    at_kill = read_checkpoint(tmp_path / "killed" / "last.ckpt.hearcodec")
    assert at_kill["metadata"]["step"] == 2
    pretrain.main(["--out", str(tmp_path / "killed")] + TINY + steps + ["--resume"])

    a = weights(tmp_path / "straight" / "last.ckpt.hearcodec")
    b = weights(tmp_path / "killed" / "last.ckpt.hearcodec")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert read_checkpoint(tmp_path / "killed" / "last.ckpt.hearcodec")["metadata"]["step"] == 4
    # and the last two steps did move the weights
    assert any(not torch.equal(a[k], v) for k, v in at_kill["state_dict"].items())
    # logs: one version per run, losses per codebook, a loss curve
    logs = sorted((tmp_path / "killed" / "logs").glob("version_*/metrics.csv"))
    assert len(logs) == 2
    header = logs[0].read_text().splitlines()[0]
    assert "train/loss" in header and "train/masked_acc_q7" in header and "val/loss" in header
    assert (tmp_path / "killed" / "loss_curve.png").stat().st_size > 1000


def test_a_checkpoint_with_its_targets_under_former_names_resumes_exactly(tmp_path):
    """Training checkpoints written before the targets had one interface stored them as ``codec.*``:
    the frozen targets are rebuilt from the options, so such a checkpoint resumes, and exactly; a
    checkpoint whose targets hold other values than the run's is refused with a message."""
    steps = ["--max-steps", "4", "--ckpt-every", "2"]
    pretrain.main(["--out", str(tmp_path / "straight")] + TINY + steps)
    pretrain.main(["--out", str(tmp_path / "old")] + TINY + ["--max-steps", "2", "--ckpt-every", "2"])
    last = tmp_path / "old" / "last.ckpt"
    checkpoint = torch.load(last, weights_only=False)
    targets = [k for k in checkpoint["state_dict"] if k.startswith("targets.")]
    assert targets  # the stand-in's centroids
    checkpoint["state_dict"] = {k.replace("targets.", "codec.", 1): v for k, v in checkpoint["state_dict"].items()}
    torch.save(checkpoint, last)
    pretrain.main(["--out", str(tmp_path / "old")] + TINY + steps + ["--resume"])
    a, b = weights(tmp_path / "straight" / "last.ckpt.hearcodec"), weights(tmp_path / "old" / "last.ckpt.hearcodec")
    assert all(torch.equal(a[k], b[k]) for k in a)

    checkpoint = torch.load(last, weights_only=False)
    checkpoint["state_dict"][targets[0]] = checkpoint["state_dict"][targets[0]] + 1.0
    torch.save(checkpoint, last)
    with pytest.raises(cli.UserError, match=r"the checkpoint's targets differ from this run's \(targets\."):
        pretrain.main(["--out", str(tmp_path / "old")] + TINY + ["--max-steps", "6", "--resume"])


def test_a_constant_run_resumed_with_a_decay_tail_decays_from_its_own_step(tmp_path):
    """--resume --schedule cosine --decay-steps N on a constant run: the checkpoint holds no scheduler,
    so the new one starts counting at 0; the learning rate must still follow the run's step."""
    out = str(tmp_path / "run")
    pretrain.main(["--out", out, "--max-steps", "4", "--lr", "0.01"] + TINY)
    pretrain.main(["--out", out, "--max-steps", "8", "--lr", "0.01", "--schedule", "cosine", "--decay-steps", "4",
                   "--resume"] + TINY)
    _, lrs = engine.read_metrics(tmp_path / "run" / "logs")["lr-AdamW"]  # one per step, in order
    expected = [0.01 * engine.lr_factor(s, 0, "cosine", 8, 4) for s in range(8)]
    assert len(lrs) == 8
    assert lrs[:4] == pytest.approx([0.01] * 4)  # the constant run
    assert lrs[4:] == pytest.approx(expected[4:])  # 0.01, then down the cosine (from the top if counted from 0)
    assert lrs[-1] < 0.002
    # the same folder resumed with options that make another model: a message, not Lightning's traceback
    with pytest.raises(cli.UserError, match=r"holds another model than these options make \(model\.\S+ is \[\d+(, \d+)*\] there, "):
        pretrain.main(["--out", out, "--max-steps", "9", "--preset", "tiny", "--resume"] + TINY)


def write_audio_folder(folder: Path):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(4):
        sr = (16000, 44100, 48000, 24000)[i]
        t = np.arange(int(sr * (0.7 + 0.5 * i))) / sr
        x = 0.3 * np.sin(2 * np.pi * (200 + 100 * i) * t) + 0.01 * rng.standard_normal(len(t))
        sf.write(folder / f"clip{i}.wav", np.stack([x, x], 1) if i % 2 else x, sr)
    (folder / "broken.flac").write_bytes(b"fLaC" + bytes(range(200)))


@pytest.mark.slow
def test_data_run_skips_corrupt_file_and_passes_hear_validator(tmp_path):
    audio = tmp_path / "audio"
    write_audio_folder(audio)
    out = tmp_path / "run"
    path = pretrain.main(["--out", str(out), "--data", str(audio), "--codec", "offline", "--val-fraction", "0.25",
                          "--max-steps", "2", "--batch-size", "2", "--crop-seconds", "1.0", "--num-workers", "0",
                          "--no-progress-bar", "--val-every", "1"])
    report = (out / "skipped_files.tsv").read_text().splitlines()
    assert len(report) == 2 and report[1].startswith(str(audio / "broken.flac"))
    meta = read_checkpoint(path)["metadata"]
    assert meta["skipped"] == 1 and meta["train_files"] == 3 and meta["val_files"] == 1
    # the checkpoint loads in hear_codec and passes the real validator
    model = hear_codec.load_model(path, sample_rate=16000)
    assert hear_codec.get_scene_embeddings(torch.zeros(2, 16000), model).shape == (2, 64)
    assert_hear_validator_passes(path)


def assert_hear_validator_passes(path):
    validator = Path(sys.executable).parent / "hear-validator"
    if not validator.exists():
        validator = shutil.which("hear-validator")
    assert validator, "hear-validator is not installed (pip install hearvalidator --no-deps)"
    proc = subprocess.run([str(validator), "hear_codec", "--model", str(path)], capture_output=True, text=True,
                          timeout=900, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Looks good!" in proc.stdout


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit):
        pretrain.main(["--help"])
    text = capsys.readouterr().out
    assert text.count("EncodecMAEBuiltin") == 1  # the recipe is named once; the defaults shown are the paper's
    parser = pretrain.build_parser()
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            assert action.help and len(action.help) > 10, action.option_strings


def test_unknown_model_is_a_clear_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        pretrain.main(["--model", "nosuch"])
    assert exit_info.value.code == 2
    assert "--model: invalid choice: 'nosuch' (choose from" in capsys.readouterr().err


def test_a_number_out_of_range_is_a_clear_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        pretrain.main(["--batch-size", "0"])
    assert exit_info.value.code == 2
    assert "argument --batch-size: must be a whole number > 0, got '0'" in capsys.readouterr().err


@pytest.mark.slow
def test_short_built_in_run_passes_hear_validator_and_learning_check(tmp_path):
    """The no-argument run, shortened (few clips, 2 steps): its checkpoint passes the real
    hear-validator, and the learning-is-real script runs on it end to end (its numbers mean
    nothing after 2 steps; the measured figures are in docs/pretraining.md, "The built-in run")."""
    from training.builtin import learning_check

    out = tmp_path / "run"
    path = pretrain.main(["--out", str(out), "--max-steps", "2", *TINY])
    payload = read_checkpoint(path)
    meta = payload["metadata"]
    assert meta["data"] == "synthetic" and meta["corpus_sounds"] == "spectral"  # stand-in targets: spectral words
    assert meta["preset"] == "mini" and (payload["config"]["dim"], payload["config"]["vocab_size"]) == (128, 64)
    assert payload["config"]["mask_prop"] == 0.7
    assert_hear_validator_passes(path)
    acc, probe = learning_check.main(["--run", str(out), "--draws", "1", "--probe-sizes", "8", "16",
                                      "--probe-draws", "2", "--probe-test", "12", "--transfer",
                                      "--transfer-families", "pitch", "noise_events", "--transfer-budgets", "1", "2",
                                      "--transfer-pool", "2", "--transfer-test", "2", "--transfer-draws", "2"])
    # one accuracy per target stream: the stand-in's 8 bands and its modulation stream
    assert set(acc) == {"majority", "init", "trained"} and all(len(v) == 9 for v in acc.values())
    assert all(0.0 <= float(x) <= 1.0 for v in acc.values() for x in v)
    assert set(probe) == {"init@-1", "trained@-1"} and len(probe["trained@-1"][8]) == 2
    table = (out / "learning_check.md").read_text()
    assert "| q8 |" in table and "| -1 (HEAR default) | 16 |" in table
    assert (out / "learning_check.png").stat().st_size > 0
    # the transfer check: every representation on every held-out family and budget, a verdict per row
    transfer = (out / "transfer_check.md").read_text()
    for row in ("| pitch (6, 0.17) | 1 |", "| pitch (6, 0.17) | 2 |", "| noise_events (4, 0.25) | 2 |"):
        assert row in transfer
    assert transfer.count("better") >= 3  # "better (> std)", "better, within std", "**not better**" or "better"
    results = json.loads((out / "transfer_check.json").read_text())
    assert set(results) == {"pitch", "noise_events"} and len(results["pitch"]["trained"]["1"]) == 2
    assert set(results["pitch"]) == {"log-mel", "init", "trained", "chance", "separation"}
    assert np.asarray(results["pitch"]["separation"]["trained"]).shape == (6, 6)  # one per pair of registers
    assert "Class pairs the trained model holds closer together than its init" in transfer
    assert (out / "transfer_check.png").stat().st_size > 0
    # the summary over runs (here the same run twice) reads what the check wrote
    from training.builtin import transfer_check
    summary = transfer_check.summarise_runs({name: transfer_check.read_results(out) for name in ("a", "b")})
    assert "| pitch | 1 |" in summary and "| noise_events | 2 |" in summary and summary.count(" of 2 |") == 2  # budget 1
    assert summary.count("n/a (one fit)") == 2  # budget 2 is the whole pool: one fit
    # bad input: no run there, too few labels for six classes, targets of another corpus version
    with pytest.raises(SystemExit, match="not found"):
        learning_check.main(["--run", str(tmp_path / "nothing")])
    with pytest.raises(SystemExit):
        learning_check.main(["--run", str(out), "--probe-sizes", "3", "16"])
    stale = torch.load(out / "cache" / "codes-val.pt", weights_only=True)
    torch.save(dict(stale, key="1-" + stale["key"]), out / "cache" / "codes-val.pt")
    with pytest.raises(SystemExit, match="another version of the built-in corpus"):
        learning_check.main(["--run", str(out)])
    # as a command: a missing run or cache is one line on stderr and status 2, no traceback
    (out / "cache" / "codes-val.pt").unlink()
    for run, message in ((tmp_path / "nothing", "last.ckpt.hearcodec not found"),
                         (out, "the run's cached codec targets are gone")):
        proc = subprocess.run([sys.executable, "-m", "training.builtin.learning_check", "--run", str(run), "--transfer"],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2 and proc.stderr.startswith("error: ") and message in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr


def test_cli_missing_codec_weights_is_a_message_not_a_traceback(tmp_path):
    """With --data the targets come from the published EnCodec; when its weights are missing the
    command says which file to put where (hear_codec.codec), with exit status 2 and no traceback."""
    result = run_module("training.pretrain", "--data", tmp_path, "--out", tmp_path / "run",
                        "--codec-path", tmp_path / "encodec_24khz-d7cc33bc.th")
    assert_user_error(result, r"error: EnCodec weights file not found: .*encodec_24khz-d7cc33bc.th")


def test_cli_bad_data_path_is_a_message_not_a_traceback(tmp_path):
    result = run_module("training.pretrain", "--data", tmp_path / "missing", "--codec", "offline", "--out", tmp_path / "run")
    assert_user_error(result, r"error: --data: .*missing is neither a folder, an audio file nor a manifest")


SIGTERM_DRIVER = """
import os, signal, sys
import torch
from lightning.pytorch.callbacks import Callback
from hear_codec import cli
from training import engine, pretrain

torch.set_num_threads(1)


class Sigterm(Callback):
    # Sends this process a real SIGTERM as rank `rank` starts step `at` (its first micro-batch).
    def __init__(self, at, rank):
        self.at, self.rank, self.sent = at, rank, False

    def on_train_start(self, trainer, pl_module):
        print(f"rank {trainer.global_rank}: training", file=sys.stderr, flush=True)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.at and trainer.global_rank == self.rank and not self.sent:
            self.sent = True
            print(f"rank {self.rank}: SIGTERM at the start of step {self.at}", file=sys.stderr, flush=True)
            os.kill(os.getpid(), signal.SIGTERM)


at, rank = int(sys.argv[1]), int(sys.argv[2])
make_trainer = engine.make_trainer
engine.make_trainer = lambda *a, **k: make_trainer(*a, callbacks=[Sigterm(at, rank)], **k)
cli.run(pretrain.main, sys.argv[3:])
"""


def run_driver(tmp_path, at, rank, *argv, timeout=300):
    """``python -m training.pretrain argv`` that sends itself SIGTERM as rank ``rank`` starts step
    ``at`` (-1: never); a file, not ``-c``, so that Lightning's DDP launcher can start it again."""
    driver = tmp_path / "sigterm_driver.py"
    driver.write_text(SIGTERM_DRIVER)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run([sys.executable, str(driver), str(at), str(rank), *map(str, argv)], capture_output=True,
                          text=True, timeout=timeout, env=env)


def lightning_step(path):
    return torch.load(path, map_location="cpu", weights_only=False)["global_step"]


def test_sigterm_saves_the_step_exits_143_and_resume_auto_continues_bit_exact(tmp_path):
    """The signal lands in the first micro-batch of step 3 (0-based) of 2 accumulated: the run
    finishes that step, saves step 4 and stops; resumed, it ends where a run never stopped ends."""
    steps = [*TINY, "--max-steps", "6", "--ckpt-every", "100", "--accumulate-grad-batches", "2"]  # no periodic save
    straight = run_driver(tmp_path, -1, 0, "--out", tmp_path / "straight", *steps)
    assert straight.returncode == 0, straight.stderr[-3000:]

    cut = run_driver(tmp_path, 3, 0, "--out", tmp_path / "cut", *steps, "--resume", "auto")
    assert cut.returncode == engine.PREEMPTED_STATUS == 143, cut.stderr[-3000:]
    assert "SIGTERM: stopped after step 4 and saved" in cut.stderr and "--resume auto" in cut.stderr
    assert "Traceback" not in cut.stderr
    assert lightning_step(tmp_path / "cut" / "last.ckpt") == 4
    assert read_checkpoint(tmp_path / "cut" / "last.ckpt.hearcodec")["metadata"]["step"] == 4  # the export too
    assert not list((tmp_path / "cut").glob(".*.tmp"))

    resumed = run_driver(tmp_path, -1, 0, "--out", tmp_path / "cut", *steps, "--resume", "auto")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from {tmp_path / 'cut' / 'last.ckpt'}" in resumed.stderr
    with open(tmp_path / "cut" / "logs" / "version_1" / "metrics.csv") as f:
        logged = {int(row["step"]) for row in csv.DictReader(f) if row["train/loss"]}
    assert logged == {4, 5}  # the resumed run trained steps 4 and 5 only
    a = weights(tmp_path / "straight" / "last.ckpt.hearcodec")
    b = weights(tmp_path / "cut" / "last.ckpt.hearcodec")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert lightning_step(tmp_path / "cut" / "last.ckpt") == 6


@pytest.mark.slow
def test_sigterm_to_one_rank_of_a_ddp_run_stops_every_rank_after_the_same_step(tmp_path):
    """Two CPU processes (Lightning's launcher, gloo); only rank 1 is signalled."""
    steps = [*TINY, "--max-steps", "6", "--ckpt-every", "100", "--accelerator", "cpu", "--devices", "2"]
    cut = run_driver(tmp_path, 2, 1, "--out", tmp_path / "cut", *steps)  # a rank left behind hangs: the timeout fails
    assert cut.returncode == 143, cut.stderr[-3000:]
    assert "rank 1: SIGTERM at the start of step 2" in cut.stderr
    assert "SIGTERM: stopped after step 3 and saved" in cut.stderr  # rank 0's words, on rank 1's signal
    assert lightning_step(tmp_path / "cut" / "last.ckpt") == 3
    resumed = run_driver(tmp_path, -1, 0, "--out", tmp_path / "cut", *steps, "--resume", "auto")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert lightning_step(tmp_path / "cut" / "last.ckpt") == 6


def test_a_second_run_into_the_same_out_is_refused_while_the_first_runs(tmp_path):
    out = tmp_path / "run"
    driver = tmp_path / "sigterm_driver.py"
    driver.write_text(SIGTERM_DRIVER)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "CUDA_VISIBLE_DEVICES": ""}
    log = tmp_path / "first.log"
    with open(log, "w") as stderr:
        first = subprocess.Popen([sys.executable, str(driver), "-1", "0", "--out", str(out), *TINY, "--max-steps",
                                  "100000", "--ckpt-every", "100000"], stderr=stderr, env=env)
    try:
        deadline = time.time() + 240
        while "rank 0: training" not in log.read_text():  # holds the lock from its start, trains from here
            assert first.poll() is None and time.time() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        second = run_module("training.pretrain", "--out", out, *TINY, "--max-steps", "2")
        assert_user_error(second, rf"^error: {re.escape(str(out))} is in use by another run \(pid {first.pid} on .*"
                                  rf"{re.escape(str(driver))} -1 0 --out {re.escape(str(out))} .*\); wait for it to end, stop it, or train into another --out\n$")
        assert first.poll() is None  # the first run goes on
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=120) == 143, log.read_text()[-3000:]
        assert lightning_step(out / "last.ckpt") > 0
        assert len(list((out / "logs").glob("version_*"))) == 1  # the refused run logged nothing
    finally:
        if first.poll() is None:
            first.kill()


def test_a_checkpoint_that_fills_the_disk_stops_the_run_with_one_line(tmp_path, monkeypatch, capsys):
    """The second write of last.ckpt runs out of space: `error: <one line>`, status 2, the first
    checkpoint intact, no temporary file left."""
    writes = []

    def second_write_of_last_ckpt(path):
        if os.path.basename(path).startswith(".last.ckpt.") and ".hearcodec." not in path:
            writes.append(path)
            return len(writes) == 2
        return False

    fill_disk(monkeypatch, second_write_of_last_ckpt)
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as info:
        cli.run(pretrain.main, ["--out", str(out), *TINY, "--max-steps", "4", "--ckpt-every", "2"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    last = out / "last.ckpt"
    assert re.search(rf"^error: could not write {re.escape(str(last))}: no space left on device \(.*\); "
                     rf"{re.escape(str(last))} still holds its previous version\n", err, re.M), err[-3000:]
    assert "Traceback" not in err
    assert lightning_step(last) == 2 and len(writes) == 2
    assert not list(out.glob(".*.tmp"))
