# `make test` is the one test command (.ci/run calls it): it makes its own virtualenv, installs
# tablesync with its development tools, makes sure PostgreSQL and MariaDB answer, then runs the
# linters, the type checker and the whole pytest suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: test lint lint-app demo install clean bench bench-large bench-repair local rds-ca

$(BIN)/tablesync: pyproject.toml layers/tablesync/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/tablesync

lint: install lint-app
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The serverless app's static checks (sam build runs in the end-to-end tests), and the IaC scanner
# on the template as SAM expands it (its skipped checks and their reasons: .checkov.yaml).
lint-app: install
	$(BIN)/cfn-lint template.yaml
	$(BIN)/statelint statemachine/*.asl.json
	SAM_CLI_TELEMETRY=0 $(BIN)/sam validate --lint
	$(BIN)/python setup/expand_template.py .aws-sam/expanded-template.json
	$(BIN)/checkov -f .aws-sam/expanded-template.json --config-file .checkov.yaml

test: install lint
	$(BIN)/python tests/ensure_services.py
	$(BIN)/pytest -q

# The benchmark (not part of the tests): 1M rows, every scenario, against reladiff; writes
# docs/benchmarks.md. bench-large: 10M rows, the scenarios that matter for memory and speed.
bench: install
	$(BIN)/python bench/bench.py --write-docs docs/benchmarks.md --section 1m

bench-large: install
	$(BIN)/python bench/bench.py --rows 10000000 --reps 2 --scenarios identical,diff_0_01,diff_1 \
		--prefix ts_bench10m_ --write-docs docs/benchmarks.md --section 10m

# Repair throughput: 100,000 missing rows inserted PostgreSQL to MariaDB (docs/benchmarks.md).
bench-repair: install
	$(BIN)/python bench/repair_bench.py --rows 200000 --reps 3 --write-docs docs/benchmarks.md

demo: install
	$(BIN)/tablesync demo

# The whole app offline: ministack on 127.0.0.1, sam build + deploy, one run over the local
# PostgreSQL and MariaDB, the report printed.
local: install
	$(BIN)/python tests/ensure_services.py
	$(BIN)/python setup/local.py

# Amazon RDS's CA bundle, put in the layer before `sam build`: the app's connectors verify the
# databases' certificates against it (DatabaseTls=verify-full, DatabaseCaBundle).
rds-ca:
	curl -fsSL https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem \
		-o layers/tablesync/tablesync/certs/rds-global-bundle.pem

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis .aws-sam
