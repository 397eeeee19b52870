# The front door: `make run` and `make test` do all set-up on a fresh machine (Python 3.11+ only).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8000
# `make run`'s console: warnings and errors; INFO shows every request (web) or task (worker, beat).
WEB_LOG_LEVEL ?= WARNING
WORKER_LOG_LEVEL ?= WARNING
export DJANGO_SETTINGS_MODULE ?= portal.settings.dev

.PHONY: run test install lint bench clean

$(STAMP): requirements/dev.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@# uv is fast; plain pip installs the same pinned lock file if uv cannot be had.
	@($(BIN)/pip install -q uv==0.13.8 && $(BIN)/uv pip install -q --python $(BIN)/python -r requirements/dev.txt) \
		|| $(BIN)/pip install -q -r requirements/dev.txt
	@touch $(STAMP)

install: $(STAMP)

run: install
	@mkdir -p data
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_demo
	@echo ""
	@echo "  Portal: http://127.0.0.1:$(PORT)/   (web, Celery worker and Celery beat start below; Ctrl-C stops all)"
	@echo "  Sign in as requester, approver, owner, auditor or admin; the password is portal-demo."
	@echo "  Mail the portal sends is written to data/mail/ (one file per message)."
	@echo "  A worker or beat that stops is started again after a short pause (bin/respawn.py); the web keeps serving."
	@echo "  Below: warnings and errors only (a failed page, a task that failed, a delivery given up). For every request"
	@echo "  and task too: make run WEB_LOG_LEVEL=INFO WORKER_LOG_LEVEL=INFO"
	@echo ""
	PORT=$(PORT) WEB_LOG_LEVEL=$(WEB_LOG_LEVEL) WORKER_LOG_LEVEL=$(WORKER_LOG_LEVEL) $(BIN)/honcho start -f Procfile

# Two processes: the machines this runs on have two cores; each gets a database of its own (pytest-xdist).
PYTEST_ARGS ?= -n 2
test: install
	DJANGO_SETTINGS_MODULE=portal.settings.test $(BIN)/pytest $(PYTEST_ARGS)

# `make bench`: a database of IDENTITIES identities, every benchmark under bench/ against its floor,
# one table (saved under bench/results/). ONLY=search,health / SKIP=agents pick benchmarks; see bench/README.md.
IDENTITIES ?= 100000
REPEAT ?= 3
bench: install
	$(BIN)/python bench/run_all.py --identities $(IDENTITIES) --repeat $(REPEAT) \
		$(if $(ONLY),--only $(ONLY)) $(if $(SKIP),--skip $(SKIP)) $(if $(BENCH_TAG),--tag $(BENCH_TAG))

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) data .pytest_cache
