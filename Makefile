# The two commands a newcomer needs: `make run` and `make test`.
# Both create .venv with the project installed; only Python 3.11+, git and make are assumed.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test test-sqlite test-postgres lint bench screenshots clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

## Run the service: dashboard + webhooks + worker, SQLite and embedded Redis in instance/.
run: $(STAMP)
	$(BIN)/outreach run

## A browser for the browser tests: Debian's Chromium if it is there (or can be installed as
## root), else Playwright's own build.
BROWSER_STAMP := $(VENV)/.browser
$(BROWSER_STAMP): $(STAMP)
	@command -v chromium >/dev/null 2>&1 \
	  || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && apt-get install -y -q chromium >/dev/null; } \
	  || $(BIN)/playwright install chromium
	touch $(BROWSER_STAMP)

## Run the whole test suite (SQLite, or PostgreSQL when TEST_DATABASE_URL is set), then lint.
test: $(STAMP) $(BROWSER_STAMP)
	$(BIN)/pytest -q $(PYTEST_ARGS)
	$(MAKE) lint

## The README's screenshots, taken by the browser tests.
screenshots: $(STAMP) $(BROWSER_STAMP)
	OUTREACH_SCREENSHOTS=docs/screenshots $(BIN)/pytest -q -p no:cacheprovider tests/browser

## Lint: ruff, mypy, and the import contracts that keep the layers (pyproject.toml).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) instance .pytest_cache .mypy_cache .ruff_cache .hypothesis
