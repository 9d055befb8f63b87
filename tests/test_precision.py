"""precision="auto": measured once per machine (timings faked both ways here), cached for every
later process, skipped on request; the CUDA rule on GPUs."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

import hear_codec
from hear_codec import precision
from conftest import REPO

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models
BUSY = precision.busy  # the real one (fresh_cache replaces it)


@pytest.fixture()
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HEAR_CODEC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv(precision.MEASURE_ENV, raising=False)
    monkeypatch.setattr(precision, "_DECIDED", {})
    monkeypatch.setattr(precision, "busy", lambda: None)  # a quiet machine (test_a_busy_machine... fakes the other)
    return tmp_path / "cache"


def fake_clock(monkeypatch, bf16_speedup: float) -> list:
    """Every matmul takes (rows x k x n) ns in fp32 and that / ``bf16_speedup`` under bf16 autocast,
    on a fake clock; returns the list of (shape, bf16) calls made."""
    clock, calls = [0.0], []

    def matmul(x, w):
        bf16 = torch.is_autocast_enabled("cpu")
        calls.append((tuple(w.shape), bf16))
        clock[0] += x.shape[0] * w.shape[0] * w.shape[1] * 1e-9 / (bf16_speedup if bf16 else 1.0)

    monkeypatch.setattr(precision, "_timer", lambda: clock[0])
    monkeypatch.setattr(precision, "_matmul", matmul)
    return calls


@pytest.mark.parametrize("bf16_speedup, expected", [(1.3, "bf16"), (2.2, "bf16"), (1.19, "fp32"), (1.0, "fp32"),
                                                    (0.5, "fp32"), (0.12, "fp32")])
def test_auto_is_bf16_only_where_bf16_is_measured_clearly_faster(fresh_cache, monkeypatch, tiny_checkpoints,
                                                                  bf16_speedup, expected):
    """A CPU where bf16 runs the model's matmuls 1.3x faster (as AMX does, 2x) gets bf16; one where it
    is no faster, or slower (AVX-512 BF16 at half the fp32 rate, AVX2 emulation), gets fp32."""
    calls = fake_clock(monkeypatch, bf16_speedup)
    model = hear_codec.load_model(tiny_checkpoints["mel256"])
    chosen = model.resolved_precision
    assert chosen == expected and chosen.source == "measured"
    assert f"{bf16_speedup:.2f}x the speed of fp32" in chosen.reason and "measured now" in chosen.reason
    # the model's own shapes, each timed in both precisions, in alternating rounds
    shapes = {(n, k) for k, n, _ in precision.matmul_shapes(model.model, 2)}
    assert {s for s, _ in calls} == shapes and {b for _, b in calls} == {False, True}
    assert len(calls) >= 2 * precision.MIN_ROUNDS * len(shapes)
    stored = json.loads(next((fresh_cache / "precision").glob("*.json")).read_text())
    assert stored["choice"] == expected and stored["key"]["threads"] == torch.get_num_threads()


def test_the_model_s_own_shapes_are_measured():
    model = hear_codec.load_model(random_weights="encodecmae-small-mel256").model
    # mel input projection, attention (4 per layer x 5 layers), the shared feed-forward block (x 5)
    assert precision.matmul_shapes(model) == ((256, 768, 1), (768, 768, 20), (768, 4096, 5), (4096, 768, 5))
    assert precision.matmul_shapes(model, num_layers=2) == ((256, 768, 1), (768, 768, 8), (768, 4096, 2),
                                                             (4096, 768, 2))


SECOND_LOAD = """
import os, sys
os.getloadavg = lambda: (0.0, 0.0, 0.0)  # a quiet machine, whatever the test machine's load
from hear_codec import load_model, precision
measured = []
real = precision.measure
precision.measure = lambda *a: measured.append(1) or real(*a)
model = load_model(sys.argv[1])
p = model.resolved_precision
print("RESULT", p, p.source, len(measured))
"""


def test_a_second_load_in_a_new_process_does_not_measure_again(tmp_path, tiny_checkpoints):
    env = {**os.environ, "HEAR_CODEC_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": str(REPO)}
    env.pop(precision.MEASURE_ENV, None)
    runs = [subprocess.run([sys.executable, "-c", SECOND_LOAD, str(tiny_checkpoints["ec"])], env=env,
                           capture_output=True, text=True, timeout=300) for _ in range(2)]
    first, second = (r.stdout.split("RESULT")[-1].split() for r in runs)
    assert all(r.returncode == 0 for r in runs), runs[0].stderr[-2000:] + runs[1].stderr[-2000:]
    assert first[1:] == ["measured", "1"] and second[1:] == ["cached", "0"] and first[0] == second[0]
    assert len(list((tmp_path / "cache" / "precision").glob("*.json"))) == 1
    assert not list((tmp_path / "cache").rglob(".*.tmp"))


@pytest.mark.parametrize("bf16_speedup, expected", [(1.3, "fp32"), (2.2, "bf16")])
def test_a_busy_machine_s_measurement_needs_a_clear_gain_and_is_not_cached(fresh_cache, monkeypatch,
                                                                          tiny_checkpoints, bf16_speedup, expected):
    fake_clock(monkeypatch, bf16_speedup)
    monkeypatch.setattr(os, "getloadavg", lambda: (9.0, 9.0, 9.0))
    monkeypatch.setattr(precision, "busy", BUSY)
    chosen = hear_codec.load_model(tiny_checkpoints["mel256"]).resolved_precision
    assert chosen == expected and "on a busy machine (load 9.0 on" in chosen.reason and "not cached" in chosen.reason
    assert not (fresh_cache / "precision").exists()


def test_the_cache_is_per_thread_count_and_survives_bad_files(fresh_cache, monkeypatch, tiny_checkpoints):
    fake_clock(monkeypatch, 2.0)
    model = hear_codec.load_model(tiny_checkpoints["mel256"]).model
    shapes = precision.matmul_shapes(model)
    key = precision.cache_key(shapes, 64)
    assert precision.read_cached(key) is None
    precision.write_cached(key, precision.Precision("bf16", "measured", ""), {"fp32": 2.0, "bf16": 1.0, "seconds": 0})
    assert precision.read_cached(key) == "bf16" and precision.read_cached(key).source == "cached"
    torch.set_num_threads(2)
    assert precision.read_cached(precision.cache_key(shapes, 64)) is None  # other threads: measured anew
    torch.set_num_threads(1)
    path = next((fresh_cache / "precision").glob("*.json"))
    path.write_text("{half a file")
    assert precision.read_cached(key) is None  # measured again rather than trusted
    # a cache folder that cannot be written costs a measurement next time, nothing else
    monkeypatch.setenv("HEAR_CODEC_CACHE_DIR", "/proc/no-such-folder")
    assert precision.resolve("auto", model, "cpu", 2) == "bf16"


def test_measuring_can_be_skipped_and_explicit_choices_are_kept(fresh_cache, monkeypatch, tiny_checkpoints):
    monkeypatch.setattr(precision, "measure", lambda *a: pytest.fail("measured"))
    monkeypatch.setenv(precision.MEASURE_ENV, "0")
    chosen = hear_codec.load_model(tiny_checkpoints["mel256"]).resolved_precision
    assert chosen == "fp32" and chosen.source == "not measured" and precision.MEASURE_ENV in chosen.reason
    for given in ("fp32", "bf16"):
        chosen = hear_codec.load_model(tiny_checkpoints["mel256"], precision=given).resolved_precision
        assert chosen == given and chosen.source == "given"
    assert not fresh_cache.exists()


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "fp32")])
def test_cuda_keeps_its_rule(monkeypatch, native, expected):
    calls = []

    def is_bf16_supported(including_emulation=True):
        calls.append(including_emulation)
        return native

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    monkeypatch.setattr(precision, "measure", lambda *a: pytest.fail("measured"))
    chosen = precision.resolve("auto", None, "cuda")
    assert chosen == expected and chosen.source == "cuda rule"
    assert calls == [False]  # emulated bf16 (pre-Ampere) does not count
    assert precision.resolve("fp32", None, "cuda") == "fp32"
    assert precision.resolve("auto", None, "mps") == "fp32"


def test_a_precision_is_a_string_with_its_reason():
    p = precision.Precision("bf16", "measured", "why")
    assert p == "bf16" and json.dumps({"p": p}) == '{"p": "bf16"}' and f"{p}" == "bf16"
    import pickle
    again = pickle.loads(pickle.dumps(p))
    assert again == "bf16" and again.reason == "why" and again.source == "measured"
