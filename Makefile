# Two commands do everything on a fresh Python 3.11 machine:
#   make demo   -- set up .venv, pretrain the built-in default (mini preset, synthetic corpus, a few minutes on a CPU) and validate it with hear-validator
#   make test   -- set up .venv and run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch is pinned exactly so that pip picks the local CPU wheel instead of a CUDA build.
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: demo test bench venv clean

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml requirements-nodeps.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[train,hear,test]" "$(TORCH)"
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-nodeps.txt
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m training.pretrain --out runs/demo
	$(BIN)/hear-validator hear_codec --model runs/demo/last.ckpt.hearcodec

test: $(STAMP)
	$(BIN)/python -m pytest -q -n auto --dist loadfile tests

bench: $(STAMP)
	$(BIN)/python benchmarks/embed_throughput.py

clean:
	rm -rf $(VENV) runs
