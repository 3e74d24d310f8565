# `make test` and `make demo` set everything up on a fresh machine: a virtual
# environment with the package installed editable, and Graphviz's `dot`.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python

.PHONY: demo test test-fast dot browser onednn
demo: $(VENV)/.installed dot onednn
	$(VENV)/bin/minigrad demo

test: $(VENV)/.installed dot browser onednn
	$(PY) -m pytest -q

# Everything but the tests marked slow (fresh kernel compiles, subprocesses): for the edit-test loop.
test-fast: $(VENV)/.installed dot onednn
	$(PY) -m pytest -q -m "not slow"

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

# Graphviz is a system program, not a Python package: install it when we can, say what to do when we can't.
dot:
	@command -v dot >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q graphviz; \
	  else \
	    echo "Graphviz's 'dot' program is missing: install the 'graphviz' system package (e.g. sudo apt-get install graphviz)" >&2; exit 1; \
	  fi; }

# Debian's Chromium and its chromedriver, for the tests that open the HTML pages in a browser. Not
# fatal: without them (not root, no apt) those tests skip and say what to install.
browser:
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver \
	      || echo "could not install chromium: the browser tests will be skipped" >&2; \
	  else \
	    echo "chromium and chromedriver are missing: the browser tests will be skipped (apt-get install chromium chromium-driver)" >&2; \
	  fi; }

# oneDNN (Debian's libdnnl2, one 38 MB library): float32 products run 13-25% faster through its sgemm
# than through OpenBLAS here (rnn.kernels.onednn). Optional: without it float32 runs on OpenBLAS.
onednn:
	@ldconfig -p 2>/dev/null | grep -q 'libdnnl\.so' || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get install -y -q libdnnl2 >/dev/null 2>&1 || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q libdnnl2; }) \
	      || echo "could not install libdnnl2: float32 products run on OpenBLAS" >&2; \
	  else \
	    echo "oneDNN (libdnnl) is missing: float32 products run on OpenBLAS (apt-get install libdnnl2 for ~15% more speed)" >&2; \
	  fi; }
