"""python -m hear_codec.embed: folders of mixed audio in, .npy + index out; killed and resumed runs."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import hear_codec
from hear_codec import embed
from hear_codec.audio import read_audio

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
