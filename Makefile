# One entry point: every target creates the virtual environment it needs when it is missing.
#   make qa     the main job: the run_qa comparison on the offline default (table, JSON, CSV, plot)
#   make test   all tests: unit tests and the notebooks under pytest --nbval
#   make lab    JupyterLab on notebooks/
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
QA_OUTPUT ?= results/qa

.PHONY: qa test lab info clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m cpu_inference_helpers info
	touch $(STAMP)

QA_QUESTIONS ?= 200
qa: $(STAMP)
	$(PY) -m cpu_inference_helpers.run_qa --do_eval --max_seq_length 384 --doc_stride 128 \
		--per_device_eval_batch_size 8 --max_eval_samples $(QA_QUESTIONS) --output_dir $(QA_OUTPUT)

# The notebooks read their sizes from TUTORIAL_* variables: CI runs them small, JupyterLab full size.
NOTEBOOK_CI_SIZES := TUTORIAL_SEQ_LEN=128 TUTORIAL_DOC_STRIDE=32 TUTORIAL_REPEATS=2 TUTORIAL_QUESTIONS=8 \
	TUTORIAL_OUTPUT_DIR=$(CURDIR)/results/notebook-qa-ci
test: $(STAMP)
	$(NOTEBOOK_CI_SIZES) $(PY) -m pytest --nbval --nbval-current-env --nbval-sanitize-with notebooks/sanitize.cfg \
		tests notebooks

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

info: $(STAMP)
	$(PY) -m cpu_inference_helpers info

clean:
	rm -rf $(VENV) results
