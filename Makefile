# callgate developer tasks. `make run` and `make test` are all a new machine needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run reports check test lint typecheck pytest clean venv system c-adapter wine

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# Debian packages the tests use (Graphviz for SVG state diagrams, Chromium for the HTML report,
# spin and a C compiler for `callgate model check --engine spin`, Wine and mingw-w64 for the
# `wine` adapter's tests: tools/wine/packages.txt).
system:
	./tools/install-system-packages.sh graphviz:dot chromium:chromium spin:spin gcc:cc $$(cat tools/wine/packages.txt)

# The main job: the conformance gate against the bundled reference implementation; the reports
# land in reports/reference (report.json, junit.xml, report.md, report.html, results.jsonl).
run: $(STAMP)
	$(VENV)/bin/callgate model rules | tail -n 1
	$(VENV)/bin/callgate run --adapter reference --budget standard --seed 0 --out reports/reference --keep-if-unchanged

reports: run

# The model's own checks: proofs, invariants, state graph figures.
check: $(STAMP)
	$(VENV)/bin/callgate model check

test: system lint typecheck pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check callgate model conformance tests tools benchmarks

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# pytest exits 5 when it collected no test: that is a failure here, never a pass.
# The tests run in PYTEST_WORKERS processes (pytest-xdist); the tests of one file run in one of
# them, one after another. The tests marked `serial` (they bound the wall time of some work,
# or need the CPUs to themselves: a race that must overlap)
# run afterwards in one process with nothing beside them (README:
# "Running the tests"). PYTEST_WORKERS=0 runs the first part in one process too. Compiled
# modules are written and reused (PYTHONDONTWRITEBYTECODE cleared): every worker and every
# `python -m callgate` subprocess would otherwise compile the whole package again.
PYTEST_WORKERS ?= 4
pytest: $(STAMP)
	@export PATH="$(CURDIR)/$(VENV)/bin:$$PATH"; unset PYTHONDONTWRITEBYTECODE; \
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile -m "not serial"; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; rc=1; fi; \
	$(PY) -m pytest -m serial; rc2=$$?; \
	if [ $$rc2 -eq 5 ]; then echo "pytest collected no serial tests: failing"; rc2=1; fi; \
	[ $$rc -eq 0 ] && [ $$rc2 -eq 0 ]

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis

# Wine as an implementation under test: installs Wine and mingw-w64 when missing, builds the
# native adapter (build/wine/), prepares a private Wine prefix, and runs the gate with Wine's known
# deviations twice, once per COM configuration (docs/wine.md): through a standard proxy (the
# default) into reports/wine, and in process into reports/wine/inproc.
wine: $(STAMP)
	./tools/wine/setup.sh $(PY)
	$(VENV)/bin/callgate run --adapter wine --expectations reports/wine/expectations.toml --seed 0 --out reports/wine --keep-if-unchanged
	CALLGATE_WINE_COM=inproc $(VENV)/bin/callgate run --adapter wine --expectations reports/wine/inproc/expectations.toml --seed 0 --out reports/wine/inproc --keep-if-unchanged

# The example C adapter (examples/c-adapter), built with the machine's cc.
c-adapter:
	$(MAKE) -C examples/c-adapter
