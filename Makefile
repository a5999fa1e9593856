# Two entry points for a fresh machine with Python 3.10+:
#   make demo   train CycleGAN and method 1 on the bundled colour emoji -> line art pair (about 5 minutes
#               on 2 CPU cores), compare them: runs/demo/compare/report.html (verdict), runs/demo/strip.png
#   make test   run the test suite
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
DEMO := runs/demo
DEMO_DATA := datasets/emoji2lineart
# Both models: the same recipe, data, seed and W&B group; only the model config differs.
DEMO_FIT := --config configs/fast.yaml --data.root $(DEMO_DATA) --trainer.default_root_dir $(DEMO) \
	--seed_everything 0 --trainer.logger.init_args.group emoji2lineart
.PHONY: demo test test-all clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -e ".[dev]"
	touch $@

# lambda_a 2 (A->B->A cycle weight, published 10): line art cannot say which colours to paint back,
# so a strong A->B->A cycle makes the translator hide the colours as faint tints in its line art
# (docs/demo.md). Each run of the demo starts runs/demo afresh.
demo: $(VENV)/.installed
	rm -rf $(DEMO)
	$(BIN)/cyclegan fit --config configs/cyclegan.yaml $(DEMO_FIT) \
		--last_checkpoint.dirpath $(DEMO)/checkpoints/cyclegan --model.init_args.lambda_a 2
	$(BIN)/cyclegan fit --config configs/method1.yaml $(DEMO_FIT) --last_checkpoint.dirpath $(DEMO)/checkpoints/method1
	$(BIN)/cyclegan compare --checkpoint $(DEMO)/checkpoints/cyclegan/last.ckpt \
		--checkpoint $(DEMO)/checkpoints/method1/last.ckpt --input $(DEMO_DATA)/testA \
		--reference $(DEMO_DATA)/trainB --target $(DEMO_DATA)/testB --probe 12 \
		--out $(DEMO)/compare --wandb-dir $(DEMO) --wandb-group emoji2lineart
	@$(BIN)/python bench/demo.py --input $(DEMO_DATA)/testA --target $(DEMO_DATA)/testB \
		--checkpoint CycleGAN=$(DEMO)/checkpoints/cyclegan/last.ckpt \
		--checkpoint "method 1=$(DEMO)/checkpoints/method1/last.ckpt" \
		--metrics $(DEMO)/compare/metrics.json --strip $(DEMO)/strip.png
	@echo
	@echo "Read the comparison: $(DEMO)/compare/report.html (verdict, scores, images) and $(DEMO)/strip.png."
	@echo "The tools are installed in $(VENV): run them as $(BIN)/cyclegan (e.g. $(BIN)/cyclegan --help),"
	@echo "or type 'source $(BIN)/activate' once per shell and then plain 'cyclegan'."
	@echo "Upload the three W&B runs (offline, group emoji2lineart): $(BIN)/wandb sync $(DEMO)/wandb/offline-run-*"

test: $(VENV)/.installed
	$(BIN)/python -m pytest

test-all: $(VENV)/.installed
	$(BIN)/python -m pytest -m "slow or not slow"

clean:
	rm -rf $(DEMO)
