# Two entry points: `make demo` and `make test`. Both create .venv and install into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# A CPU build of torch; CUDA users: TORCH_SPEC="torch==2.13.0" PIP_INDEX for their CUDA wheel, see README.
TORCH_SPEC ?= torch==2.13.0
# The tested versions of everything else (pip constraints: only what is installed is pinned).
LOCK := requirements.lock

.PHONY: demo test install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Plain pip for tunespace and its extras, under the lock's constraints. Two packages install with --no-deps:
# tinysoundfont, the synthesiser (every wheel requires pyaudio: no Linux wheel, needs portaudio headers, unused), and
# musicnn 0.1.0, whose TF1 checkpoints only the parity tests of the packaged musicnn weights read (no TensorFlow).
$(VENV)/.installed: $(BIN)/python pyproject.toml $(LOCK)
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -c $(LOCK) -e ".[test,corpus,decode,encoders,index,pairs,serve,distributed]"
	$(BIN)/pip install --quiet -c $(LOCK) --no-deps tinysoundfont
	$(BIN)/pip install --quiet --no-deps "musicnn==0.1.0"
	touch $@

install: $(VENV)/.installed

demo: install
	HF_HUB_OFFLINE=1 $(BIN)/tunespace demo --out demo-results

test: install
	bash .ci/install-browser
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) demo-results .pytest_cache
