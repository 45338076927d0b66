PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
# torch's worker threads where processes share the cores (the tests; the UI's runs side by side) sleep
# while they wait instead of spinning, which made runs 8-10x slower when processes competed. `make demo`
# runs alone: there OpenMP's default (spin briefly, then sleep) is ~1.4x faster (docs/performance.md#shared-machines)
SHARED_CORES := OMP_WAIT_POLICY=$(or $(OMP_WAIT_POLICY),PASSIVE)
# jemalloc where it is installed (apt install libjemalloc2), never purging: glibc's malloc hands large
# freed tensors back to the kernel, which zeroes them again on reuse. Without that, backbone training
# steps run ~2x faster (paper profile on BMMC, cpu profile on SNARE-seq), with the same results
# (docs/performance.md). Off: make demo JEMALLOC=
JEMALLOC ?= $(shell ldconfig -p 2>/dev/null | grep -o '/[^ ]*/libjemalloc\.so\.2' | head -1)
ifneq ($(JEMALLOC),)
FAST_MALLOC := LD_PRELOAD=$(JEMALLOC) MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1
endif

.PHONY: install dev demo test ui bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first, pinned: on this machine kind torch==2.13.0 is a local CPU wheel; other specs pull CUDA.
# The package declares ranges; constraints.txt pins what make and CI install.
$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $@

install: $(VENV)/.installed

dev: $(VENV)/.installed-dev

demo: install
	@mkdir -p $(DAGSTER_HOME)
	$(FAST_MALLOC) $(BIN)/multiome-assets build

test: dev
	$(SHARED_CORES) $(BIN)/python -m pytest -q

# loopback only unless you say otherwise: make ui UI_HOST=0.0.0.0
UI_HOST ?= 127.0.0.1
UI_PORT ?= 3000
ui: install
	PATH=$(CURDIR)/$(BIN):$$PATH $(SHARED_CORES) $(FAST_MALLOC) $(BIN)/multiome-assets ui -h $(UI_HOST) -p $(UI_PORT)

bench: install
	$(BIN)/python benchmarks/grn_throughput.py

clean:
	rm -rf data/warehouse $(DAGSTER_HOME)
