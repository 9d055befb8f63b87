"""python -m hear_codec.embed: folders of mixed audio in, .npy + index out; killed and resumed runs."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import hear_codec
from hear_codec import embed
from hear_codec.audio import read_audio, resample

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models; the killed run uses 1 thread too

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
DONE_FILES = ["a.wav", "c.ogg", "d.wav", "e.wav", "sub/b.flac", "tiny.wav"]


@pytest.fixture()
def audio_folder(tmp_path):
    """Mixed formats, rates and channel counts; two clips of one length; one longer than a 4 s chunk;
    one shorter than a frame; one corrupt file; a file that is not audio."""
    rng = np.random.default_rng(0)

    def noise(*shape):
        return rng.uniform(-0.5, 0.5, shape).astype(np.float32)

    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    sf.write(root / "a.wav", noise(32000), 16000)
    sf.write(root / "e.wav", noise(32000), 16000)
    sf.write(root / "sub" / "b.flac", noise(44100 * 3, 2), 44100)
    sf.write(root / "c.ogg", noise(48000), 48000)
    sf.write(root / "d.wav", noise(22050 * 6), 22050)
    sf.write(root / "tiny.wav", noise(10), 16000)
    (root / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt " + bytes(range(100)))
    (root / "notes.txt").write_text("not audio")
    return root


def run_embed(*argv):
    return embed.main([str(a) for a in argv])


def outputs(out):
    """{relative path: array} of every .npy under ``out``, and the index without machine-specific fields."""
    arrays = {p.relative_to(out).as_posix(): np.load(p) for p in sorted(out.rglob("*.npy"))}
    return arrays, json.loads((out / "index.json").read_text())


def test_embeds_a_mixed_folder(tiny_checkpoints, audio_folder, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_embed(audio_folder, "--model", tiny_checkpoints["mel256"], "--out", out,
                     "--model-options", '{"precision": "fp32"}') == 0
    arrays, index = outputs(out)
    assert sorted(arrays) == sorted(f"{name}.{suffix}.npy" for name in DONE_FILES
                                    for suffix in ("scene_embedding", "timestamp_embeddings", "timestamps"))
    assert [f["name"] for f in index["files"]] == DONE_FILES
    assert [u["name"] for u in index["unreadable"]] == ["broken.wav"]
    assert "broken.wav" in capsys.readouterr().err
    by_name = {f["name"]: f for f in index["files"]}
    assert by_name["sub/b.flac"]["channels"] == 2 and by_name["tiny.wav"]["frames"] == 1
    for name in DONE_FILES:
        emb, ts = arrays[f"{name}.timestamp_embeddings.npy"], arrays[f"{name}.timestamps.npy"]
        assert emb.shape == (by_name[name]["frames"], 64) and ts.shape == (emb.shape[0],)
        assert emb.dtype == ts.dtype == arrays[f"{name}.scene_embedding.npy"].dtype == np.float32
    # the same numbers as the HEAR functions on the file's audio
    model = hear_codec.load_model(tiny_checkpoints["mel256"], sample_rate=48000, precision="fp32")
    audio = read_audio(audio_folder / "c.ogg")[0][None]
    emb, ts = hear_codec.get_timestamp_embeddings(audio, model)
    np.testing.assert_allclose(arrays["c.ogg.timestamp_embeddings.npy"], emb[0].numpy(), atol=1e-4)  # resampled in fp64
    np.testing.assert_array_equal(arrays["c.ogg.timestamps.npy"], ts[0].numpy())
    model = hear_codec.load_model(tiny_checkpoints["mel256"], sample_rate=22050, precision="fp32")
    scene = hear_codec.get_scene_embeddings(read_audio(audio_folder / "d.wav")[0][None], model)  # 6 s: chunked
    np.testing.assert_allclose(arrays["d.wav.scene_embedding.npy"], scene[0].numpy(), atol=1e-4)


def test_clips_of_one_length_run_together(tiny_checkpoints, audio_folder, tmp_path, monkeypatch):
    calls = []
    original = hear_codec.HearModel.embed

    def spy(self, wav, **kwargs):
        calls.append(tuple(wav.shape))
        return original(self, wav, **kwargs)

    monkeypatch.setattr(hear_codec.HearModel, "embed", spy)
    assert run_embed(audio_folder, "--model", tiny_checkpoints["mel256"], "--out", tmp_path / "out",
                     "--outputs", "scene") == 0
    assert sorted(calls) == sorted([(1, 15), (1, 24000), (2, 48000), (1, 72000), (1, 144000)])
    assert not list((tmp_path / "out").rglob("*.timestamps.npy"))


KILLER = """
import os, signal, sys, torch
import hear_codec.embed as embed
torch.set_num_threads(1)
budget = [int(sys.argv[1])]
real_replace = os.replace
def replace_then_die(src, dst):
    if budget[0] == 0:
        os.kill(os.getpid(), signal.SIGKILL)  # dies with a temporary file written, not yet renamed
    budget[0] -= 1
    real_replace(src, dst)
os.replace = replace_then_die
sys.exit(embed.main(sys.argv[2:]))
"""


def test_killed_run_resumes_to_the_same_outputs(tiny_checkpoints, audio_folder, tmp_path, capsys, monkeypatch):
    argv = [audio_folder, "--model", tiny_checkpoints["mel256"], "--outputs", "scene", "timestamp"]
    assert run_embed(*argv, "--out", tmp_path / "straight") == 0
    straight = outputs(tmp_path / "straight")
    killed = tmp_path / "killed"
    # renames: the index at the start, then 3 files per clip, shortest first (tiny.wav, c.ogg, then
    # a.wav and e.wav in one batch); die after a.wav, in the middle of e.wav: the rerun must run
    # that batch as a whole again to compute e.wav's numbers as the straight run did
    result = subprocess.run([sys.executable, "-c", KILLER, "11", *map(str, argv), "--out", str(killed)],
                            env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == -9, result.stderr[-2000:]
    assert len(list(killed.rglob("*.npy"))) == 10 and len(list(killed.rglob(".e.wav.*.tmp"))) == 1
    assert json.loads((killed / "index.json").read_text())["files"] is None  # not finished
    capsys.readouterr()
    calls = []
    original = hear_codec.HearModel.embed
    monkeypatch.setattr(hear_codec.HearModel, "embed",
                        lambda self, wav, **kw: calls.append(tuple(wav.shape)) or original(self, wav, **kw))
    assert run_embed(*argv, "--out", killed) == 0
    assert "(3 already done)" in capsys.readouterr().err
    assert sorted(calls) == [(1, 72000), (1, 144000), (2, 48000)]  # e.wav with a.wav, as in the straight run
    assert not list(killed.rglob(".*.tmp"))
    resumed = outputs(killed)
    assert sorted(resumed[0]) == sorted(straight[0])
    for name, array in straight[0].items():
        np.testing.assert_array_equal(resumed[0][name], array, err_msg=name)
    assert resumed[1] == straight[1]


def test_help_explains_every_option():
    result = subprocess.run([sys.executable, "-m", "hear_codec.embed", "--help"], env=ENV, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for action in embed.build_parser()._actions:
        assert action.help, action.dest
        assert all(option in text for option in action.option_strings), action.option_strings
        assert " ".join(action.help.split())[:40] in text, action.dest


def test_usage_errors_are_messages_with_exit_code_2(tiny_checkpoints, audio_folder, tmp_path, capsys):
    model = ["--model", tiny_checkpoints["mel256"]]
    (tmp_path / "a_file").write_text("")
    cases = [
        ([tmp_path / "nowhere", *model, "--out", tmp_path / "o1"], "no such file or folder"),
        ([audio_folder, *model, "--out", tmp_path / "a_file"], "is not a folder"),
        ([audio_folder, *model, "--out", tmp_path / "o2", "--model-options", "{layer: 1}"], "not valid JSON"),
        ([audio_folder, *model, "--out", tmp_path / "o3", "--model-options", '{"layer": 0}', "--layer", "1"],
         "either with --layer or in --model-options"),
        ([audio_folder, *model, "--out", tmp_path / "o4", "--model-options", '{"layer": "x"}'],
         "option 'layer' must be an integer"),
        ([audio_folder, "--model", tmp_path / "missing.ckpt", "--out", tmp_path / "o5"], "cannot load the model"),
        ([tmp_path / "empty_dir", *model, "--out", tmp_path / "o6"], "no audio files"),
    ]
    (tmp_path / "empty_dir").mkdir()
    for argv, message in cases:
        assert run_embed(*argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (argv, err)
    # an output folder of another run (here: another layer) is refused, not mixed
    assert run_embed(audio_folder, *model, "--out", tmp_path / "o7", "--outputs", "scene") == 0
    assert run_embed(audio_folder, *model, "--out", tmp_path / "o7", "--outputs", "scene", "--layer", "0") == 2
    assert "holds embeddings of another run" in capsys.readouterr().err
    # through the module entry point: the message alone, exit code 2
    result = subprocess.run([sys.executable, "-m", "hear_codec.embed", str(tmp_path / "nowhere"), "--out",
                             str(tmp_path / "o8")], env=ENV, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "no such file or folder" in result.stderr and "Traceback" not in result.stderr


# ---- long recordings: streamed, equal to the whole-file path ----

def test_a_ten_minute_file_is_streamed_and_equals_the_whole_file_path(tiny_checkpoints, tmp_path, monkeypatch):
    """10 min of 44.1 kHz stereo: decoded, resampled and embedded block by block (26 decoder blocks,
    80 model chunks), its timestamp embeddings written as computed; the numbers are those of reading
    the whole file, resampling it at once and embedding it in one call, within 1e-5."""
    rng = np.random.default_rng(0)
    path = tmp_path / "long.wav"
    sf.write(path, (0.1 * rng.standard_normal((44100 * 600, 2))).astype(np.float32), 44100, subtype="PCM_16")
    calls = {"embed": 0, "read_audio": 0, "rows": []}
    original_write = embed.NpyRows.write
    monkeypatch.setattr(hear_codec.HearModel, "embed", lambda *a, **k: calls.__setitem__("embed", 1))
    monkeypatch.setattr(embed.NpyRows, "write", lambda self, rows: calls["rows"].append(len(rows))
                        or original_write(self, rows))
    out = tmp_path / "out"
    assert run_embed(path, "--model", tiny_checkpoints["mel256"], "--out", out,
                     "--model-options", '{"precision": "fp32"}') == 0
    assert calls["embed"] == 0 and len(calls["rows"]) > 10  # never the whole clip; rows as they came
    monkeypatch.undo()
    data, rate = sf.read(path, dtype="float32")
    wav = resample(torch.from_numpy(data.mean(axis=1)).double(), rate, 24000).float()
    model = hear_codec.load_model(tiny_checkpoints["mel256"], precision="fp32")
    whole = model.embed(wav[None])
    arrays, index = outputs(out)
    assert index["files"][0]["frames"] == whole["timestamp"].shape[1] == sum(calls["rows"])
    np.testing.assert_allclose(arrays["long.wav.timestamp_embeddings.npy"], whole["timestamp"][0].numpy(),
                               rtol=0, atol=1e-5)
    np.testing.assert_allclose(arrays["long.wav.scene_embedding.npy"], whole["scene"][0].numpy(), rtol=0, atol=1e-5)
    np.testing.assert_array_equal(arrays["long.wav.timestamps.npy"], whole["timestamps_ms"][0].numpy())


# ---- faults: each a clear line, nothing half-written, and a rerun resumes ----

def test_a_full_disk_is_one_line_and_the_rerun_resumes(tiny_checkpoints, audio_folder, tmp_path, capsys, monkeypatch):
    argv = [audio_folder, "--model", tiny_checkpoints["mel256"], "--model-options", '{"batch_size": 1}']
    assert run_embed(*argv, "--out", tmp_path / "straight") == 0
    straight = outputs(tmp_path / "straight")
    out = tmp_path / "full"
    saves, real_save = [0], np.save

    def save_until_full(f, array, *args, **kwargs):  # what numpy says when the disk fills mid-array
        saves[0] += 1
        if saves[0] == 7:
            f.write(b"\x93NUMPY partial")
            raise OSError(f"{array.nbytes} requested and 14 written")
        return real_save(f, array, *args, **kwargs)

    monkeypatch.setattr(np, "save", save_until_full)
    capsys.readouterr()
    assert run_embed(*argv, "--out", out) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"error: cannot write {out}/") and "requested and 14 written" in err
    assert "run the same command again to resume" in err
    assert not list(out.rglob(".*.tmp")) and len(list(out.rglob("*.npy"))) == 6  # two whole clips, nothing half
    # the streamed writer of a long file: a real ENOSPC from the kernel's write
    monkeypatch.setattr(np, "save", real_save)
    monkeypatch.setattr(embed.NpyRows, "write", lambda self, rows: (_ for _ in ()).throw(
        OSError(28, "No space left on device")))
    long_argv = [audio_folder / "d.wav", "--model", tiny_checkpoints["mel256"], "--model-options", '{"batch_size": 1}']
    assert run_embed(*long_argv, "--out", tmp_path / "long") == 2  # 6 s > one batch of one 4 s chunk: streamed
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.match(rf"error: could not write {tmp_path / 'long'}/d\.wav\.\w+\.npy: no space left on device .*; "
                    r"no d\.wav\.\w+\.npy was written\. The files written before it are complete", err), err
    assert not list((tmp_path / "long").rglob(".*.tmp"))
    monkeypatch.undo()
    assert run_embed(*argv, "--out", out) == 0
    assert "(2 already done)" in capsys.readouterr().err
    resumed = outputs(out)
    assert sorted(resumed[0]) == sorted(straight[0]) and resumed[1] == straight[1]
    for name, array in straight[0].items():
        np.testing.assert_array_equal(resumed[0][name], array, err_msg=name)


HOLDER = """
import sys, time
from pathlib import Path
from hear_codec import files
with files.atomic_path(Path(sys.argv[1])) as tmp:   # a live writer, slow to finish its file
    Path(tmp).write_bytes(b"half")
    print(tmp, flush=True)
    sys.stdin.readline()
    Path(tmp).write_bytes(b"whole")
"""


def test_a_second_run_into_the_same_folder_leaves_a_live_writers_files_alone(tiny_checkpoints, audio_folder, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    writer = subprocess.Popen([sys.executable, "-c", HOLDER, str(out / "other.npy")], env=ENV, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    live = Path(writer.stdout.readline().strip())
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone = out / live.name.replace(f".{writer.pid}.", f".{int(dead.stdout)}.")  # a writer that was killed
    gone.write_bytes(b"left behind")
    try:
        assert run_embed(audio_folder, "--model", tiny_checkpoints["mel256"], "--out", out, "--outputs", "scene") == 0
        assert live.is_file() and not gone.exists()
        writer.stdin.write("\n")
        writer.stdin.flush()
        assert writer.wait(timeout=60) == 0
    finally:
        writer.kill()
    assert (out / "other.npy").read_bytes() == b"whole"


def test_a_rate_that_needs_a_giant_filter_fails_that_file_only(tiny_checkpoints, audio_folder, tmp_path):
    for rate in (2_147_483_647, 1_000_003):
        sf.write(audio_folder / f"rate{rate}.wav", np.zeros(16000, np.int16), rate)
    out = tmp_path / "out"
    assert run_embed(audio_folder, "--model", tiny_checkpoints["mel256"], "--out", out, "--outputs", "scene") == 0
    index = json.loads((out / "index.json").read_text())
    assert [f["name"] for f in index["files"]] == DONE_FILES
    failed = {u["name"]: u["error"] for u in index["unreadable"]}
    for rate in (2_147_483_647, 1_000_003):
        assert f"resampling {rate} Hz to 24000 Hz needs a" in failed[f"rate{rate}.wav"]


def test_samples_beyond_any_audio_range_are_not_embedded_as_nan(tiny_checkpoints, audio_folder, tmp_path):
    sf.write(audio_folder / "huge.wav", np.array([0.0, 3e38, -3e38] * 8000, dtype=np.float32), 16000, subtype="FLOAT")
    out = tmp_path / "out"
    assert run_embed(audio_folder, "--model", tiny_checkpoints["mel256"], "--out", out) == 0
    index = json.loads((out / "index.json").read_text())
    assert "huge.wav" not in [f["name"] for f in index["files"]] and not list(out.glob("huge.wav.*"))
    assert "samples up to 3e+38" in {u["name"]: u["error"] for u in index["unreadable"]}["huge.wav"]
    assert all(np.isfinite(a).all() for a in outputs(out)[0].values())


def test_damaged_outputs_are_done_again(tiny_checkpoints, audio_folder, tmp_path, capsys):
    argv = [audio_folder, "--model", tiny_checkpoints["mel256"], "--out", tmp_path / "out"]
    assert run_embed(*argv) == 0
    before = outputs(tmp_path / "out")
    truncated = tmp_path / "out" / "a.wav.timestamp_embeddings.npy"
    truncated.write_bytes(truncated.read_bytes()[:-100])
    empty = tmp_path / "out" / "sub" / "b.flac.scene_embedding.npy"
    empty.write_bytes(b"")
    capsys.readouterr()
    assert run_embed(*argv) == 0
    err = capsys.readouterr().err
    assert f"damaged output {truncated} (" in err and "truncated" in err
    assert f"damaged output {empty} (unreadable .npy" in err
    assert "(4 already done)" in err
    after = outputs(tmp_path / "out")
    assert after[1] == before[1]
    for name, array in before[0].items():
        np.testing.assert_array_equal(after[0][name], array, err_msg=name)


def test_an_unreadable_model_file_is_a_message_naming_it(tmp_path, audio_folder):
    """/proc/self/mem: a regular file whose first read gives EIO, as a failing disk does."""
    from conftest import assert_user_error, run_module
    result = run_module("hear_codec.embed", audio_folder / "a.wav", "--model", "/proc/self/mem", "--out", tmp_path / "o")
    assert_user_error(result, r"cannot load the model: /proc/self/mem: cannot read the file \(Input/output error\)")


def test_published_weights_in_one_command(audio_folder, tmp_path):
    """``--published NAME``: from the hub's offline cache (models--owner--repo/snapshots/<rev>, refs/main)
    as load_model(published=NAME) reads it; without it, offline, one line and status 2."""
    from hub_cache import fake_hub, run_offline
    out = tmp_path / "out"
    result = run_offline(tmp_path, "hear_codec.embed", audio_folder / "a.wav", "--published", "encodecmae-base",
                         "--out", out, HF_HUB_CACHE=str(fake_hub(tmp_path)))
    assert result.returncode == 0, result.stderr[-3000:]
    index = json.loads((out / "index.json").read_text())
    assert index["model_options"] == {"published": "encodecmae-base"} and index["embedding_size"] == 32
    assert np.load(out / "a.wav.timestamp_embeddings.npy").shape[1] == 32
    offline = run_offline(tmp_path, "hear_codec.embed", audio_folder / "a.wav", "--published", "encodecmae-base",
                          "--out", tmp_path / "out2")
    assert offline.returncode == 2 and "Traceback" not in offline.stderr, offline.stderr[-3000:]
    assert offline.stderr.strip().splitlines()[-1].startswith(
        "error: cannot download encodecmae-base (offline?)")
    assert run_embed(audio_folder, "--published", "x", "--model", "m.ckpt", "--out", tmp_path / "o3") == 2


def test_a_header_that_misstates_a_long_file_s_length_is_counted_and_embedded_again(
        tiny_checkpoints, audio_folder, tmp_path, monkeypatch):
    """A compressed file's header may misstate its length: the streamed pass notices the blocks do not
    add up, counts them, and embeds the file again with the length it has."""
    from hear_codec import audio
    argv = [audio_folder / "d.wav", "--model", tiny_checkpoints["mel256"], "--model-options", '{"batch_size": 1}']
    assert run_embed(*argv, "--out", tmp_path / "straight") == 0
    told = []
    real_init = audio.AudioStream.__init__

    def misstated(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        told.append(self.num_samples)
        if len(told) == 1:
            self.num_samples -= 5000  # as a header that undercounts
    monkeypatch.setattr(audio.AudioStream, "__init__", misstated)
    assert run_embed(*argv, "--out", tmp_path / "out") == 0
    assert len(told) >= 3  # told once, streamed, counted, streamed again
    for name, array in outputs(tmp_path / "straight")[0].items():
        np.testing.assert_array_equal(np.load(tmp_path / "out" / name), array, err_msg=name)
