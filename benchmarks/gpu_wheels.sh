#!/usr/bin/env bash
# The wheels benchmarks/gpu_check.sh needs on a GPU machine without internet access.
#
#   benchmarks/gpu_wheels.sh            # download them here into .whl/ (git-ignored)
#   benchmarks/gpu_wheels.sh --list     # print them, one a line
#
# The GPU machine lent to this project has Python 3.12 with torch (CUDA), torchaudio, lightning,
# transformers, tensorboard, scikit-learn, matplotlib, scipy and pytest, and no package index.
# What hear_codec's tests and benchmarks import beyond that is below, pinned to the versions of
# `make venv`, for CPython 3.12 on x86-64 Linux; each goes in with --no-deps (gpu_check.sh
# installs them from .whl/ into a folder of its own when an import fails there). TensorFlow, which
# hear-validator imports, is not among them: its wheel is far over what can be carried, and
# gpu_check.sh gives the validator a stand-in module instead (see there).
set -euo pipefail
cd "$(dirname "$0")/.."

BINARY=(soundfile==0.14.0 cffi==2.1.1 pycparser==3.12 hearvalidator==2021.0.2)
SOURCE_ONLY=(encodec==0.1.1)  # published as a source archive only: built into a wheel here (pure Python)

if [ "${1:-}" = "--list" ]; then
    printf '%s\n' "${BINARY[@]}" "${SOURCE_ONLY[@]}"
    exit 0
fi

PYTHON=${PYTHON:-python3}
mkdir -p .whl
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "${BINARY[@]}"
"$PYTHON" -m pip wheel --quiet --no-deps -w .whl "${SOURCE_ONLY[@]}"
ls -l .whl
du -sh .whl
