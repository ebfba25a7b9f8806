# tgap: `make demo` runs the whole pipeline locally, `make test` runs the tests.
# Both create .venv and install the package first when it is missing or pyproject.toml changed.

VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.tgap-installed
CONFIG ?= pipelines/configs/thesis.yaml

.PHONY: setup demo test compile bench images lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch and torchvision first, pinned: pip takes them from this machine's disk when present.
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

# runs/demo is the demo's own output folder: a new demo replaces the previous one.
demo: setup
	rm -rf runs/demo
	$(VENV)/bin/tgap run --config pipelines/configs/demo.yaml --output runs/demo

# One pytest worker per usable CPU (at most 4; tests/conftest.py counts them); a worker takes a whole module at a time, so a module
# fixture (often a whole kfp.local run) is built once; the slow modules go first
# (tests/conftest.py) so that the short ones fill in behind them.
test: setup
	scripts/ensure-chromium.sh
	$(VENV)/bin/pytest -q -n auto --maxprocesses=4 --dist loadfile --no-loadscope-reorder

compile: setup
	$(VENV)/bin/tgap compile --config $(CONFIG) --output pipelines/compiled/tgap.yaml

bench: setup
	@for script in benchmarks/*.py; do \
		echo "== $$script"; $(PY) $$script || exit 1; \
	done

images: setup
	scripts/build-images.sh

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf runs .pytest_cache .ruff_cache
