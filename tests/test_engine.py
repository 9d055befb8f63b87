"""training/engine.py: the options, resume paths, world size and logs, without a training run
(training through the engine, killed and resumed: test_pretrain.py)."""
import argparse
import errno
import os
import re
import secrets
import socket
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from conftest import REPO
from hear_codec import cli
from hear_codec import files
from hear_codec.errors import DiskFullError
from training import engine


def parse(*argv, **defaults):
    parser = argparse.ArgumentParser()
    engine.add_engine_args(parser, **defaults)
    return parser.parse_args(list(argv))


def test_options_become_the_typed_config():
    run = engine.EngineConfig.from_args(parse("--max-steps", "7", "--devices", "0,1", "--no-progress-bar",
                                              "--resume", "--seed", "3"))
    assert (run.max_steps, run.devices, run.progress_bar, run.resume, run.seed) == (7, "0,1", False, "last", 3)
    assert engine.EngineConfig.from_args(parse()).resume is None


@pytest.mark.parametrize("devices, num_nodes, expected", [
    ("1", 1, 1), ("4", 2, 8), ("0,1", 1, 2), ("0,1,", 3, 6), ("0", 1, 1), ("auto", 1, 1), ("-1", 2, 2)])
def test_world_size_on_cpu(devices, num_nodes, expected):
    run = engine.EngineConfig(devices=devices, num_nodes=num_nodes, accelerator="cpu")
    assert engine.world_size(run) == expected


def test_world_size_counts_every_visible_gpu_for_auto(monkeypatch):
    monkeypatch.setattr(engine.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(engine.torch.cuda, "device_count", lambda: 4)
    assert engine.world_size(engine.EngineConfig(devices="auto", num_nodes=2)) == 8
    assert engine.world_size(engine.EngineConfig(devices="2", num_nodes=2)) == 4


def test_resume_paths(tmp_path):
    def resume(value):
        return engine.resume_path(engine.EngineConfig(resume=value), tmp_path)

    assert resume(None) is None and resume("auto") is None  # nothing to resume: a fresh start
    with pytest.raises(FileNotFoundError, match="--resume: no checkpoint at .*last.ckpt"):
        resume("last")
    (tmp_path / engine.LAST).write_bytes(b"")
    assert resume("auto") == resume("last") == str(tmp_path / engine.LAST)
    with pytest.raises(FileNotFoundError, match="other.ckpt"):
        resume(str(tmp_path / "other.ckpt"))


def test_metrics_of_every_version_joined_later_wins(tmp_path):
    for version, text in ((0, "epoch,step,train/loss,note\n0,1,2.0,a\n0,2,1.5,b\n"),
                          (1, "epoch,step,train/loss,val/loss\n0,2,1.4,\n0,3,1.2,1.3\n,,,\n")):
        (tmp_path / f"version_{version}").mkdir()
        (tmp_path / f"version_{version}" / "metrics.csv").write_text(text)
    metrics = engine.read_metrics(tmp_path)
    assert metrics["train/loss"] == ([1, 2, 3], [2.0, 1.4, 1.2])  # step 2 from the resumed run
    assert metrics["val/loss"] == ([3], [1.3]) and "note" not in metrics
    png = engine.plot_loss_curve(tmp_path, tmp_path / "loss_curve.png")
    assert png.stat().st_size > 0


def test_lr_factor_warms_up_linearly_then_holds_or_follows_a_cosine_to_zero():
    constant = [engine.lr_factor(s, 4) for s in range(8)]
    assert constant == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0]
    cosine = [engine.lr_factor(s, 2, "cosine", 10) for s in range(12)]
    assert cosine[:3] == [0.5, 1.0, 1.0]  # warm-up, then the top of the cosine
    assert cosine[6] == pytest.approx(0.5)  # half-way through the 8 decay steps
    assert cosine[4] == pytest.approx(0.5 * (1 + 2 ** -0.5))  # a quarter of the way: a cosine, not a line
    assert all(a > b for a, b in zip(cosine[2:10], cosine[3:10]))  # strictly decreasing to the end
    assert cosine[10:] == [0.0, 0.0]  # zero at and after the planned last step
    assert engine.lr_factor(0, 0, "cosine", 4) == 1.0  # no warm-up: starts at the peak
    with pytest.raises(ValueError, match="unknown learning-rate schedule"):
        engine.lr_factor(0, 0, "linear", 10)
    with pytest.raises(ValueError, match=r"must be beyond --warmup-steps \(5\); got --max-steps 5"):
        engine.lr_factor(5, 5, "cosine", 5)
    with pytest.raises(ValueError, match="must be beyond --warmup-steps"):  # refused at step 0, not when the warm-up ends
        engine.lr_factor(0, 5, "cosine", -1)  # Lightning's max_steps when a Trainer has no limit


def test_decay_steps_hold_the_peak_then_decay_over_the_last_steps_only():
    tail = [engine.lr_factor(s, 2, "cosine", 12, decay_steps=4) for s in range(14)]
    assert tail[:8] == [0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]  # warm-up, then the peak until step 12 - 4
    assert tail[10] == pytest.approx(0.5)  # half-way through the 4 decay steps
    assert tail[9] == pytest.approx(0.5 * (1 + 2 ** -0.5))  # a cosine, not a line
    assert all(a > b for a, b in zip(tail[8:12], tail[9:12])) and tail[12:] == [0.0, 0.0]
    # a decay longer than the run after the warm-up is the whole-run cosine
    assert [engine.lr_factor(s, 2, "cosine", 12, 50) for s in range(14)] == [engine.lr_factor(s, 2, "cosine", 12)
                                                                             for s in range(14)]
    for schedule, decay in (("constant", 4), ("cosine", 0)):
        with pytest.raises(ValueError, match="--decay-steps is the length of the cosine's decay: it needs --schedule "
                                             "cosine and at least 1 step"):
            engine.lr_factor(0, 0, schedule, 12, decay)


def test_a_schedule_given_the_runs_step_follows_it_not_its_own_count():
    """A scheduler made for a resumed run starts counting at 0; the run's step says where it is."""
    opt = engine.torch.optim.SGD([engine.torch.zeros(1, requires_grad=True)], lr=0.1)
    module = SimpleNamespace(_trainer=SimpleNamespace(global_step=8))  # 8 steps done: half-way through the decay
    sched = engine.with_lr_schedule(opt, 0, "cosine", 10, decay_steps=4, module=module)["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(4):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        module._trainer.global_step += 1
        sched.step()
    assert lrs == pytest.approx([0.1 * engine.lr_factor(s, 0, "cosine", 10, 4) for s in range(8, 12)])
    assert lrs[0] == pytest.approx(0.05)  # not the top of the cosine, where a count from 0 would put it


def test_with_lr_schedule_returns_the_plain_optimizer_for_a_constant_rate():
    opt = engine.torch.optim.SGD([engine.torch.zeros(1, requires_grad=True)], lr=0.1)
    assert engine.with_lr_schedule(opt, 0, "constant", 100) is opt
    config = engine.with_lr_schedule(opt, 3, "cosine", 13)
    sched = config["lr_scheduler"]["scheduler"]
    assert config["optimizer"] is opt and config["lr_scheduler"]["interval"] == "step"
    lrs = []
    for _ in range(14):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:4] == pytest.approx([0.1 / 3, 0.2 / 3, 0.1, 0.1]) and lrs[13] == 0.0


def test_resume_refuses_a_checkpoint_of_another_model_or_a_damaged_one(tmp_path):
    """Lightning would stop with a state-dict traceback; the CLIs print this message instead."""
    from hear_codec import cli

    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": torch.nn.Linear(2, 3).state_dict(), "global_step": 5}, path)
    engine.check_resumable(torch.nn.Linear(2, 3), str(path))  # the same model: nothing to say
    with pytest.raises(cli.UserError, match=r"holds another model .*weight is \[3, 2\] there, \[4, 2\] here"):
        engine.check_resumable(torch.nn.Linear(2, 4), str(path))
    with pytest.raises(cli.UserError, match="no extra there"):
        engine.check_resumable(torch.nn.ParameterDict({"weight": torch.zeros(3, 2), "bias": torch.zeros(3),
                                                        "extra": torch.zeros(1)}), str(path))
    path.write_bytes(path.read_bytes()[:100])  # cut short, as by a full disk
    with pytest.raises(cli.UserError, match="cannot read .*last.ckpt as a training checkpoint"):
        engine.check_resumable(torch.nn.Linear(2, 3), str(path))


HOLDER = """
import sys, time
from training import engine
with engine.run_lock(sys.argv[1]):
    print("holding", flush=True)
    time.sleep(600)
"""


@pytest.fixture
def holder(tmp_path):
    """Start a process that holds run_lock(folder) until it is killed; yields the Popen."""
    procs = []

    def start(folder):
        proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdout=subprocess.PIPE, text=True,
                                cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
        procs.append(proc)
        assert proc.stdout.readline().strip() == "holding"
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def test_a_second_live_run_into_one_folder_is_refused_and_a_dead_one_holds_nothing(tmp_path, holder):
    first = holder(tmp_path / "run")
    with pytest.raises(cli.UserError, match=rf"^{re.escape(str(tmp_path / 'run'))} is in use by another run \(pid "
                                            rf"{first.pid} on {re.escape(socket.gethostname())}, since .*-c .*\); wait "
                                            r"for it to end, stop it, or train into another --out$"):
        with engine.run_lock(tmp_path / "run"):
            pass
    with engine.run_lock(tmp_path / "other"):  # another folder is free
        pass
    first.kill()  # SIGKILL: no clean-up at all; the kernel drops the lock with the process
    first.wait()
    with engine.run_lock(tmp_path / "run"):
        with engine.run_lock(tmp_path / "run" / "."):  # the same folder again in this process: shared
            pass
        # still held after the inner use ends: another process is refused
        proc = subprocess.run([sys.executable, "-c", HOLDER, str(tmp_path / "run")], capture_output=True, text=True,
                              cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
        assert proc.returncode == 1 and f"is in use by another run (pid {os.getpid()}" in proc.stderr
    assert engine._locks == {}


def test_the_other_ranks_of_a_run_do_not_take_the_lock(tmp_path, holder, monkeypatch):
    holder(tmp_path)
    for name, value in (("LOCAL_RANK", "1"), ("RANK", "3"), ("SLURM_PROCID", "2"), ("NODE_RANK", "1")):
        with monkeypatch.context() as m:
            m.setenv(name, value)
            assert not engine.is_first_process()
            with engine.run_lock(tmp_path):  # the first rank holds it (here: the holder)
                pass
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("SLURM_PROCID", "0")
    assert engine.is_first_process()
    with pytest.raises(cli.UserError, match="is in use by another run"):
        with engine.run_lock(tmp_path):
            pass


def make_temps(folder):
    """Temporary files as writers leave them (``.<name>.<host>.<pid>.<random>.tmp``): ``dead``, of
    writers of this machine that have ended (killed mid-write: checkpoints, and another file, in
    OUT and below it); ``alive``, of a live process (this one) and of another machine's writer,
    written just now."""
    (folder / "checkpoints").mkdir(parents=True)
    ended = subprocess.Popen(["true"])
    ended.wait()

    def name(target, pid, host=files._host()):
        return f".{target}.{host}.{pid}.{secrets.token_hex(6)}.tmp"

    dead = [folder / name("last.ckpt", ended.pid), folder / name("last.ckpt.hearcodec", ended.pid),
            folder / "checkpoints" / name("step-00000020.ckpt", ended.pid), folder / name("learning_check.md", ended.pid)]
    alive = [folder / name("last.ckpt", os.getpid()), folder / name("last.ckpt", ended.pid, "another-machine")]
    for path in dead + alive:
        path.write_bytes(b"half a checkpoint")
    return dead, alive


def test_taking_the_lock_removes_the_temporary_files_of_ended_writers_only(tmp_path, holder):
    holder(tmp_path)
    dead, alive = make_temps(tmp_path)
    with pytest.raises(cli.UserError):  # a refused run removes nothing: the folder is the live run's
        with engine.run_lock(tmp_path):
            pass
    assert all(p.exists() for p in dead + alive)
    out = tmp_path / "b"
    dead, alive = make_temps(out)
    with engine.run_lock(out):
        assert not any(p.exists() for p in dead)
        assert all(p.exists() for p in alive)  # a live writer's (a tool run on OUT), or not known to be gone


def test_a_run_refused_before_writing_anything_leaves_no_out_folder(tmp_path):
    """Options refused inside the lock (e.g. a schedule that cannot run): an OUT the run made holds
    only the lock, and goes; an OUT that was there, or one the run wrote into, stays."""
    with pytest.raises(cli.UserError):
        with engine.run_lock(tmp_path / "new"):
            raise cli.UserError("--warmup-steps must be 0 or more")
    assert not (tmp_path / "new").exists() and engine._locks == {}
    (tmp_path / "there").mkdir()
    with engine.run_lock(tmp_path / "there"):
        pass
    assert os.listdir(tmp_path / "there") == [engine.LOCK]
    with engine.run_lock(tmp_path / "written"):
        (tmp_path / "written" / "data_index.tsv").write_text("")
    assert sorted(os.listdir(tmp_path / "written")) == sorted([engine.LOCK, "data_index.tsv"])


def test_a_file_system_without_locks_warns_and_runs_unguarded(tmp_path, monkeypatch, caplog):
    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(engine.fcntl, "flock", no_locks)
    dead, _ = make_temps(tmp_path)
    with engine.run_lock(tmp_path):
        pass
    assert "cannot lock" in caplog.text and "will not be refused" in caplog.text
    assert all(p.exists() for p in dead)  # left for the next run that holds the folder


def test_a_checkpoint_write_that_fills_the_disk_keeps_the_previous_one(tmp_path, filling_disk):
    path = tmp_path / "last.ckpt"
    engine.AtomicCheckpointIO().save_checkpoint({"global_step": 1, "w": torch.zeros(10)}, path)  # fits
    filling_disk.room = 0
    with pytest.raises(DiskFullError, match=r"last.ckpt: no space left on device .*still holds its previous version"):
        engine.AtomicCheckpointIO().save_checkpoint({"global_step": 2, "w": torch.zeros(100_000)}, path)
    assert torch.load(path, weights_only=True)["global_step"] == 1 and os.listdir(tmp_path) == ["last.ckpt"]


def test_a_sigterm_lightning_took_before_the_first_step_still_exits_143(tmp_path, monkeypatch):
    """Lightning's handler holds SIGTERM from the start of fit until SaveOnSigterm takes over; what
    it catches there stops the run with Lightning's SIGTERMException, a SystemExit of status 0."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    trainer = engine.make_trainer(engine.EngineConfig(progress_bar=False), tmp_path)
    monkeypatch.setattr(trainer, "fit", lambda *a, **k: (_ for _ in ()).throw(SIGTERMException()))
    with pytest.raises(engine.Preempted) as info:
        engine.fit(trainer, torch.nn.Linear(2, 2), engine.EngineConfig(), tmp_path)
    assert info.value.code == 143 and info.value.step == 0
