"""scripts/sft_control.py: the supervised control reads the run's overrides,
trains the cached warm start on that many training prompts and saves a model
that differs from it."""

from __future__ import annotations

import os
import subprocess
import sys

import torch
from helpers import ROOT, compose, requires_sft_trainer
from safetensors.torch import load_file


@requires_sft_trainer
def test_sft_control_trains_the_warm_start_on_the_run_prompts(tmp_path, cache_dir):
    from mathreason.models.tiny import ensure_tiny_model

    cfg = compose(["data.n_train=8"])
    warm = ensure_tiny_model(cfg.model.tiny, cache_dir / "tiny")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MATHREASON_CACHE_DIR": str(cache_dir)}
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "sft_control.py"), str(tmp_path / "ctl"),
                          "--lr", "1e-3", "--prompts-per-step", "4", "data.n_train=8"],
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1].startswith("8 prompts, lr 0.001 constant:")
    before, after = load_file(warm / "model.safetensors"), load_file(tmp_path / "ctl" / "model" / "model.safetensors")
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # 2 optimiser steps moved the weights
