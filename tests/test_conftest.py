"""tests/conftest.py: the parity tests cannot pass silently where their reference data is required."""
import os
import subprocess
import sys

import pytest

from conftest import REPO, fixtures_required

PARITY_TESTS = ["tests/test_fbank.py", "tests/test_parity_encodecmae.py", "tests/test_parity_enclap.py",
                "tests/test_convert.py"]


def _pytest(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", *PARITY_TESTS],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_missing_fixtures_fail_the_suite_in_ci_and_skip_elsewhere(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "HEAR_CODEC_REQUIRE_FIXTURES")}
    env["HEAR_CODEC_FIXTURES"] = str(tmp_path / "no-fixtures-here")

    local = _pytest(env)
    assert local.returncode == 0, local.stdout[-3000:]
    assert "failed" not in local.stdout and "is absent" in local.stdout

    ci = _pytest(dict(env, CI="true"))
    assert ci.returncode == 1, ci.stdout[-3000:]
    summary = ci.stdout.strip().splitlines()[-1]
    assert "failed" in summary and "skipped" not in summary, summary
    assert "no-fixtures-here" in ci.stdout and "requires it" in ci.stdout


def test_fixtures_are_required_in_ci_or_when_asked(monkeypatch):
    for name in ("CI", "HEAR_CODEC_REQUIRE_FIXTURES"):
        monkeypatch.delenv(name, raising=False)
    assert not fixtures_required()
    monkeypatch.setenv("CI", "true")
    assert fixtures_required()
    monkeypatch.setenv("CI", "false")
    monkeypatch.setenv("HEAR_CODEC_REQUIRE_FIXTURES", "1")
    assert fixtures_required()
