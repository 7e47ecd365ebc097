"""Sweeps through the real launchers, failure reporting, and resume after a
kill, a SLURM preemption (USR2) and a SLURM requeue. Real (tiny) training runs.

The SLURM tests need the project's cluster (``bash scripts/slurm-cluster.sh
start``) and skip, saying so, when it does not answer.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ROOT, requires_slurm, run_cli

pytestmark = pytest.mark.slow

# The smallest real runs: 16 rollouts per step, short completions, a 16-sample
# eval before and after training only, no W&B. One torch thread per job: jobs
# run two at a time on small machines, and an oversubscribed CPU makes torch's
# thread pool many times slower.
TINY = [
    "threads=1",
    "logger=none",
    "geometry.rollouts_per_step=16",
    "grpo.max_completion_length=48",
    "eval.max_samples=16",
    "eval.max_new_tokens=48",
    "eval.every_n_steps=0",
    "data.n_train=64",
    "data.n_eval=16",
]


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def state(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


def job_dirs(sweep_dir: Path) -> list[Path]:
    return sorted(p.parent for p in sweep_dir.glob("*/run.json"))


def complete_checkpoints(run_dir: Path, pattern: str = "checkpoints/checkpoint-*") -> list[int]:
    """Steps of the checkpoints whose trainer_state.json (written last) is complete."""
    steps = []
    for path in run_dir.glob(f"{pattern}/trainer_state.json"):
        try:
            json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        steps.append(int(path.parent.name.split("-")[1]))
    return sorted(steps)


def is_eval_only(record: dict) -> bool:
    """A held-out eval logged outside a training step (the baseline, the final eval)."""
    return "eval/accuracy_strict" in record and not any(k in record for k in ("train/reward", "train/loss"))


def assert_one_record_per_step(run_dir: Path, max_steps: int) -> None:
    """Resumed or not, a finished run has the step-0 baseline eval, one
    training record per step 1..N and the final eval (logged after training
    ends, at step N): none duplicated, none missing, steps never decreasing."""
    recs = records(run_dir)
    steps = [r["step"] for r in recs]
    assert steps == [*range(max_steps + 1), max_steps], steps
    assert is_eval_only(recs[0]) and is_eval_only(recs[-1])
    assert not any(is_eval_only(r) for r in recs[1:-1])
    # counters continued across the interruption
    assert [r["train/cumulative_rollouts"] for r in recs[1:-1]] == [16 * s for s in range(1, max_steps + 1)]
    walls = [r["train/wall_clock_s"] for r in recs]
    assert walls == sorted(walls)


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"process ended (rc={proc.returncode}) before {what}:\n{out[-2000:]}\n{err[-3000:]}")
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def popen_cli(args: list[str], cwd: Path) -> subprocess.Popen:
    """``python -m mathreason.run`` in its own process group (so it can be killed whole)."""
    return subprocess.Popen(
        [sys.executable, "-m", "mathreason.run", *args],
        cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )


def sacct_states(job_ids: list[str], duplicates: bool = False) -> dict[str, list[str]]:
    """JobID -> states (all of a requeued job's runs with ``duplicates``)."""
    cmd = ["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", ",".join(job_ids)]
    out = subprocess.run(cmd + (["-D"] if duplicates else []), capture_output=True, text=True, timeout=30).stdout
    states: dict[str, list[str]] = {}
    for line in out.splitlines():
        if "|" in line:
            job, st = line.split("|", 1)
            states.setdefault(job, []).append(st.split()[0])
    return states


def submitit_job_ids(sweep_dir: Path) -> list[str]:
    """SLURM job ids (``<array>_<task>``) of a sweep, in job-number order."""
    # hydra-submitit-launcher submits one array job: <array>/ holds its script, <array>_<task>/ each task
    ids = [p.name for p in (sweep_dir / ".submitit").iterdir() if p.is_dir() and "_" in p.name]
    return sorted(ids, key=lambda j: [int(x) for x in j.split("_")])


def check_two_job_sweep(sweep_dir: Path) -> list[Path]:
    dirs = job_dirs(sweep_dir)
    assert len(dirs) == 2 and dirs[0] != dirs[1], dirs
    sizes = set()
    for run_dir in dirs:
        assert state(run_dir)["status"] == "done", state(run_dir)
        recs = records(run_dir)
        assert [r["step"] for r in recs] == [0, 1, 2, 2]  # baseline, 2 steps, final eval
        sizes.add(recs[0]["train/geometry/group_size"])
    assert sizes == {2, 16}
    assert json.loads((sweep_dir / "failures.json").read_text()) == []
    return dirs


# ---------------------------------------------------------------------------- sweeps


def test_local_sweep_over_group_sizes(tmp_path, cache_dir):
    """group_size=2,16 through submitit_local: two jobs, one sweep dir, one
    subdir each, each its own W&B run (offline: about a second per job)."""
    with_wandb = [a for a in TINY if a != "logger=none"] + ["logger=wandb", "logger.mode=offline"]
    out = run_cli(
        ["-m", "group_size=2,16", "hydra/launcher=local", "experiment_name=sweep_local", "geometry.max_steps=2",
         f"cache_dir={cache_dir}", *with_wandb],
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    sweep_dir = tmp_path / "outputs" / "sweeps" / "sweep_local"
    dirs = check_two_job_sweep(sweep_dir)
    wandb_ids = {(d / "wandb_id").read_text().strip() for d in dirs}
    assert len(wandb_ids) == 2 and all(wandb_ids)
    assert (sweep_dir / ".submitit").is_dir()  # really ran through submitit
    assert "all 2 jobs done" in out.stdout


def test_failed_job_is_reported_and_the_sweep_goes_on(tmp_path, cache_dir):
    """Basic launcher: job 0 crashes at run time (a loss type TRL rejects only
    in the first step); job 1 still runs; the failure is printed with its
    overrides and log, and listed in failures.json."""
    out = run_cli(
        ["-m", "grpo.loss_type=not_a_loss,dapo", "experiment_name=sweep_fail", "geometry.max_steps=1",
         f"cache_dir={cache_dir}", *TINY],
        cwd=tmp_path,
    )
    assert out.returncode != 0  # a sweep with a failed job fails
    sweep_dir = tmp_path / "outputs" / "sweeps" / "sweep_fail"
    failures = json.loads((sweep_dir / "failures.json").read_text())
    assert [f["num"] for f in failures] == [0]
    failed = failures[0]
    assert "grpo.loss_type=not_a_loss" in failed["overrides"]
    assert "Unknown loss type" in failed["error"]
    log = Path(failed["log"])
    assert "ValueError: Unknown loss type: not_a_loss" in log.read_text()  # the traceback is in the job's log
    line = f"job 0 failed: {' '.join(failed['overrides'])} — log: {log}"
    assert line in out.stderr
    assert "1 of 2 jobs done, 1 failed" in out.stderr
    # the job after the failed one ran to the end
    (ok,) = [d for d in job_dirs(sweep_dir) if state(d)["status"] == "done"]
    assert "grpo.loss_type=dapo" in state(ok)["overrides"]
    assert state(log.parent)["status"] == "failed"


@pytest.mark.slurm
@requires_slurm
def test_slurm_sweep_over_group_sizes(tmp_path, cache_dir):
    out = run_cli(
        ["-m", "group_size=2,16", "hydra/launcher=slurm", "experiment_name=sweep_slurm", "geometry.max_steps=2",
         f"cache_dir={cache_dir}", *TINY],
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    sweep_dir = tmp_path / "outputs" / "sweeps" / "sweep_slurm"
    check_two_job_sweep(sweep_dir)
    ids = submitit_job_ids(sweep_dir)
    assert len(ids) == 2
    states = wait_for(lambda: (s := sacct_states(ids)) and all(s.get(j) == ["COMPLETED"] for j in ids) and s,
                      60, f"sacct to show {ids} COMPLETED")
    assert set(states) == set(ids)


# ---------------------------------------------------------------------------- resume


def resumed_from(log_text: str) -> list[int]:
    """Checkpoint steps the run resumed from, per the run log."""
    return [int(m) for m in re.findall(r"resuming from \S*/checkpoint-\d+ \(step (\d+)\)", log_text)]


def test_resume_after_sigkill(tmp_path, cache_dir):
    """SIGKILL a run after a checkpoint; the same command resumes from the last
    complete checkpoint and ends with exactly the records of an uninterrupted
    run (run alongside, one thread each, in its own directory)."""
    max_steps = 6
    args = ["checkpoint.every_n_steps=2", f"geometry.max_steps={max_steps}", f"cache_dir={cache_dir}",
            *TINY]
    (tmp_path / "ref").mkdir()
    reference = popen_cli(args, tmp_path / "ref")
    try:
        check_resume_after_sigkill(tmp_path, args, max_steps, reference)
    finally:
        if reference.poll() is None:
            os.killpg(reference.pid, signal.SIGKILL)
            reference.communicate()


def check_resume_after_sigkill(tmp_path: Path, args: list[str], max_steps: int, reference: subprocess.Popen) -> None:
    proc = popen_cli(args, tmp_path)
    try:
        wait_for(lambda: any(complete_checkpoints(d) for d in (tmp_path / "outputs" / "runs").glob("*")),
                 600, "a complete checkpoint", proc, every=0.1)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    (run_dir,) = list((tmp_path / "outputs" / "runs").glob("*"))
    assert state(run_dir)["status"] == "running"
    resume_step = max(complete_checkpoints(run_dir))
    assert resume_step < max_steps

    again = run_cli(args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert resumed_from((run_dir / "run.log").read_text()) == [resume_step]
    assert f"resuming from {run_dir / 'checkpoints' / f'checkpoint-{resume_step}'}" in again.stdout + again.stderr
    assert state(run_dir)["status"] == "done"
    assert_one_record_per_step(run_dir, max_steps)

    out, err = reference.communicate(timeout=900)
    assert reference.returncode == 0, err[-3000:]
    (ref_dir,) = list((tmp_path / "ref" / "outputs" / "runs").glob("*"))
    assert_one_record_per_step(ref_dir, max_steps)
    # RNG, optimizer and data order come back from the checkpoint: the same numbers
    keys = ("train/reward", "train/loss", "train/cumulative_generated_tokens", "eval/accuracy_strict")

    def values(d: Path) -> dict[str, float]:
        return {f"{r['step']}:{k}": r[k] for r in records(d) for k in keys if k in r}

    assert values(run_dir) == pytest.approx(values(ref_dir))


@pytest.mark.slurm
@requires_slurm
def test_slurm_preemption_and_requeue_resume(tmp_path, cache_dir):
    """Two SLURM jobs of one sweep: job 0 is preempted (``scancel --signal=USR2``,
    submitit checkpoints the Hydra job and requeues it), job 1 is requeued by
    the admin (``scontrol requeue``: killed, then started again). Both resume
    from their last checkpoint and finish with one record per step."""
    max_steps = 40  # long enough that the signal lands while the job still trains
    sweep_dir = tmp_path / "outputs" / "sweeps" / "sweep_preempt"
    proc = popen_cli(
        ["-m", "seed=0,1", "hydra/launcher=slurm", "experiment_name=sweep_preempt", "hydra.launcher.timeout_min=60",
         "checkpoint.every_n_steps=2", f"geometry.max_steps={max_steps}", f"cache_dir={cache_dir}",
         *TINY],
        tmp_path,
    )
    try:
        def both_submitted() -> list[str] | None:
            ids = submitit_job_ids(sweep_dir) if (sweep_dir / ".submitit").is_dir() else []
            return ids if len(ids) == 2 else None

        def checkpointed_run_dir(seed: int) -> Path | None:
            """The run dir of job ``seed`` once it holds a complete checkpoint."""
            for d in job_dirs(sweep_dir):
                if f"seed={seed}" in state(d).get("overrides", []) and complete_checkpoints(d):
                    return d
            return None

        ids = wait_for(both_submitted, 120, "two SLURM jobs", proc)
        # job number == array task == seed (the sweep's order): job 0 is preempted, job 1 requeued,
        # each as soon as it holds a complete checkpoint
        actions = {0: ["scancel", "--signal=USR2"], 1: ["scontrol", "requeue"]}
        run_dirs: dict[int, Path] = {}
        signalled_at: dict[int, int] = {}

        def signal_checkpointed() -> bool:
            for num, action in actions.items():
                if num not in run_dirs and (run_dir := checkpointed_run_dir(num)):
                    signalled_at[num] = max(complete_checkpoints(run_dir))
                    subprocess.run([*action, ids[num]], check=True, timeout=30)
                    run_dirs[num] = run_dir
            return len(run_dirs) == len(actions)

        wait_for(signal_checkpointed, 600, "a checkpoint in each job", proc, every=0.1)
        out, err = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            subprocess.run(["scancel", *submitit_job_ids(sweep_dir)], timeout=30)
    assert proc.returncode == 0, out[-2000:] + err[-3000:]

    for num, run_dir in run_dirs.items():
        log = (run_dir / "run.log").read_text()
        assert log.count(" (new, ") == 1 and log.count(" (resuming, ") == 1, log
        # from the checkpoint seen when the signal was sent or a later one (a
        # requeued job trains on for up to KillWait after the SIGTERM submitit ignores)
        (step,) = resumed_from(log)
        assert signalled_at[num] <= step < max_steps
        assert state(run_dir)["status"] == "done"
        assert_one_record_per_step(run_dir, max_steps)

    # submitit's USR2 path: checkpoint() of the Hydra launcher, then its own requeue
    text = (sweep_dir / ".submitit" / ids[0] / f"{ids[0]}_0_log.out").read_text()
    for line in ("Caught signal SIGUSR2", "this job is preempted", "Calling checkpoint method",
                 f"Requeued job {ids[0]}"):
        assert line in text, text[-3000:]
    # both jobs ran twice: a REQUEUED run, then the COMPLETED one
    states = wait_for(lambda: (s := sacct_states(ids, duplicates=True)) and all(
        s.get(j, [])[-1:] == ["COMPLETED"] for j in ids) and s, 60, "sacct to show the jobs COMPLETED")
    for job_id in ids:
        assert "REQUEUED" in states[job_id] or "PREEMPTED" in states[job_id], states


def test_report_from_a_real_sweep(tmp_path, cache_dir):
    """The comparison report built from two short real runs (2-GRPO and 16-GRPO):
    one table row per arm and valid PNG plots."""
    import csv

    import matplotlib.image

    out = run_cli(
        ["-m", "group_size=2,16", "experiment_name=sweep_report", "geometry.max_steps=2", "eval.every_n_steps=1",
         f"cache_dir={cache_dir}", *TINY],
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    sweep_dir = tmp_path / "outputs" / "sweeps" / "sweep_report"
    report = subprocess.run([sys.executable, "-m", "mathreason.report", str(sweep_dir), "--out", str(tmp_path / "rep")],
                            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert report.returncode == 0, report.stderr[-2000:]
    rows = list(csv.DictReader((tmp_path / "rep" / "results.csv").open()))
    arms = [r["arm"] for r in rows]
    assert "grpo G=2" in arms and "grpo G=16" in arms, arms
    for name in ("accuracy_vs_step", "accuracy_vs_rollouts", "accuracy_vs_wallclock", "reward_components"):
        image = matplotlib.image.imread(tmp_path / "rep" / f"{name}.png")
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert "| grpo G=2" in (tmp_path / "rep" / "results.md").read_text()


@pytest.mark.parametrize("case", ["in use", "another run"])
def test_a_sweep_job_refused_a_run_dir_leaves_its_record_alone(tmp_path, case):
    """A second sweep into a job's run dir while that job runs (its lock held), or a job whose
    dir holds another config's run: the job fails in one line and run.json stays as it was
    (it used to be rewritten as 'failed', with this job's config)."""
    run_dir = tmp_path / "sweep" / "job"
    run_dir.mkdir(parents=True)
    record = {"status": "running", "config": {"seed": 12345}, "overrides": ["seed=12345"]}
    (run_dir / "run.json").write_text(json.dumps(record))
    holder = None
    if case == "in use":
        holder = subprocess.Popen([sys.executable, "-c", (
            "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
            "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, b'pid 1 on elsewhere'); print('locked', flush=True); "
            "time.sleep(120)"), str(run_dir / "run.lock")], stdout=subprocess.PIPE, text=True)
        assert holder.stdout.readline().strip() == "locked"
    try:
        out = run_cli(["-m", "seed=0", f"hydra.sweep.dir={tmp_path / 'sweep'}", "hydra.sweep.subdir=job", *TINY],
                      cwd=tmp_path)
    finally:
        if holder is not None:
            holder.kill()
    assert out.returncode != 0
    assert ("is in use by" if case == "in use" else "holds another run") in out.stderr
    assert json.loads((run_dir / "run.json").read_text()) == record
