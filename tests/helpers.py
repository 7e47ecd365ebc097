"""Helpers for tests: Hydra compose, the CLI in a subprocess, RunIf-style markers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
CONF = ROOT / "mathreason" / "conf"


def yaml_value(file: str, key: str):
    """A value as the YAML under mathreason/conf states it (e.g. the arith knobs)."""
    import yaml

    return yaml.safe_load((CONF / file).read_text())[key]


def compose(overrides: list[str] | None = None):
    """Compose the config with Hydra's compose API (as lightning-hydra-template's tests do)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    import mathreason.run  # noqa: F401  (registers the mr_slug resolver)

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides or [], return_hydra_config=True)


def compose_sweep_job(sweep: str, overrides: list[str]):
    """One job of a sweep file under sweeps/, composed as `--config-dir sweeps --config-name SWEEP` does."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    import mathreason.run  # noqa: F401  (registers the mr_slug resolver)

    with initialize_config_dir(config_dir=str(ROOT / "sweeps"), version_base="1.3"):
        return hydra_compose(config_name=sweep, overrides=[*overrides, "hydra.searchpath=[pkg://mathreason.conf]"],
                             return_hydra_config=True)


def run_cli(args: list[str], cwd: Path, env: dict | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    """``python -m mathreason.run`` in a subprocess, as a user would call it."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "mathreason.run", *args],
        cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout,
    )


def slurm_running() -> bool:
    """The project's cluster answers (scripts/slurm-cluster.sh status exits 0)."""
    try:
        out = subprocess.run(["bash", str(ROOT / "scripts" / "slurm-cluster.sh"), "status"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0


def cuda_available() -> bool:
    from mathreason.models.load import cuda_available as available

    return available()


requires_slurm = pytest.mark.skipif(
    not slurm_running(), reason="no SLURM cluster answering (start one: bash scripts/slurm-cluster.sh start)"
)
requires_gpu = pytest.mark.skipif(not cuda_available(), reason="needs a CUDA GPU")


def sft_needs_triton() -> bool:
    """TRL 1.15's SFTTrainer always computes its loss with a fused LM head, a Triton kernel it
    imports only where Triton is (not with a CPU build of torch): without it the first step fails
    ('NoneType' object has no attribute 'apply'). The unsloth extra pins TRL 1.15; GPU machines,
    where that extra runs, have Triton. TRL 1.16 has a fallback."""
    try:
        from trl.trainer import utils
    except ImportError:
        return False
    return getattr(utils, "_ChunkedLogProbFunction", "present") is None


requires_sft_trainer = pytest.mark.skipif(
    sft_needs_triton(), reason="this TRL's SFTTrainer needs Triton (TRL 1.15 without a CUDA build of torch)")
