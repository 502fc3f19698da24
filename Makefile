# One entry point: every target creates the virtual environment it needs when it is missing.
#   make qa      the main job: the run_qa comparison on the offline default (table, JSON, CSV, plot)
#   make test    all tests on both stacks: legacy (torch 2.8 + IPEX + transformers 4.56), then modern
#                (torch 2.13 + transformers 5, no IPEX); each runs the unit tests and the notebooks
#   make lab     JupyterLab on notebooks/
#   make bench   the performance benchmark: every path vs eager fp32, the peers and the matmul roofline
#   make throughput  aggregate samples/s of N pinned instances x K threads against one instance on every core
#   make cold-start  a fresh process to the first answer per mode, and the C++ program
#   make deploy  build the C++ program deploy/qa_logits.cpp against the stack's torch wheel (into build/)
#   make generate  text generation with a decoder LLM: every path's prefill and decode, accuracy, the roofline, llama.cpp
#   make train   re-train the shipped QA checkpoint minilm-squad in its four stages (resumable; ~6 h on 2 cores)
# STACK=modern selects the modern stack for qa, lab, info and test-stack (default: legacy).
PYTHON ?= python3.11
STACK ?= legacy
# `make test` creates both environments at once; each installs this project editable, which writes its metadata
# into this folder (*.egg-info): one at a time, under a lock on the Makefile (util-linux's flock, where installed).
ONE_EDITABLE_AT_A_TIME := $(if $(shell command -v flock),flock Makefile,)

ifeq ($(STACK),legacy)
VENV := .venv
REQUIREMENTS := pyproject.toml
INSTALL := $(ONE_EDITABLE_AT_A_TIME) $(VENV)/bin/python -m pip install --quiet -e '.[dev,notebooks,plots,hf,peers,ray,browser,llm]'
# The legacy stack is where the stored notebook outputs come from: compare them strictly; and open every
# notebook in JupyterLab in a real browser (tests/test_browser.py; it installs Debian's chromium as root).
NBVAL := --nbval
BROWSER_TEST := 1
# ... running notebook 04 there (its widget and button: nbval cannot click); the others (all run by nbval on both
# stacks) are opened with their stored outputs, so that CI fits its 90 minutes. TUTORIAL_BROWSER_RUN=all runs every one.
BROWSER_RUN ?= 04
# Notebook 08's paths in the tests: eager and compile (its checked cell), dynamic int8, and IPEX's ipex.llm.optimize
# on the real decoder (the legacy stack's own); tests/test_generation.py builds every path on both stacks.
GENERATION_PATHS := eager,compile,int8-dynamic,ipex-llm
else ifeq ($(STACK),modern)
VENV := .venv-modern
REQUIREMENTS := requirements/modern.txt pyproject.toml
INSTALL := $(VENV)/bin/python -m pip install --quiet -r requirements/modern.txt \
	&& $(ONE_EDITABLE_AT_A_TIME) $(VENV)/bin/python -m pip install --quiet --no-deps -e .
# Without IPEX the IPEX cells print fallbacks instead of fusions: run every cell, compare none.
NBVAL := --nbval-lax
BROWSER_TEST := 0
BROWSER_RUN :=
# Tests of what no stack changes (the docs, data files, fresh processes, Ray's and the instances' plumbing, the
# training loop) ran on the legacy stack: CI has 90 minutes for both.
SELECT := -m 'not stack_independent'
# its notebooks in one process: in two they took 26 min against 20 (AVX2-only EPYC, 2026-12-07, docs/ci-time.md)
NOTEBOOK_WORKERS := 0
# Notebook 07 (batching, pinned instances, Ray) times eager and jit through the same plumbing as the tests marked
# stack_independent: it runs on the legacy stack only, like them (CI's 90 minutes, docs/ci-time.md).
STACK_INDEPENDENT_NOTEBOOKS := notebooks/07_throughput.ipynb
# Notebook 08's paths as on legacy, with torchao's int4 weights on the real decoder (this stack's own) for IPEX's.
GENERATION_PATHS := eager,compile,int8-dynamic,int4-weight-only
else
$(error STACK must be legacy or modern, not '$(STACK)')
endif

NOTEBOOKS := $(filter-out $(STACK_INDEPENDENT_NOTEBOOKS),$(sort $(wildcard notebooks/*.ipynb)))
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
QA_OUTPUT ?= results/qa
QA_QUESTIONS ?= 1000
TRAIN_OUTPUT ?= results/train
SHARED_DATA ?= ../shared/data
# The notebooks read their sizes from TUTORIAL_* variables: tests run them small, JupyterLab full size; and the tests
# compile int8 graphs without GEMM autotuning (half the compile time; they check results, not speed). TUTORIAL_MODEL:
# notebooks 01, 02 and 06 time random-bert-base (12 layers) for readers; the tests run them on the 6-layer
# minilm-squad the others use (legacy, -n 2: 620 s of worker time against 870; notebooks/sanitize.cfg's counts).
NOTEBOOK_TEST_SIZES := TUTORIAL_MODEL=minilm-squad TUTORIAL_SEQ_LEN=128 TUTORIAL_DOC_STRIDE=32 TUTORIAL_REPEATS=2 TUTORIAL_QUESTIONS=8 TUTORIAL_CALIBRATION_WINDOWS=16 \
	TUTORIAL_COLD_START_ROWS=eager,export-saved,cpp-export TUTORIAL_SECONDS=1 TUTORIAL_BATCH_SIZES=1,4 \
	TUTORIAL_PROMPT_LEN=32 TUTORIAL_NEW_TOKENS=8 TUTORIAL_GENERATION_PATHS=$(GENERATION_PATHS) CPU_INFERENCE_NO_GEMM_AUTOTUNE=1 \
	TUTORIAL_OUTPUT_DIR=$(CURDIR)/results/notebook-qa-$(STACK)

# The unit tests, then the notebooks, run in this many processes (pytest-xdist), each test file or notebook whole
# in one: much of their time is single-threaded (Inductor's Python, process start-ups), so two overlap well on 2 cores.
TEST_WORKERS ?= 2
NOTEBOOK_WORKERS ?= $(TEST_WORKERS)

.PHONY: qa test test-stack venv venv-legacy venv-modern lab info bench throughput cold-start deploy generate train clean

$(STAMP): $(REQUIREMENTS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(INSTALL)
	$(PY) -m cpu_inference_helpers info
	touch $(STAMP)

qa: $(STAMP)
	$(PY) -m cpu_inference_helpers.run_qa --do_eval --max_seq_length 384 --doc_stride 128 \
		--per_device_eval_batch_size 8 --max_eval_samples $(QA_QUESTIONS) --output_dir $(QA_OUTPUT)

test:
	$(MAKE) --no-print-directory -j2 venv-legacy venv-modern
	$(MAKE) --no-print-directory test-stack STACK=legacy
	$(MAKE) --no-print-directory test-stack STACK=modern

# Both environments at once: pip spends most of an install unpacking wheels on one core, so two overlap well
# (docs/ci-time.md: CI has 90 minutes on 2 cores for both stacks).
venv-legacy venv-modern: venv-%:
	$(MAKE) --no-print-directory venv STACK=$*

venv: $(STAMP)

test-stack: $(STAMP)
	@echo "=== tests on the $(STACK) stack ==="
	$(PY) -m ruff check cpu_inference_helpers tests scripts
	$(NOTEBOOK_TEST_SIZES) TUTORIAL_BROWSER_TEST=$(BROWSER_TEST) TUTORIAL_BROWSER_RUN=$(BROWSER_RUN) \
		$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(SELECT) tests
	$(NOTEBOOK_TEST_SIZES) $(PY) -m pytest -n $(NOTEBOOK_WORKERS) --dist loadfile $(NBVAL) --nbval-current-env \
		--nbval-sanitize-with notebooks/sanitize.cfg $(NOTEBOOKS)

# N instances x K threads pinned to disjoint cores against one instance on every core, per mode and batch size.
throughput: $(STAMP)
	$(PY) -m cpu_inference_helpers.bench.throughput --modes eager,jit,ipex+jit --batch_sizes 1,8,32 \
		--output_dir results/throughput-$(STACK)

# A fresh process to the first answer, per mode, and the C++ program (deploy/qa_logits.cpp); ~5 minutes.
cold-start: $(STAMP)
	$(PY) -m cpu_inference_helpers.bench.cold_start --output_dir results/cold-start-$(STACK)

# The C++ program deploy/qa_logits.cpp, built with g++ against this stack's torch wheel, into build/.
deploy: $(STAMP)
	$(PY) -c "from cpu_inference_helpers.deployment import build_deploy_program as build; print(build('build'))"

# Text generation (SmolLM2-135M-Instruct from its GGUF file): prompts of 128 and 1024 tokens, batch 1 and 4, 128 new
# tokens, every path against eager fp32 and llama.cpp on the same file (also at 16 bits); ~30 minutes on 2 cores.
generate: $(STAMP)
	$(PY) -m cpu_inference_helpers.generation --prompt_lengths 128,1024 --batch_sizes 1,4 --new_tokens 128 --peer_f16 \
		--output_dir results/generation-$(STACK)

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

info: $(STAMP)
	$(PY) -m cpu_inference_helpers info

bench: $(STAMP)
	$(PY) -m cpu_inference_helpers.bench --output_dir results/bench-$(STACK)

# Four stages, each resuming from its checkpoint.pt when one with the same settings exists:
# one epoch of the SQuADShifts sets from the base encoder (the former minilm-squadshifts), then
# three runs of 2,400 steps (43% of an epoch each, in three orders) of SQuAD v1.1 train, each from
# the one before. To ship the result:
# cp $(TRAIN_OUTPUT)/stage4-squad/minilm-squad/* cpu_inference_helpers/data/minilm-squad/
SQUAD_TRAIN = --train_files $(SHARED_DATA)/squad/train-v1.1.json.xz --max_steps 2400 --resume
train: $(STAMP)
	$(PY) -m cpu_inference_helpers.training.train --train_files $(SHARED_DATA)/squadshifts/*.json.xz \
		--output_dir $(TRAIN_OUTPUT)/stage1-squadshifts --epochs 1 --resume
	$(PY) -m cpu_inference_helpers.training.train $(SQUAD_TRAIN) --snapshot_every 300 \
		--init_from $(TRAIN_OUTPUT)/stage1-squadshifts/minilm-squad --output_dir $(TRAIN_OUTPUT)/stage2-squad
	$(PY) -m cpu_inference_helpers.training.train $(SQUAD_TRAIN) --snapshot_every 600 --learning_rate 6e-5 --seed 1 \
		--init_from $(TRAIN_OUTPUT)/stage2-squad/minilm-squad --output_dir $(TRAIN_OUTPUT)/stage3-squad
	$(PY) -m cpu_inference_helpers.training.train $(SQUAD_TRAIN) --snapshot_every 600 --learning_rate 6e-5 --seed 2 \
		--init_from $(TRAIN_OUTPUT)/stage3-squad/minilm-squad --output_dir $(TRAIN_OUTPUT)/stage4-squad
	$(PY) -m cpu_inference_helpers.training.curve --output_dir $(TRAIN_OUTPUT)/stage2-squad --questions 300 \
		--start $(TRAIN_OUTPUT)/stage1-squadshifts/minilm-squad
	$(PY) -m cpu_inference_helpers.training.curve --output_dir $(TRAIN_OUTPUT)/stage3-squad --questions 300
	$(PY) -m cpu_inference_helpers.training.curve --output_dir $(TRAIN_OUTPUT)/stage4-squad --questions 300 \
		--after $(TRAIN_OUTPUT)/stage2-squad --after $(TRAIN_OUTPUT)/stage3-squad --first_stage 2

clean:
	rm -rf .venv .venv-modern results
