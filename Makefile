# Concierge: `make demo` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install browser demo test test-scale lint typecheck docs docs-serve docs-check unit scenarios integration fuzz bench bench-state bench-scale bench-stages bench-memory bench-budget clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "Concierge needs Python 3.11 (set PYTHON=python3.11)")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

demo: install
	$(BIN)/concierge demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy operators

# The documentation site (mkdocs.yml, docs/): `make docs` writes the policy reference from
# the schema and the example, then builds the site into site/; `make docs-serve` serves it on
# http://127.0.0.1:8000. `make test` builds it with --strict (a link to a page or an anchor
# that is not there fails) and checks the reference is what the schema and example give.
MKDOCS := NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs
docs: install
	$(BIN)/python docs/policy_reference.py
	$(MKDOCS) build --strict

docs-serve: docs
	$(MKDOCS) serve --strict

docs-check: install
	$(BIN)/python docs/policy_reference.py --check
	$(MKDOCS) build --strict

unit: install
	$(BIN)/pytest -q tests/unit tests/flows

scenarios: install
	$(BIN)/pytest -q tests/scenarios

integration: install
	$(BIN)/pytest -q tests/integration

# The report's browser test opens the page in headless Chromium, Debian's package: installed
# here when this user may (root, or sudo without a password), else the test is skipped and
# says why, and so does this.
APT_CHROMIUM := env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium
browser: install
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
		echo "WARNING: no chromium and no apt-get: the report's browser test will be SKIPPED"; \
	else \
		if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO=sudo; \
		else echo "WARNING: chromium is not installed and this user cannot install it:" \
			"the report's browser test will be SKIPPED (apt-get install chromium)"; exit 0; fi; \
		echo "installing chromium (Debian's package) for the report's browser test"; \
		$$SUDO $(APT_CHROMIUM) >$(VENV)/apt.log 2>&1 || { $$SUDO apt-get update -q >>$(VENV)/apt.log 2>&1 && \
			$$SUDO $(APT_CHROMIUM) >>$(VENV)/apt.log 2>&1; } || \
			echo "WARNING: installing chromium failed (see $(VENV)/apt.log):" \
				"the report's browser test will be SKIPPED"; \
	fi

# Two pytest workers, a test file each at a time: most of a Kafka test's time is the flow and
# the broker waiting on each other, so two files overlap well on two cores (about 5 minutes
# where one worker takes 10). TEST_WORKERS=0 runs them in this process, one after another.
TEST_WORKERS ?= 2
test: install lint typecheck docs-check browser
	$(BIN)/pytest -q -p no:cacheprovider -m "not scale" -n $(TEST_WORKERS) --dist loadfile

# At production scale (about 6 minutes; `.ci/run` runs it after `make test`): kill -9 over
# 100,000 events from 10,000 customers, a clean run against four kills at random points, a
# SIGTERM and a last run to the end, under the reference policy, under a population model
# and under capacity (CONCIERGE_CRASH_EVENTS, _CUSTOMERS, _KILLS, _SEED and _POLICY change
# it); 100,000 events of one bot with a new anonymous id each, against 100,000 ordinary
# events replayed in the same run; the getting-started tour; and learning replayed a day at
# a time, and against Kafka mode on two processes.
test-scale: install
	$(BIN)/pytest -q -p no:cacheprovider -m scale -s

# The suite's attacks (hostile records, policies, replay and validate), twenty times longer
# and with fresh random draws each run: about 20 minutes.
fuzz: install
	CONCIERGE_FUZZ_SCALE=20 $(BIN)/pytest -q -p no:cacheprovider --timeout 3600 \
		tests/unit/test_hostile_input.py tests/unit/policy/test_hostile_policies.py \
		tests/scenarios/test_hostile_cli.py

bench: install
	$(BIN)/python bench/throughput.py

bench-state: install
	$(BIN)/python bench/state_size.py

bench-scale: install
	$(BIN)/python bench/scale_out.py

bench-stages: install
	$(BIN)/python bench/stages.py

bench-memory: install
	$(BIN)/python bench/memory.py

bench-budget: install
	$(BIN)/python bench/budget.py

clean:
	rm -rf $(VENV) .concierge .pytest_cache .mypy_cache .ruff_cache site
