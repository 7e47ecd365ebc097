"""One job on several processes, run for real: torchrun, gloo, 2 CPU processes, the tiny model.

Rank 0 owns the run (run dir, lock, run.json, metrics, eval files, console);
rank 1 trains and evaluates its share and writes nothing. The global geometry
(rollouts per optimizer step, steps, the prompts of each step) is the
configured one whatever the number of processes; eval is sharded by batch and
gives the same per-item results as one process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from helpers import ROOT, requires_slurm, run_cli
from test_sweeps import TINY, assert_one_record_per_step, complete_checkpoints, records, resumed_from, state

pytestmark = pytest.mark.slow

DPO = ["method=dpo", "dpo.rounds=2", "dpo.epochs=1", "dpo.batch_size=4", "dpo.max_length=192",
       "dpo.mining.max_questions=16", "dpo.mining.samples_per_question=4", "dpo.mining.batch_size=16",
       "dpo.mining.max_new_tokens=48", "threads=1", "logger=none", "data.n_train=64", "data.n_eval=16",
       "eval.max_samples=16", "eval.max_new_tokens=48", "eval.every_n_steps=0"]
GRPO = [*TINY, "method=grpo", "group_size=2", "geometry.max_steps=3", "eval.num_samples=4", "eval.batch_size=4"]


def env(cache_dir: Path) -> dict:
    out = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "RANK", "WORLD_SIZE", "LOCAL_"))}
    return {**out, "PYTHONPATH": str(ROOT), "MATHREASON_CACHE_DIR": str(cache_dir), "OMP_NUM_THREADS": "1"}


def command(nproc: int, args: list[str]) -> list[str]:
    """``torchrun --nproc_per_node N -m mathreason.run ...`` (--standalone: a free rendezvous port each time)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
            "-m", "mathreason.run", *args]


def launch(nproc: int, args: list[str], run_dir: Path, cache_dir: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.run(command(nproc, [*args, f"hydra.run.dir={run_dir}"]), cwd=run_dir.parent,
                          env=env(cache_dir), capture_output=True, text=True, timeout=timeout)


def eval_items(run_dir: Path, step: int) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "eval" / f"step_{step:06d}.jsonl").read_text().splitlines()]


def prompts_by_step(run_dir: Path) -> dict[int, list[str]]:
    frames = [pd.read_parquet(p) for p in sorted((run_dir / "checkpoints" / "completions").glob("*.parquet"))]
    frame = pd.concat([f for f in frames if len(f)])
    return {int(step): sorted(map(str, group["prompt"])) for step, group in frame.groupby("step")}


def test_two_processes_train_the_configured_geometry_and_rank_1_writes_nothing(tmp_path, cache_dir):
    one = launch(1, GRPO, tmp_path / "one" / "run", cache_dir)
    two = launch(2, GRPO, tmp_path / "two" / "run", cache_dir)
    assert one.returncode == 0, one.stderr[-3000:]
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = tmp_path / "one" / "run", tmp_path / "two" / "run"

    # one owner: the same files as a one-process run, one console, one run.log
    assert sorted(p.name for p in b.iterdir()) == sorted(p.name for p in a.iterdir())
    assert two.stderr.count("held-out accuracy") == 1 and two.stderr.count("▸ run —") == 1
    assert (b / "run.log").read_text().count("▸ run —") == 1
    assert state(b)["status"] == "done" and state(b)["world_size"] == 2

    # the global geometry is the configured one: rollouts per step, steps, records, the prompts of each step
    first_a, first_b = records(a)[0], records(b)[0]
    assert first_b["train/geometry/world_size"] == 2 and first_a["train/geometry/world_size"] == 1
    assert first_b["train/geometry/per_device_batch"] * 2 == first_a["train/geometry/per_device_batch"]
    for key in ("rollouts_per_step", "steps", "prompts_per_step", "learning_rate"):
        assert first_b[f"train/geometry/{key}"] == first_a[f"train/geometry/{key}"], key
    assert [r["step"] for r in records(b)] == [r["step"] for r in records(a)]
    assert_one_record_per_step(b, 3)
    assert prompts_by_step(b) == prompts_by_step(a)
    assert all(len(p) == 16 for p in prompts_by_step(b).values())

    # the start is the same model: the step-0 eval, greedy and sampled, item for item
    assert eval_items(b, 0) == eval_items(a, 0)

    # training draws other rollouts (each rank samples its half of the prompts from its own stream),
    # so rewards match in distribution, not value: the same prompts, the mean within 1.0 of 4.5
    rewards = [[r["train/reward"] for r in records(d) if "train/reward" in r] for d in (a, b)]
    assert len(rewards[0]) == len(rewards[1]) == 3
    assert abs(sum(rewards[0]) - sum(rewards[1])) / 3 < 1.0


def test_two_process_eval_matches_one_process_item_for_item(tmp_path, cache_dir):
    args = ["method=eval", "threads=1", "logger=none", "data.n_eval=40", "eval.max_samples=40",
            "eval.max_new_tokens=48", "eval.num_samples=4", "eval.batch_size=8"]
    runs = {n: tmp_path / f"n{n}" / "run" for n in (1, 2)}
    for n, run_dir in runs.items():
        done = launch(n, args, run_dir, cache_dir)
        assert done.returncode == 0, done.stderr[-3000:]
    one, two = (eval_items(runs[n], 0) for n in (1, 2))
    assert len(one) == 40 and all(len(r["samples_correct"]) == 4 for r in one)
    assert two == one  # greedy completions and every sampled outcome
    assert records(runs[2])[0]["eval/mean@4"] == records(runs[1])[0]["eval/mean@4"]


def test_two_process_dpo_mines_the_same_pairs_and_trains_the_same_steps(tmp_path, cache_dir):
    """DPO on 2 processes: round 1 mines the same pairs as 1 process (sampling is seeded by
    batch, and the batches are dealt out and gathered); dpo.batch_size is global, so the
    same pairs make each optimizer step and DDP's averaged gradient equals one process's,
    up to float summation order: the losses agree to 1e-4. The whole run (2 rounds) then
    has the same steps and pair counts."""
    args = DPO
    runs = {n: tmp_path / f"n{n}" / "run" for n in (1, 2)}
    for n, run_dir in runs.items():
        done = launch(n, args, run_dir, cache_dir)
        assert done.returncode == 0, done.stderr[-3000:]
    pairs = [(runs[n] / "pairs" / "round_1.jsonl").read_text() for n in (1, 2)]
    assert pairs[0] == pairs[1] and pairs[0].count("\n") >= 2
    one, two = records(runs[1]), records(runs[2])
    assert [r["step"] for r in two] == [r["step"] for r in one]
    round_1 = int(json.loads((runs[1] / "checkpoints" / "round_1" / "done.json").read_text())["steps"])
    first = {r["step"]: r["train/loss"] for r in one if "train/loss" in r and r["step"] <= round_1}
    assert first and first == pytest.approx({r["step"]: r["train/loss"] for r in two
                                             if "train/loss" in r and r["step"] <= round_1}, abs=1e-4)
    assert [r.get("train/mining/pairs") for r in two] == [r.get("train/mining/pairs") for r in one]


def test_two_process_lora_grpo_logs_one_wandb_run_and_sft_trains(tmp_path, cache_dir):
    """LoRA GRPO on 2 processes with offline W&B: one W&B run (rank 0's) holding every step
    once, one adapter saved; then SFT on 2 processes: the global batch gives 1 process's steps."""
    from test_resume import wandb_history

    lora = launch(2, [*TINY, "method=grpo", "group_size=2", "geometry.max_steps=2", "model.lora.enabled=true",
                      "logger=wandb", "logger.mode=offline"], tmp_path / "lora" / "run", cache_dir)
    assert lora.returncode == 0, lora.stderr[-3000:]
    run_dir = tmp_path / "lora" / "run"
    assert (run_dir / "final" / "adapter_config.json").is_file()
    runs, history, _ = wandb_history(run_dir)
    assert len(runs) == 1
    steps = [h["train/global_step"] for h in history if "train/reward" in h or "eval/accuracy_strict" in h]
    assert steps == [0, 1, 2, 2]

    sft = launch(2, ["method=sft", "sft.batch_size=8", "sft.epochs=1", "threads=1", "logger=none", "data.n_train=64",
                     "data.n_eval=16", "eval.max_samples=16", "eval.max_new_tokens=48"], tmp_path / "sft" / "run",
                 cache_dir)
    assert sft.returncode == 0, sft.stderr[-3000:]
    steps = [r["step"] for r in records(tmp_path / "sft" / "run")]
    assert steps == [*range(64 // 8 + 1), 64 // 8]  # baseline eval, 8 steps of 8 examples, final eval


def worker_pids(torchrun: subprocess.Popen) -> dict[int, int]:
    """rank -> pid of torchrun's worker processes."""
    import psutil

    out = {}
    for child in psutil.Process(torchrun.pid).children(recursive=True):
        try:
            rank = child.environ().get("RANK")
        except psutil.Error:
            continue
        if rank is not None:
            out[int(rank)] = child.pid
    return out

def kill_rank_1_when(ready, what: str, args: list[str], run_dir: Path, cache_dir: Path) -> None:
    """Start a 2-process run, SIGKILL its rank 1 as soon as ``ready()``, wait for torchrun to end."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(command(2, [*args, f"hydra.run.dir={run_dir}"]), cwd=run_dir.parent,
                            env=env(cache_dir), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while not ready():
            assert proc.poll() is None, proc.stdout.read()[-3000:]
            assert time.monotonic() < deadline, f"no {what} within 600 s"
            time.sleep(0.05)
        os.kill(worker_pids(proc)[1], signal.SIGKILL)
        proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0



def test_killing_one_rank_then_rerunning_resumes_like_an_uninterrupted_run(tmp_path, cache_dir):
    """SIGKILL rank 1 once two checkpoints exist: torchrun stops rank 0 (SIGTERM: run.json
    ``interrupted``, exit 143 there); the same command resumes from the last checkpoint on
    both ranks and ends with the records of an uninterrupted 2-process run."""
    args = [*TINY, "method=grpo", "group_size=2", "geometry.max_steps=8", "checkpoint.every_n_steps=2"]
    run_dir = tmp_path / "killed" / "run"  # killed at step 4 or 5 of 8: well before the end
    kill_rank_1_when(lambda: len(complete_checkpoints(run_dir)) >= 2, "second checkpoint", args, run_dir, cache_dir)
    assert state(run_dir)["status"] == "interrupted"
    assert "run the same command again to resume" in state(run_dir)["error"]
    kept = complete_checkpoints(run_dir)[-1]

    again = launch(2, args, run_dir, cache_dir)
    assert again.returncode == 0, again.stderr[-3000:]
    assert resumed_from((run_dir / "run.log").read_text()) == [kept]
    assert state(run_dir)["status"] == "done"
    assert_one_record_per_step(run_dir, 8)

    reference = launch(2, args, tmp_path / "reference" / "run", cache_dir)
    assert reference.returncode == 0, reference.stderr[-3000:]
    for key in ("train/reward", "train/loss", "eval/accuracy_strict"):
        got = {r["step"]: r[key] for r in records(run_dir) if key in r}
        want = {r["step"]: r[key] for r in records(tmp_path / "reference" / "run") if key in r}
        assert got == pytest.approx(want), key


def test_rank_0_records_a_peer_lost_in_a_collective_as_interrupted(tmp_path, cache_dir):
    """Without torchrun nobody sends rank 0 a SIGTERM: when rank 1 dies, rank 0 meets it as a
    failed collective (gloo: "Connection reset by peer"). It records the run as interrupted,
    says which process stopped and how to resume, and the same command resumes."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = [*TINY, "method=grpo", "group_size=2", "geometry.max_steps=8", "checkpoint.every_n_steps=2"]
    run_dir = tmp_path / "run"
    procs = [subprocess.Popen([sys.executable, "-m", "mathreason.run", *args, f"hydra.run.dir={run_dir}"],
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**env(cache_dir), "RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": "2",
                                   "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
             for r in (0, 1)]
    try:
        deadline = time.monotonic() + 600
        while len(complete_checkpoints(run_dir)) < 1:
            assert procs[0].poll() is None, procs[0].stdout.read()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint within 600 s"
            time.sleep(0.05)
        procs[1].kill()
        out, _ = procs[0].communicate(timeout=300)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert procs[0].returncode == 1, out[-3000:]
    assert state(run_dir)["status"] == "interrupted"
    error = state(run_dir)["error"]
    assert error.startswith("another process of this job stopped (") and "by peer" in error
    assert "run the same command again to resume from checkpoints/" in error
    assert out.strip().splitlines()[-1] == error  # the console's last line, no traceback
    assert "Traceback" not in out

    again = launch(2, args, run_dir, cache_dir)
    assert again.returncode == 0, again.stderr[-3000:]
    assert state(run_dir)["status"] == "done"
    assert_one_record_per_step(run_dir, 8)


def test_resuming_on_another_number_of_processes_is_refused_in_one_line(tmp_path, cache_dir):
    args = [*TINY, "method=grpo", "group_size=2", "geometry.max_steps=2", "checkpoint.every_n_steps=1"]
    run_dir = tmp_path / "run"
    first = launch(2, args, run_dir, cache_dir)
    assert first.returncode == 0, first.stderr[-3000:]
    status = json.loads((run_dir / "run.json").read_text())
    status["status"] = "interrupted"  # as a kill leaves it
    (run_dir / "run.json").write_text(json.dumps(status))
    again = launch(1, args, run_dir, cache_dir)
    assert again.returncode != 0  # torchrun exits 1 when a worker fails (ours: 2)
    (line,) = [x for x in again.stderr.splitlines() if x.startswith("error:")]
    assert "started on 2 process(es), resumed here on 1" in line and "--nproc_per_node 2" in line
    assert json.loads((run_dir / "run.json").read_text())["status"] == "interrupted"  # the run is left as it was


@pytest.mark.slurm
@requires_slurm
def test_a_two_task_slurm_job_is_one_run_owned_by_rank_0(tmp_path, cache_dir):
    """``hydra.launcher.tasks_per_node=2`` on the local cluster: submitit starts the job on two
    tasks, they join as one gloo job (ranks from SLURM), rank 0 writes the run."""
    out = run_cli(["-m", "seed=0", "hydra/launcher=slurm", "hydra.launcher.tasks_per_node=2",
                   "hydra.launcher.cpus_per_task=1", "experiment_name=two_tasks", "method=grpo", "group_size=2",
                   "geometry.max_steps=2", f"cache_dir={cache_dir}", *TINY], cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    sweep_dir = tmp_path / "outputs" / "sweeps" / "two_tasks"
    (run_dir,) = [p.parent for p in sweep_dir.glob("*/run.json")]
    assert state(run_dir)["status"] == "done" and state(run_dir)["world_size"] == 2
    assert records(run_dir)[0]["train/geometry/world_size"] == 2
    assert_one_record_per_step(run_dir, 2)
    assert (run_dir / "run.log").read_text().count("▸ run —") == 1
    assert [p.name for p in (sweep_dir / ".jobs").glob("*.json")] == ["0.json"]
    # both tasks ran it: submitit keeps a log per task
    assert len(list((sweep_dir / ".submitit").glob("*/*_1_log.err"))) == 1


def test_killing_a_two_process_dpo_run_after_round_1_resumes_at_round_2(tmp_path, cache_dir):
    """SIGKILL rank 1 once round 1 is recorded done: the same command resumes at round 2 on
    both ranks (rank 0 reads the round records and broadcasts the resume point) and ends with
    the records of an uninterrupted 2-process run."""
    args = DPO
    run_dir = tmp_path / "killed" / "run"
    kill_rank_1_when(lambda: (run_dir / "checkpoints" / "round_1" / "done.json").is_file(), "round 1", args,
                     run_dir, cache_dir)
    if state(run_dir)["status"] == "done":
        pytest.skip("the run finished before the kill landed")
    again = launch(2, args, run_dir, cache_dir)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "dpo resume: 1 of 2 rounds complete" in (run_dir / "run.log").read_text()
    reference = launch(2, args, tmp_path / "reference" / "run", cache_dir)
    assert reference.returncode == 0, reference.stderr[-3000:]
    for key in ("train/loss", "train/mining/pairs", "eval/accuracy_strict"):
        got = {r["step"]: r[key] for r in records(run_dir) if key in r}
        want = {r["step"]: r[key] for r in records(tmp_path / "reference" / "run") if key in r}
        assert got == pytest.approx(want, abs=1e-4), key


@pytest.mark.slurm
@requires_slurm
def test_a_preempted_two_task_slurm_job_is_requeued_and_resumes(tmp_path, cache_dir):
    """A 2-task job preempted once it holds a checkpoint (``scancel --signal=USR2``): rank 0
    checkpoints and requeues through submitit, the requeued job's two tasks resume from the last
    checkpoint and finish with one record per step."""
    from test_sweeps import job_dirs, popen_cli, wait_for

    max_steps = 150  # long enough that the signal lands while the job still trains
    sweep_dir = tmp_path / "outputs" / "sweeps" / "two_tasks_preempt"
    proc = popen_cli(["-m", "seed=0", "hydra/launcher=slurm", "hydra.launcher.tasks_per_node=2",
                      "hydra.launcher.cpus_per_task=1", "experiment_name=two_tasks_preempt", "method=grpo",
                      "group_size=2", "checkpoint.every_n_steps=2", f"geometry.max_steps={max_steps}",
                      f"cache_dir={cache_dir}", *TINY], tmp_path)
    try:
        def submitted() -> list[str] | None:  # one job: submitit names its folder by the plain job id
            folder = sweep_dir / ".submitit"
            return [p.name for p in folder.iterdir() if p.is_dir()] if folder.is_dir() else None

        (job_id,) = wait_for(submitted, 120, "the SLURM job", proc)
        run_dir = wait_for(lambda: next((d for d in job_dirs(sweep_dir) if complete_checkpoints(d)), None),
                           600, "a checkpoint", proc, every=0.1)
        signalled_at = max(complete_checkpoints(run_dir))
        subprocess.run(["scancel", "--signal=USR2", job_id], check=True, timeout=30)
        out, err = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            subprocess.run(["scancel", *(submitted() or [])], timeout=30)
    assert proc.returncode == 0, out[-2000:] + err[-3000:]
    log = (run_dir / "run.log").read_text()
    assert log.count(" (new, ") == 1 and log.count(" (resuming, ") == 1, log
    (step,) = resumed_from(log)
    assert signalled_at <= step < max_steps
    assert state(run_dir)["status"] == "done" and state(run_dir)["world_size"] == 2
    assert_one_record_per_step(run_dir, max_steps)
    text = (sweep_dir / ".submitit" / job_id / f"{job_id}_0_log.out").read_text()
    assert f"Requeued job {job_id}" in text, text[-3000:]
