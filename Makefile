# The README's two commands: `make demo` and `make test`. Both create .venv/ if it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest tests

# The bundled model (assets/model/) on the bundled samples: drawn boxes in demo_out/*.png.
demo: $(STAMP)
	$(PY) tools/detect.py assets/samples --out demo_out --json demo_out/detections.json

clean:
	rm -rf $(VENV) demo_out
