# Two entry points for a fresh machine with Python 3.10+:
#   make demo   train CycleGAN for under 3 minutes (2 CPU cores) on the bundled Noto -> OpenMoji pair, translate
#               the held-out test emoji, score them and write runs/demo/strip.png (inputs over outputs)
#   make test   run the test suite
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
DEMO := runs/demo
DEMO_DATA := datasets/emoji2openmoji
.PHONY: demo test test-all clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e ".[dev]"
	touch $@

demo: $(VENV)/.installed
	$(BIN)/cyclegan fit --config configs/cyclegan.yaml --config configs/fast.yaml \
		--data.root $(DEMO_DATA) --trainer.default_root_dir $(DEMO) \
		--last_checkpoint.dirpath $(DEMO)/checkpoints --seed_everything 0
	$(BIN)/cyclegan translate --checkpoint $(DEMO)/checkpoints/last.ckpt --input $(DEMO_DATA)/testA \
		--output $(DEMO)/translated --overwrite --quiet
	$(BIN)/cyclegan evaluate --checkpoint $(DEMO)/checkpoints/last.ckpt --input $(DEMO_DATA)/testA \
		--reference $(DEMO_DATA)/trainB --target $(DEMO_DATA)/testB --size 64 \
		--out $(DEMO)/evaluate
	@$(BIN)/python bench/demo.py --input $(DEMO_DATA)/testA --output $(DEMO)/translated \
		--reference $(DEMO_DATA)/trainB --metrics $(DEMO)/evaluate/metrics.json --strip $(DEMO)/strip.png

test: $(VENV)/.installed
	$(BIN)/python -m pytest

test-all: $(VENV)/.installed
	$(BIN)/python -m pytest -m "slow or not slow"

clean:
	rm -rf $(DEMO)
