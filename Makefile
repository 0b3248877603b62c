# Two commands for a newcomer: `make app` and `make test`. Everything else is a helper target.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TWIN_DIR ?= data/generated/default

.PHONY: app test test-fast twin demo-state validate bench lint install install-app browser-deps system-deps clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# the core is `pip install .`; extras: [app] streamlit + pydeck, [service] fastapi + uvicorn, [postgres] psycopg,
# [dev] all of them + the test and lint tools. `make app` needs [app] only; `make test` installs [dev].
APP_STAMP := $(VENV)/.installed-app

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP) $(APP_STAMP)

$(APP_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[app]"
	touch $(APP_STAMP)

install: $(STAMP)

install-app: $(APP_STAMP)

# compile the area-query kernels once per install or change (≈ 20 s), not on the first lasso in the app
KERNELS := $(VENV)/.kernels
$(KERNELS): twin/query/_kernels.py $(APP_STAMP)
	@echo "compiling the area-query kernels (numba, once)…"
	$(BIN)/python -c "from twin.query._kernels import warm_up; warm_up()"
	touch $(KERNELS)

twin: install-app $(KERNELS)  ## build the default twin if it is not built yet
	$(BIN)/twin build --out $(TWIN_DIR) --if-missing

demo-state: twin  ## a synthetic incident history for the map (only if the store has none yet)
	$(BIN)/twin incidents seed --twin $(TWIN_DIR) --if-empty --end 2026-11-01 --seed 20231

validate: twin
	$(BIN)/twin validate --twin $(TWIN_DIR)

# Debian packages the tests need, installed when missing (as root; printed): chromium, fonts-noto-cjk, wrk, postgresql and
# postgresql-<major>-postgis-3 for the server twin.store.pg starts (e.g. postgresql-15-postgis-3), or postgresql-postgis.
# They pull in, among others, postgresql-15-postgis-3-scripts, gdal-plugins and xdg-utils (dependencies, not picked).
system-deps:
	@bash scripts/system-deps.sh

browser-deps:  ## node packages for the browser tests and the drawing component (if the project has them)
	@if [ -f package.json ]; then npm ci --no-audit --no-fund --loglevel=error || npm install --no-audit --no-fund --loglevel=error; fi

app: demo-state browser-deps  ## build the twin if needed and start the map app on http://localhost:8501
	$(BIN)/streamlit run apps/streamlit_app.py --server.headless true --browser.gatherUsageStats false

test: system-deps install twin browser-deps  ## the whole test suite
	$(BIN)/python -m pytest -q

# unit tests on the small twin: no default twin, no browser (< 1 minute)
test-fast: install
	$(BIN)/python -m pytest -q -m "not slow and not browser"

bench: install twin
	$(BIN)/python benchmarks/lasso.py

lint: install
	$(BIN)/ruff check twin layers apps tests benchmarks
	$(BIN)/mypy

clean:
	rm -rf $(VENV) data/generated tests/artifacts node_modules
