# casebook: `make demo` and `make test` are all a newcomer types. Both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint format bench clean

setup: $(STAMP)

# torch 2.14.1 / torchvision 0.29.1 / torchaudio 2.11.0 install from this machine's local files;
# constraints.txt pins the whole tested set so a fresh machine gets exactly what CI tested.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	# pyctcdecode (CTC beam search with a KenLM language model, what transformers'
	# Wav2Vec2ProcessorWithLM loads) declares numpy<2 but runs on numpy 2 (test_beam_search.py):
	# installed without its declared dependencies, which pyproject.toml lists (pygtrie, kenlm).
	$(BIN)/python -m pip install --quiet -c constraints.txt --no-deps pyctcdecode
	touch $(STAMP)

demo: setup
	$(BIN)/python -m casebook.demo

# Two pytest workers (pytest-xdist): the suite is mostly single-threaded subprocess runs.
TEST_WORKERS ?= 2

test: setup
	HF_HUB_OFFLINE=1 WANDB_MODE=offline $(BIN)/python -m pytest -q -n $(TEST_WORKERS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf runs .cache .pytest_cache .ruff_cache
