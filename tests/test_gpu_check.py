"""benchmarks/gpu_check.sh: its smoke run (every step, on the CPU at tiny sizes), the wheels it
names, and how it refuses to run."""
import os
import subprocess
import sys

import pytest

from conftest import REPO

SCRIPT = REPO / "benchmarks" / "gpu_check.sh"


def run(*args, timeout=600, **env):
    return subprocess.run([str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          env={**os.environ, "PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": "", **env})


@pytest.mark.slow
def test_the_smoke_run_passes_every_step_and_writes_its_tables(tmp_path):
    result = run("--smoke", "--out", tmp_path / "out", "--work", tmp_path / "work")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = (tmp_path / "out" / "summary.md").read_text()
    for step in ("tests", "train", "embed", "caption", "builtin"):
        assert f"## {step}: passed, " in summary, summary
        assert (tmp_path / "out" / f"{step}.log").stat().st_size > 0
    assert "6 skipped" in summary  # the cuda tests are selected, and skip without a GPU
    for row in ("| tiny | 0.7M | codec |", "| tiny | 0.7M | step |", "| tiny | 0.7M | step+codec |",
                "| tiny | 0.7M | fed |"):
        assert row in summary
    assert "of a step; fed by the loader" in summary and "loader alone:" in summary
    assert "data: 2 files x 4 s written now: " in summary  # the corpus made on the spot (prepared, or WAV)
    assert "matmul [256, 256] x [256, 256] measured now: bf16" in summary
    assert "| mel256 | default-scene |" in summary and "| mel256 | official |" in summary
    assert "batched (batch 2):" in summary and "one at a time:" in summary
    assert "Looks good!" in summary  # hear-validator, with the TensorFlow stand-in
    assert "every step passed" in summary
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        ["summary.md"] + [f"{s}.log" for s in ("tests", "train", "embed", "caption", "builtin")])


def test_it_names_the_wheels_to_carry():
    result = run("--wheels")
    assert result.returncode == 0
    assert result.stdout.split("\n", 1)[1].split() == ["soundfile==0.14.0", "cffi==2.1.1", "pycparser==3.12",
                                                       "hearvalidator==2021.0.2", "encodec==0.1.1"]


def test_without_a_gpu_it_stops_at_once_and_says_so(tmp_path):
    result = run("--out", tmp_path / "out")
    assert result.returncode == 2
    assert "error: no CUDA GPU visible to torch; run with --smoke" in result.stderr
    result = run("--fast")
    assert result.returncode == 2 and "error: unknown option --fast" in result.stderr


def test_a_python_without_the_packages_is_told_what_to_carry(tmp_path):
    """A bare Python (a venv with nothing installed) lacks every package: the check names them and
    the wheels, and stops before any step."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True)
    result = run("--smoke", "--out", tmp_path / "out", PYTHON=str(tmp_path / "bare" / "bin" / "python"),
                 PYTHONPATH="")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "error: cannot import: torch lightning transformers pytest soundfile encodec hearvalidator" in result.stderr
    assert "encodec==0.1.1" in result.stderr and not (tmp_path / "out" / "summary.md").exists()
