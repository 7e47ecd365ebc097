"""The experiment sweeps pin every setting they rely on: each job's resolved
config (as `--cfg job --resolve` shows it, less the machine's keys) must equal
its committed copy under tests/snapshots/, so a change of a default (model,
data, method) cannot change an experiment silently. After an intended change:
`python tests/test_sweep_snapshots.py` rewrites the copies; review the diff."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pytest
import yaml
from helpers import ROOT, compose_sweep_job
from omegaconf import OmegaConf

SNAPSHOTS = Path(__file__).parent / "snapshots"
# the sweeps behind committed results
EXPERIMENTS = ("repro_cpu", "miniature_dev", "miniature", "grpo_vs_dpo_dev", "grpo_vs_dpo", "smollm2_warm_start",
               "smollm2_dev", "smollm2")
MACHINE_KEYS = ("hydra", "cache_dir", "threads", "device", "logger", "verbose")


def jobs(sweep: str) -> list[list[str]]:
    """One job per combination of the sweep's params, the seed held at its first value
    (a seed changes only `seed`)."""
    sweeper = yaml.safe_load((ROOT / "sweeps" / f"{sweep}.yaml").read_text())["hydra"].get("sweeper")
    params = sweeper["params"] if sweeper else {}  # a single run (smollm2_warm_start): one job
    axes = [[f"{key}={value}" for value in (str(values).split(",")[:1] if key == "seed" else str(values).split(","))]
            for key, values in params.items()]
    return [list(combo) for combo in itertools.product(*axes)]


def resolved(sweep: str, overrides: list[str]) -> str:
    """The job's resolved config, less the machine's keys and the sections its method does not use."""
    from mathreason.records import UNUSED_SECTIONS

    cfg = compose_sweep_job(sweep, overrides)
    cfg.cache_dir = "<cache_dir>"  # the machine's, yet keys under it are the experiment's (model.adapter_path)
    unused = UNUSED_SECTIONS.get(cfg.method, ())
    plain = {k: OmegaConf.to_container(cfg[k], resolve=True) if OmegaConf.is_config(cfg[k]) else cfg[k]
             for k in cfg if k not in MACHINE_KEYS and k not in unused}
    plain["model"].pop("recipe", None)  # read only through the method keys it fills in, which are compared
    return yaml.safe_dump(plain, sort_keys=True)


def snapshot(sweep: str, overrides: list[str]) -> Path:
    name = ",".join(o.lstrip("+") for o in overrides).replace("/", "_")
    return SNAPSHOTS / sweep / f"{name or 'run'}.yaml"


CASES = [(sweep, job) for sweep in EXPERIMENTS for job in jobs(sweep)]


@pytest.mark.parametrize(("sweep", "job"), CASES, ids=[f"{s}:{','.join(j)}" for s, j in CASES])
def test_each_experiment_job_resolves_to_its_committed_config(sweep, job):
    path = snapshot(sweep, job)
    assert path.is_file(), f"{path} missing: run `python tests/test_sweep_snapshots.py` and review it"
    assert resolved(sweep, job) == path.read_text(), (
        f"{sweep} job {job} no longer resolves to {path.relative_to(ROOT)}: a default it relies on changed; "
        "pin the setting in the sweep or, if intended, rewrite the copies (python tests/test_sweep_snapshots.py)")


if __name__ == "__main__":
    for sweep, job in CASES:
        path = snapshot(sweep, job)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(resolved(sweep, job))
        print(path.relative_to(ROOT), file=sys.stderr)
