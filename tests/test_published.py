"""Default weights: the published EnCodecMAE table, local lookup, the hub cache, the offline message.

The hub cannot be reached from the test machines, so every subprocess here runs with
HF_HUB_OFFLINE=1 and its own empty (or hand-filled) Hugging Face cache.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

import hear_codec
from hear_codec import published
from hear_codec.codec import build_encoder
from conftest import assert_user_error, run_module
from official_encodecmae_helpers import REPO, official_state, v1_gin, v2_gin

SNAPSHOT = "0123456789abcdef0123456789abcdef01234567"


def tiny_v2_file(path):
    torch.save({"imports": "", "config": v2_gin("mel256", dim=32, heads=4, st=True),
                "state_dict": official_state("v2", 32, 2, 1, 64, 256, streams=1)}, path)
    return path


def tiny_v1_folder(folder):
    folder.mkdir(parents=True, exist_ok=True)
    state = official_state("v1", 32, 2, 1, 64, 128, streams=8, extra_streams=1,
                           codec_encoder_state=build_encoder().state_dict())
    torch.save({"state_dict": state}, folder / "model.pt")
    (folder / "config.gin").write_text(v1_gin(dim=32, heads=4, extra_targets=1))
    return folder


def offline_env(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "HEAR_CODEC_"))}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"),
               HEAR_CODEC_PUBLISHED_DIR=str(tmp_path / "published"), PYTHONPATH=str(REPO), **extra)
    return env


def test_table_names_files_and_licences():
    assert published.DEFAULT in published.PUBLISHED and published.DEFAULT_REASON
    for name, m in published.PUBLISHED.items():
        assert m.name == name and m.licence and m.repo_id.startswith("lpepino/encodecmae-")
        assert m.layout in ("v1", "v2")
        assert m.files == ((f"{name}.pt",) if m.layout == "v2" else ("model.pt", "config.gin"))
        assert all(u.startswith(f"https://huggingface.co/{m.repo_id}/resolve/main/") for u in m.urls)
    assert published.resolve("lpepino/encodecmae-v2/mel256-ec-base.pt").files == ("mel256-ec-base.pt",)
    with pytest.raises(ValueError, match="mel256-ec-base_st"):
        published.resolve("encodecmae-huge")
    with pytest.raises(ValueError, match="published"):
        hear_codec.load_model("x.pt", published=published.DEFAULT)
    with pytest.raises(ValueError, match="random_weights"):
        hear_codec.load_model(random_weights="encodecmae-tiny-mel256", published=published.DEFAULT)


def test_offline_default_weights_give_the_documented_message(tmp_path):
    """load_model() with no path, offline and nothing cached: one line that names the model, says
    "(offline?)" and where to put the file by hand."""
    script = textwrap.dedent("""
        import sys
        import hear_codec
        assert "huggingface_hub" not in sys.modules, "import hear_codec must stay light"
        for options in ({}, {"published": "encodecmae-base"}):
            try:
                hear_codec.load_model(**options)
            except hear_codec.published.PublishedWeightsUnavailable as e:
                print("MESSAGE", e)
            else:
                print("LOADED?!")
    """)
    out = subprocess.run([sys.executable, "-c", script], env=offline_env(tmp_path), capture_output=True, text=True,
                         cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "LOADED?!" not in out.stdout
    default, v1 = out.stdout.split("MESSAGE ")[1:]
    assert default.count("\n") == v1.count("\n") == 1  # one line each
    local = tmp_path / "published"
    name = published.DEFAULT
    assert default.startswith(f"cannot download {name} (offline?): lpepino/encodecmae-v2/{name}.pt: "
                              "HF_HUB_OFFLINE is set and the Hugging Face cache does not hold it")
    assert f"save https://huggingface.co/lpepino/encodecmae-v2/resolve/main/{name}.pt as {local / (name + '.pt')}" \
        in default
    assert v1.startswith("cannot download encodecmae-base (offline?): lpepino/encodecmae-base/model.pt")
    assert f"put model.pt and config.gin from https://huggingface.co/lpepino/encodecmae-base into the folder " \
           f"{local / 'encodecmae-base'}/" in v1


def test_hub_cache_is_used_offline(tmp_path):
    """Files already in the Hugging Face cache load with no network (the real hf_hub_download path)."""
    repo = tmp_path / "hub" / "models--lpepino--encodecmae-base"
    tiny_v1_folder(repo / "snapshots" / SNAPSHOT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(SNAPSHOT)
    script = textwrap.dedent("""
        import hear_codec
        model = hear_codec.load_model(published="encodecmae-base")
        c = model.model.config
        print("OK", c.front_end, c.num_codec_streams, c.num_kmeans_streams, model.model.metadata["published"])
    """)
    out = subprocess.run([sys.executable, "-c", script], env=offline_env(tmp_path, HF_HUB_CACHE=str(tmp_path / "hub")),
                         capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "OK ec 8 1 encodecmae-base" in out.stdout


def test_local_folder_and_model_options(tmp_path, monkeypatch):
    """$HEAR_CODEC_PUBLISHED_DIR/<file> is used before the hub; --model-options picks another model."""
    monkeypatch.setenv("HEAR_CODEC_PUBLISHED_DIR", str(tmp_path))
    tiny_v2_file(tmp_path / f"{published.DEFAULT}.pt")
    model = hear_codec.load_model()  # heareval: load_model(**json.loads('{}'))
    assert model.model.metadata["published"] == published.DEFAULT
    assert model.model.metadata["licence"] == published.PUBLISHED[published.DEFAULT].licence
    assert (model.model.config.num_codec_streams, model.model.config.num_kmeans_streams) == (0, 1)
    emb, ts = hear_codec.get_timestamp_embeddings(torch.zeros(2, 48000), model)
    assert emb.shape[0] == 2 and emb.shape[2] == model.timestamp_embedding_size == 32 and ts.shape == emb.shape[:2]
    tiny_v1_folder(tmp_path / "encodecmae-base")
    other = hear_codec.load_model(None, **{"published": "encodecmae-base", "sample_rate": 16000})
    assert other.model.config.front_end == "ec" and other.sample_rate == 16000


def test_cli_prints_the_table_and_a_bad_option_is_a_message():
    result = run_module("hear_codec.published")
    assert result.returncode == 0 and published.DEFAULT in result.stdout, result.stderr[-3000:]
    assert_user_error(run_module("hear_codec.published", "--fetch"), "unrecognized arguments: --fetch")
