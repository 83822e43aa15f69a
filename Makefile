# Every target creates .venv when it is missing. torch is pinned here (a CPU build);
# pyproject.toml keeps a range that this pin satisfies.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH_PIN := torch==2.13.0
STORE ?= data/default.zarr
CONFIG ?= actstats/configs/default.toml

# The experiments behind docs/findings.md (tools/findings.py's EXPERIMENTS), cheapest first: the
# example configs of the same names (actstats/configs/NAME.toml, `actstats init --list`); each
# capture resumes where an interrupted one stopped.
FINDINGS := saxe2018 init_scale terminal_lr terminal terminal_wide glorot2010 answer terminal_mnist1d

.PHONY: all report test test-long test-portable bench bench-scale stress venv clean findings findings-data

all: test

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PIN)
	$(PY) -m pip install --quiet -e '.[capture,distributed,s3,dev]'
	touch $@

venv: $(VENV)/.installed

report: venv
	$(VENV)/bin/actstats capture $(CONFIG) -o $(STORE) --resume --workers 2
	$(VENV)/bin/actstats report $(STORE) -o report
	@echo "report: $$(pwd)/report/index.html"

# Two workers (pytest-xdist): the suite is CPU-bound and the machines have two cores.
test: venv
	$(PY) -m pytest -q -n 2

# The trials that take several seconds each (type-I error by simulation, multi-process
# captures): guards of contracts kept out of make test's five minutes; CI runs them next.
test-long: venv
	$(PY) -m pytest -q -n 2 -m long

# The numerical tests again with numpy's SIMD dispatch narrowed to its baseline and one BLAS
# thread, as another CPU would compute them (tests/README.md: the tolerance policy).
test-portable: venv
	$(PY) tests/portable.py -n 2

stress: venv
	$(PY) -m pytest -q -m stress

bench: venv
	$(PY) tests/benchmarks/bench_startup.py
	$(PY) tests/benchmarks/bench_codecs.py
	$(PY) tests/benchmarks/bench_capture.py
	$(PY) tests/benchmarks/bench_queries.py
	$(PY) tests/benchmarks/bench_weights.py
	$(PY) tests/benchmarks/bench_recorder.py

bench-scale: venv
	$(PY) tests/benchmarks/bench_scale.py --sizes 1,4 --repeat 2

findings-data: venv
	mkdir -p data/timings
	for name in $(FINDINGS); do \
	    start=$$(date +%s); \
	    out=$$($(VENV)/bin/actstats capture --example $$name -o data/$$name.zarr --resume --workers 2); \
	    rc=$$?; \
	    echo "$$out"; \
	    case "$$out" in *" 0 records written"*) ;; *) echo $$(( $$(date +%s) - start )) >> data/timings/$$name.seconds.log ;; esac; \
	    [ $$rc -eq 0 ] || exit $$rc; \
	done

findings: findings-data
	$(PY) tools/findings.py --data data --out docs

clean:
	rm -rf report .pytest_cache
