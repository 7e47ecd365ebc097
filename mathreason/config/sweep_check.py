"""Validate every job of a multirun before the launcher submits any of them,
so a typo in job 37 of a 64-job SLURM sweep fails in seconds, not hours."""

from __future__ import annotations

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig

from mathreason.errors import UserError

MAX_CHECKED_JOBS = 512


def sweep_jobs(config: DictConfig) -> list[list[str]]:
    """The override lists of the jobs the basic sweeper will launch."""
    loader = GlobalHydra.instance().config_loader()
    params = [f"{k}={v}" for k, v in (config.hydra.sweeper.get("params") or {}).items()]
    arguments = params + list(config.hydra.overrides.task)
    parsed = OverridesParser.create(config_loader=loader).parse_overrides(arguments)
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def check_launcher(config: DictConfig) -> None:
    """The SLURM launcher needs SLURM where the sweep is started."""
    import shutil

    target = str(config.hydra.launcher.get("_target_", ""))
    if "Slurm" in target and shutil.which("sbatch") is None:
        raise UserError("hydra/launcher=slurm needs SLURM, and `sbatch` is not on PATH here; "
                        "use hydra/launcher=local, or start a cluster first (make slurm-up)")


def validate_sweep(config: DictConfig) -> int:
    from mathreason.config.schema import check_accelerator, validate

    check_launcher(config)
    local = "Slurm" not in str(config.hydra.launcher.get("_target_", ""))  # jobs run on this machine
    loader = GlobalHydra.instance().config_loader()
    jobs = sweep_jobs(config)
    for number, overrides in enumerate(jobs[:MAX_CHECKED_JOBS]):
        job_cfg = loader.load_sweep_config(master_config=config, sweep_overrides=list(overrides))
        try:
            typed = validate(job_cfg, list(overrides))
            if local:
                check_accelerator(typed)
        except UserError as err:
            raise UserError(f"sweep job #{number} ({' '.join(overrides)}): {err}") from err
    return len(jobs)
