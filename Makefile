# KD Lab — two commands: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.requirements.stamp
PORT   ?= 8501

.PHONY: run test test-fast lint bench sweep assets clean-venv

# (Re-)install only when requirements.txt changes.
$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q --upgrade pip
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m streamlit run app.py --server.address 127.0.0.1 --server.port $(PORT)

# The browser tests drive Debian's Chromium: installed here when missing and the machine allows
# (root or passwordless sudo, with apt-get); otherwise one line says what to install.
# Lint and the layer contracts (.importlinter) first, then the whole suite.
test: $(STAMP)
	@bash scripts/ensure_chromium.sh
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow and not browser"

bench: $(STAMP)
	$(PY) -m kdcore bench

assets: $(STAMP)
	$(PY) scripts/build_assets.py

clean-venv:
	rm -rf $(VENV)
