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


# The cluster scripts/slurm-cluster.sh starts for tests and CI (its ClusterName); its partition is `debug`.
TEST_CLUSTER = "ci"


def cluster_name() -> str | None:
    import subprocess

    try:
        out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=15).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "ClusterName":
            return value.strip()
    return None


def requested_gpus(launcher: DictConfig) -> int:
    """GPUs a submitit SLURM job asks for, from any of the fields that can ask."""
    count = max(int(launcher.get("gpus_per_node") or 0), int(launcher.get("gpus_per_task") or 0))
    gres = str(launcher.get("gres") or "")
    if not count and gres.startswith("gpu"):
        count = int(gres.rsplit(":", 1)[-1]) if gres.rsplit(":", 1)[-1].isdigit() else 1
    extra = launcher.get("additional_parameters") or {}
    if not count and any(k in extra for k in ("gpus", "gres", "gpus_per_node")):
        count = 1
    return count


def check_slurm_job(launcher: DictConfig, typed: DictConfig) -> None:
    """A job that needs a GPU must ask SLURM for one (else it falls back to the CPU and dies at
    the time limit); the test cluster's `debug` partition is for the test cluster only."""
    from mathreason.launch.preflight import gpu_requirements, is_gpu_model

    needs = gpu_requirements(typed)
    if not needs and is_gpu_model(typed):
        needs = [f"model={typed.model.name} ({typed.model.size_b}B parameters)"]
    if needs and not requested_gpus(launcher):
        raise UserError(f"{needs[0]} needs a GPU, but the SLURM launcher requests none "
                        f"(hydra.launcher.gpus_per_node={launcher.get('gpus_per_node')}); "
                        "add hydra.launcher.gpus_per_node=1")
    tasks = int(launcher.get("tasks_per_node") or 1)
    if needs and tasks > 1 and int(launcher.get("gpus_per_task") or 0) < 1 and requested_gpus(launcher) < tasks:
        raise UserError(f"hydra.launcher.tasks_per_node={tasks}: one process per GPU, but the job asks for "
                        f"{requested_gpus(launcher)} GPU(s) per node; set hydra.launcher.gpus_per_node={tasks}")


def planned_generations(typed: DictConfig) -> tuple[int, int] | None:
    """(training generations, eval generations) a job will make, from its config alone
    (None when the training set's size is not known before it loads)."""
    from mathreason.config.geometry import plan_geometry

    data, ev = typed.data, typed.eval
    n_train = data.max_train or data.n_train or data.train_size
    limits = [n for n in (ev.max_samples, data.max_eval, data.n_eval) if n]
    items = min(limits) if limits else None
    if items is None or (typed.method != "eval" and n_train is None):
        return None
    sampled = items * ev.num_samples if ev.num_samples > 1 else 0
    if typed.method == "eval":
        return 0, items + sampled
    if typed.method == "grpo":
        geo = plan_geometry(typed, n_train)
        evals = 2 + (geo.steps // ev.every_n_steps if ev.every_n_steps else 0) + len(ev.at_rollouts or ())
        train = geo.total_rollouts
    elif typed.method == "dpo":
        questions = min(n_train, typed.dpo.mining.max_questions or n_train)
        evals, train = typed.dpo.rounds + 1, typed.dpo.rounds * questions * typed.dpo.mining.samples_per_question
    else:  # sft generates only to evaluate
        evals, train = 2, 0
    sampled_evals = {"ends": min(2, evals), "last": 1, "all": evals}[ev.sampled_evals]
    return int(train), int(evals * items + sampled_evals * sampled)


def check_time_limit(launcher: DictConfig, typed: DictConfig) -> None:
    """Refuse, with the numbers, a job that cannot finish within ``timeout_min`` x (1 +
    ``max_num_timeout``) at the model preset's ``model.recipe.rollouts_per_s``."""
    rate = typed.model.recipe.rollouts_per_s
    planned = planned_generations(typed)
    if not rate or planned is None or not launcher.get("timeout_min"):
        return
    train, evals = planned
    hours = (train + evals) / rate / 3600
    tries = 1 + int(launcher.get("max_num_timeout") or 0)
    limit = float(launcher.timeout_min) * tries / 60
    if hours > limit:
        raise UserError(
            f"estimated {hours:.1f} h ({train:,} training + {evals:,} eval generations at "
            f"model.recipe.rollouts_per_s={rate:g}) exceeds hydra.launcher.timeout_min={launcher.timeout_min} x "
            f"(1 + max_num_timeout={tries - 1}) = {limit:.1f} h; raise timeout_min or max_num_timeout, "
            "shorten the run, or set model.recipe.rollouts_per_s to the rate your runs measure")


def check_partition(launcher: DictConfig) -> None:
    if launcher.get("partition") == "debug" and cluster_name() != TEST_CLUSTER:
        raise UserError("hydra.launcher.partition=debug is the local test cluster's partition "
                        "(scripts/slurm-cluster.sh); name one of this cluster's partitions (sinfo lists them), "
                        "or leave it null for the cluster's default")


def validate_sweep(config: DictConfig) -> int:
    from mathreason.config.schema import check_dir, validate
    from mathreason.launch.preflight import check_accelerator

    check_launcher(config)
    check_dir("hydra.sweep.dir", config.hydra.sweep.dir)
    launcher = config.hydra.launcher
    slurm = "Slurm" in str(launcher.get("_target_", ""))  # else the jobs run on this machine
    if slurm:
        check_partition(launcher)
    loader = GlobalHydra.instance().config_loader()
    jobs = sweep_jobs(config)
    for number, overrides in enumerate(jobs[:MAX_CHECKED_JOBS]):
        job_cfg = loader.load_sweep_config(master_config=config, sweep_overrides=list(overrides))
        try:
            typed = validate(job_cfg, list(overrides))
            if slurm:
                check_slurm_job(job_cfg.hydra.launcher, typed)
                check_time_limit(job_cfg.hydra.launcher, typed)
            else:
                check_accelerator(typed)
        except UserError as err:
            raise UserError(f"sweep job #{number} ({' '.join(overrides)}): {err}") from err
    return len(jobs)
