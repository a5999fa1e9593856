# Two entry points for a fresh machine with Python 3.10+:
#   make demo   train CycleGAN briefly on the bundled emoji sample (CPU, W&B offline) and translate the test images
#   make test   run the test suite
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
DEMO := runs/demo

.PHONY: demo test test-all clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e ".[dev]"
	touch $@

demo: $(VENV)/.installed
	$(BIN)/cyclegan fit --config configs/cyclegan.yaml --config configs/tiny.yaml \
		--data.root datasets/emoji --trainer.default_root_dir $(DEMO) \
		--last_checkpoint.dirpath $(DEMO)/checkpoints --seed_everything 0
	$(BIN)/cyclegan translate --checkpoint $(DEMO)/checkpoints/last.ckpt --input datasets/emoji/testA \
		--output $(DEMO)/translated --overwrite
	@echo "sample grids (real | translated | reconstructed): $$(ls -d $(DEMO)/cyclegan/*/samples | tail -n 1)"
	@echo "test emoji translated A -> B: $(DEMO)/translated"

test: $(VENV)/.installed
	$(BIN)/python -m pytest

test-all: $(VENV)/.installed
	$(BIN)/python -m pytest -m "slow or not slow"

clean:
	rm -rf $(DEMO)
