"""Resume after a kill or with damaged state, for every method.

Fast unit tests: which checkpoint a resume picks when the newer ones are
incomplete or damaged, a metrics.jsonl whose last line was cut off mid-write,
how ``logger.mode=auto`` picks online/offline (the network is mocked, never
touched), and an offline W&B resume that continues one run.

Slow tests (real tiny runs through the CLI): GRPO, DPO and eval killed with
SIGKILL (and their state damaged), then re-run with the same command; each
ends with the records of an uninterrupted run.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import ROOT, run_cli
from test_sweeps import (
    TINY,
    assert_one_record_per_step,
    complete_checkpoints,
    is_eval_only,
    records,
    resumed_from,
    state,
)

# ---------------------------------------------------------------------------- checkpoints


def make_checkpoint(root: Path, step: int, lora: bool = False) -> Path:
    """A checkpoint with the files the Trainer writes (tiny but well-formed)."""
    import torch
    from safetensors.torch import save_file

    path = root / f"checkpoint-{step}"
    path.mkdir(parents=True)
    weights = {"w": torch.zeros(4, 3)}
    if lora:
        save_file(weights, str(path / "adapter_model.safetensors"))
        (path / "adapter_config.json").write_text(json.dumps({"r": 8}))
    else:
        save_file(weights, str(path / "model.safetensors"))
        (path / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    torch.save({"state": {}}, path / "optimizer.pt")
    torch.save({"last_epoch": step}, path / "scheduler.pt")
    torch.save({"cpu": torch.get_rng_state()}, path / "rng_state.pth")
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return path


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


DAMAGE = {
    "model weights": lambda p: (p / "model.safetensors").unlink(),
    "optimizer.pt missing": lambda p: (p / "optimizer.pt").unlink(),
    "scheduler.pt missing": lambda p: (p / "scheduler.pt").unlink(),
    "rng_state.pth missing": lambda p: (p / "rng_state.pth").unlink(),
    "trainer_state.json missing": lambda p: (p / "trainer_state.json").unlink(),
    "trainer_state.json unreadable": lambda p: truncate(p / "trainer_state.json"),
    "config.json unreadable": lambda p: (p / "config.json").write_text("{not json"),
    "model.safetensors truncated": lambda p: truncate(p / "model.safetensors", 0.9),
    "optimizer.pt truncated": lambda p: truncate(p / "optimizer.pt"),
    "model.safetensors empty": lambda p: (p / "model.safetensors").write_bytes(b""),
}


@pytest.mark.parametrize("what", sorted(DAMAGE))
def test_damaged_newest_checkpoint_falls_back_with_one_warning(tmp_path, caplog, what):
    from mathreason.records.checkpoints import checkpoint_problems, find_checkpoint

    for step in (2, 4, 6):
        make_checkpoint(tmp_path, step)
    assert all(not checkpoint_problems(tmp_path / f"checkpoint-{s}") for s in (2, 4, 6))
    DAMAGE[what](tmp_path / "checkpoint-6")
    with caplog.at_level(logging.WARNING, logger="mathreason"):
        assert find_checkpoint(tmp_path) == tmp_path / "checkpoint-4"
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert str(tmp_path / "checkpoint-6") in warning and what in warning, warning
    # moved aside, not deleted, under a name neither we nor the Trainer's rotation pick up
    assert not (tmp_path / "checkpoint-6").exists()
    assert (tmp_path / "damaged-checkpoint-6").is_dir()
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]


def test_lora_checkpoint_needs_its_adapter(tmp_path, caplog):
    from mathreason.records.checkpoints import checkpoint_problems, find_checkpoint

    make_checkpoint(tmp_path, 1, lora=True)
    newest = make_checkpoint(tmp_path, 2, lora=True)
    assert checkpoint_problems(newest) == []
    (newest / "adapter_model.safetensors").unlink()
    assert checkpoint_problems(newest) == ["adapter_model.safetensors / adapter_model.bin missing"]
    with caplog.at_level(logging.WARNING, logger="mathreason"):
        assert find_checkpoint(tmp_path) == tmp_path / "checkpoint-1"
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 1


def test_several_damaged_checkpoints_one_line_each(tmp_path, caplog):
    from mathreason.records.checkpoints import find_checkpoint

    for step in (1, 2, 3):
        make_checkpoint(tmp_path, step)
    (tmp_path / "checkpoint-3" / "optimizer.pt").unlink()
    (tmp_path / "checkpoint-2" / "model.safetensors").unlink()
    (tmp_path / "checkpoint-2" / "scheduler.pt").unlink()
    with caplog.at_level(logging.WARNING, logger="mathreason"):
        assert find_checkpoint(tmp_path) == tmp_path / "checkpoint-1"
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 2
    assert "checkpoint-3 is incomplete (optimizer.pt missing" in warnings[0]
    assert "checkpoint-2 is incomplete (" in warnings[1]
    assert "model weights" in warnings[1] and "scheduler.pt missing" in warnings[1]
    # all damaged: no checkpoint, training restarts from step 0
    (tmp_path / "checkpoint-1" / "trainer_state.json").unlink()
    assert find_checkpoint(tmp_path) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "damaged-checkpoint-1", "damaged-checkpoint-2", "damaged-checkpoint-3"]


def test_prepare_resume_keeps_metrics_up_to_the_chosen_checkpoint(tmp_path, caplog):
    from mathreason.methods.common import prepare_resume
    from mathreason.records.telemetry import Telemetry
    from mathreason.records.wandb_run import WandbRun

    for step in (2, 4):
        make_checkpoint(tmp_path / "checkpoints", step)
    (tmp_path / "checkpoints" / "checkpoint-4" / "optimizer.pt").unlink()
    lines = [json.dumps({"step": s, "train/wall_clock_s": float(s)}) for s in range(6)]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + "\n" + '{"step": 6, "train/wall')  # torn
    ctx = SimpleNamespace(run_dir=tmp_path, resume=True, wandb=WandbRun())
    telemetry = Telemetry(tmp_path, "cpu")
    with caplog.at_level(logging.WARNING, logger="mathreason"):
        ckpt = prepare_resume(ctx, telemetry)
    assert ckpt == str(tmp_path / "checkpoints" / "checkpoint-2")
    assert [json.loads(x)["step"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [0, 1, 2]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 2, warnings  # the damaged checkpoint, the torn line
    assert telemetry.last_step == 2


# ---------------------------------------------------------------------------- metrics.jsonl


def test_torn_last_metrics_line_is_removed_with_one_warning(tmp_path, caplog):
    from mathreason.records.telemetry import MetricsFile

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 0, "a": 1}\n{"step": 1, "a": 2}\n{"step": 2, "a"')
    metrics = MetricsFile(tmp_path)
    with caplog.at_level(logging.WARNING, logger="mathreason"):
        assert [r["step"] for r in metrics.records()] == [0, 1]
        assert [r["step"] for r in metrics.records()] == [0, 1]
        metrics.append({"step": 2, "a": 3})
    assert path.read_text() == '{"step": 0, "a": 1}\n{"step": 1, "a": 2}\n{"step": 2, "a": 3}\n'
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert "metrics.jsonl: last line cut off mid-write" in warning
    # a fresh reader (the next re-run) finds nothing to repair
    caplog.clear()
    assert len(MetricsFile(tmp_path).records()) == 3 and not caplog.records


@pytest.mark.parametrize("tail", ['{"step": 2, "a": 3}', '\x00\x00\x00\x00', '{"step": 2, "a": [1, 2\n'])
def test_metrics_tail_variants(tmp_path, caplog, tail):
    from mathreason.records.telemetry import MetricsFile

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 0}\n{"step": 1}\n' + tail)
    metrics = MetricsFile(tmp_path)
    with caplog.at_level(logging.WARNING, logger="mathreason"):
        steps = [r["step"] for r in metrics.records()]
    whole = tail.startswith('{"step": 2, "a": 3}')
    assert steps == ([0, 1, 2] if whole else [0, 1])
    assert len(caplog.records) == (0 if whole else 1)  # a whole record only lacked its newline
    metrics.append({"step": 3})
    assert [r["step"] for r in MetricsFile(tmp_path).records()] == [*steps, 3]


def test_damage_inside_metrics_names_the_line(tmp_path):
    from mathreason.records.telemetry import MetricsFile

    (tmp_path / "metrics.jsonl").write_text('{"step": 0}\n{"step": 1, oops}\n{"step": 2}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl:2: not a JSON record"):
        MetricsFile(tmp_path).records()


# ---------------------------------------------------------------------------- W&B mode


@pytest.fixture
def clean_wandb_env(monkeypatch, tmp_path):
    """No W&B setting and no W&B login from the outer environment."""
    for key in list(os.environ):
        if key.startswith("WANDB_") and key != "WANDB_SILENT":
            monkeypatch.delenv(key)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))


@pytest.fixture
def no_wandb_env(clean_wandb_env, monkeypatch):
    """...and no network: every connection attempt is recorded and refused."""
    calls = []

    def no_network(address, timeout=None, *args, **kwargs):
        calls.append(address)
        raise OSError(101, "Network is unreachable")

    monkeypatch.setattr("socket.create_connection", no_network)
    return calls


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_auto_without_key_is_offline_with_one_info_line(no_wandb_env, caplog, tmp_path):
    """Offline is the normal default without a key: said once, not warned."""
    from mathreason.records.wandb_run import choose_wandb_mode

    with caplog.at_level(logging.INFO, logger="mathreason"):
        assert choose_wandb_mode("auto", tmp_path) == "offline"
    assert warnings_of(caplog) == []
    (line,) = [r.getMessage() for r in caplog.records if "W&B" in r.getMessage()]
    assert "not logged in" in line and str(tmp_path / "wandb") in line
    assert no_wandb_env == []  # no key: no connection attempted


def test_online_without_key_or_network_falls_back_with_one_warning(no_wandb_env, monkeypatch, caplog, tmp_path):
    from mathreason.records.wandb_run import choose_wandb_mode

    with caplog.at_level(logging.WARNING, logger="mathreason"):
        assert choose_wandb_mode("online", tmp_path) == "offline"
    (warning,) = warnings_of(caplog)
    assert "not logged in" in warning
    monkeypatch.setenv("WANDB_API_KEY", "fake-key-0123456789abcdef0123456789abcdef01234567")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mathreason"):
        assert choose_wandb_mode("online", tmp_path) == "offline"
    (warning,) = warnings_of(caplog)
    assert "unreachable" in warning


def test_auto_with_key_and_no_network_is_offline_with_one_warning(no_wandb_env, monkeypatch, caplog, tmp_path):
    from mathreason.records.wandb_run import choose_wandb_mode

    monkeypatch.setenv("WANDB_API_KEY", "fake-key-0123456789abcdef0123456789abcdef01234567")
    with caplog.at_level(logging.WARNING, logger="mathreason"):
        assert choose_wandb_mode("auto", tmp_path) == "offline"
    (warning,) = warnings_of(caplog)
    assert "logged in but api.wandb.ai:443 is unreachable" in warning and "offline" in warning
    assert "fake-key" not in warning
    assert no_wandb_env == [("api.wandb.ai", 443)]


def test_auto_with_key_and_network_is_online(no_wandb_env, monkeypatch, caplog, tmp_path):
    from mathreason.records.wandb_run import choose_wandb_mode

    monkeypatch.setenv("WANDB_API_KEY", "fake-key")
    monkeypatch.setenv("WANDB_BASE_URL", "http://wandb.example.org:8080")
    reached = []
    monkeypatch.setattr("socket.create_connection",
                        lambda address, timeout=None: reached.append(address) or SimpleNamespace(close=lambda: None))
    with caplog.at_level(logging.WARNING, logger="mathreason"):
        assert choose_wandb_mode("auto", tmp_path) == "online"
    assert warnings_of(caplog) == [] and reached == [("wandb.example.org", 8080)]


def test_netrc_login_and_a_hanging_probe(no_wandb_env, monkeypatch, caplog, tmp_path):
    import mathreason.records.wandb_run as wandb_run

    (tmp_path / "netrc").write_text("machine api.wandb.ai\n  login user\n  password secret\n")
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    monkeypatch.setattr(wandb_run, "WANDB_PROBE_TIMEOUT_S", 0.2)

    def hang(address, timeout=None):
        time.sleep(1)
        raise OSError("timed out")

    monkeypatch.setattr("socket.create_connection", hang)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="mathreason"):
        assert wandb_run.choose_wandb_mode("auto", tmp_path) == "offline"
    assert time.monotonic() - started < 2
    (warning,) = warnings_of(caplog)
    assert "no answer within" in warning


@pytest.mark.parametrize("mode", ["offline", "disabled"])
def test_explicit_mode_is_kept(no_wandb_env, caplog, mode):
    from mathreason.records.wandb_run import choose_wandb_mode

    assert choose_wandb_mode(mode) == mode
    assert no_wandb_env == [] and warnings_of(caplog) == []


# ---------------------------------------------------------------------------- W&B offline resume


def wandb_cfg():
    from omegaconf import OmegaConf

    return OmegaConf.create({
        "method": "grpo", "seed": 0,
        "logger": {"name": "wandb", "project": "mathreason", "entity": None, "group": "default", "tags": [],
                   "mode": "offline"},
        "model": {"name": "tiny"}, "data": {"name": "arith"}, "group_size": {"num_generations": 2},
    })


def wandb_history(run_dir: Path) -> tuple[list[Path], list[dict], list[dict]]:
    from test_wandb_offline import read_wandb_records

    runs = sorted((run_dir / "wandb").glob("offline-run-*"))
    recs = read_wandb_records(next(runs[-1].glob("run-*.wandb")))
    history = [h["history"]["item"] for h in recs if h["type"] == "history" and "item" in h["history"]]
    return runs, history, [r["run"] for r in recs if r["type"] == "run"]


def test_offline_wandb_resume_continues_one_run(tmp_path, clean_wandb_env):
    """Two attempts of one run in offline mode (the second resumes from a
    checkpoint at step 2 after the first logged steps 0-3): one offline run
    dir is left, with the same run id and every step once, in order."""
    import wandb

    from mathreason.records.telemetry import MetricsFile
    from mathreason.records.wandb_run import WandbRun

    metrics = MetricsFile(tmp_path)

    def log_step(step: int) -> None:  # as TelemetryMixin + WandbCallback log a step
        record = {"step": step, "train/reward": step / 10}
        metrics.append(record)
        wandb.log({"train/reward": step / 10, "train/global_step": step})

    first = WandbRun.start(wandb_cfg(), tmp_path, "run", [])
    assert first.mode == "offline"
    for step in range(4):
        log_step(step)
    first.finish()
    first_id = (tmp_path / "wandb_id").read_text()

    second = WandbRun.start(wandb_cfg(), tmp_path, "run", [])
    assert second.mode == "offline"
    kept = metrics.truncate_after(2)  # the resume's checkpoint
    assert second.replay(kept) == 3 and second.replay(kept) == 0  # once
    for step in range(3, 6):
        log_step(step)
    second.finish()

    assert (tmp_path / "wandb_id").read_text() == first_id
    runs, history, run_records = wandb_history(tmp_path)
    assert len(runs) == 1, runs  # the first attempt's dir moved aside, not a second run beside it
    assert len(list((tmp_path / "wandb" / "superseded").glob("offline-run-*"))) == 1
    assert run_records[0]["run_id"] == first_id
    assert [h["train/global_step"] for h in history] == [0, 1, 2, 3, 4, 5]
    assert [h["_step"] for h in history] == list(range(6))
    assert [h["train/reward"] for h in history] == pytest.approx([s / 10 for s in range(6)])


# ---------------------------------------------------------------------------- real runs, killed


def cli_env() -> dict:
    """The test's environment without any W&B setting from outside (so only
    logger.mode decides) and with no W&B key (offline without a network probe)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_") or k == "WANDB_SILENT"}
    return {**env, "PYTHONPATH": str(ROOT), "WANDB_ERROR_REPORTING": "false"}


def popen_run(args: list[str], cwd: Path) -> subprocess.Popen:
    """The CLI in its own process group (killed whole, W&B's service included);
    its output goes to ``cwd/stdout.txt`` and ``cwd/stderr.txt``."""
    cwd.mkdir(parents=True, exist_ok=True)
    with (cwd / "stdout.txt").open("w") as out, (cwd / "stderr.txt").open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "mathreason.run", *args], cwd=cwd, env=cli_env(),
                                stdout=out, stderr=err, text=True, start_new_session=True)
    proc.stderr_file = cwd / "stderr.txt"
    return proc


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        if proc.poll() is not None:
            pytest.fail(f"process ended (rc={proc.returncode}) before {what}:\n{proc.stderr_file.read_text()[-3000:]}")
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def finish(proc: subprocess.Popen) -> None:
    proc.wait(timeout=600)
    assert proc.returncode == 0, proc.stderr_file.read_text()[-3000:]


def only_run_dir(cwd: Path) -> Path:
    (run_dir,) = [p.parent for p in (cwd / "outputs" / "runs").glob("*/run.json")]
    return run_dir


def tear_metrics(run_dir: Path) -> None:
    """What a kill during a metrics write leaves: half a record, no newline."""
    with (run_dir / "metrics.jsonl").open("a") as fh:
        fh.write('{"step": 999, "train/reward": 0.')


def warning_lines(text: str, needle: str) -> list[str]:
    return [line for line in text.splitlines() if "WARNING" in line and needle in line]


def same_values(a: Path, b: Path, keys: tuple[str, ...]) -> None:
    def values(d: Path) -> dict[str, float]:
        return {f"{r['step']}:{k}": r[k] for r in records(d) for k in keys if k in r}

    got, want = values(a), values(b)
    assert got.keys() == want.keys()
    assert got == pytest.approx(want)


GRPO_ARGS = ["checkpoint.every_n_steps=2", "geometry.max_steps=8",
             *(a for a in TINY if a != "logger=none"), "logger=wandb", "logger.mode=offline"]


@pytest.mark.slow
def test_grpo_kill_then_damaged_checkpoint_and_torn_metrics(tmp_path, cache_dir):
    """GRPO with offline W&B, SIGKILLed once it holds two complete checkpoints;
    then the newest loses its optimizer state and metrics.jsonl gets a torn
    last line. The re-run warns once about each, resumes from the checkpoint
    before, and ends with the records of an uninterrupted run (run alongside)
    and one offline W&B run holding every step once."""
    args = [*GRPO_ARGS, f"cache_dir={cache_dir}"]
    reference = popen_run(args, tmp_path / "ref")
    proc = popen_run(args, tmp_path / "run")
    try:
        wait_for(lambda: any(len(complete_checkpoints(d)) >= 2 for d in (tmp_path / "run" / "outputs" / "runs").glob("*")),
                 600, "two complete checkpoints", proc, every=0.1)
        kill(proc)
        run_dir = only_run_dir(tmp_path / "run")
        assert state(run_dir)["status"] == "running"
        *_, before, newest = complete_checkpoints(run_dir)
        (run_dir / "checkpoints" / f"checkpoint-{newest}" / "optimizer.pt").unlink()
        tear_metrics(run_dir)

        again = run_cli(args, cwd=tmp_path / "run", env=cli_env())
        assert again.returncode == 0, again.stderr[-3000:]
        log = (run_dir / "run.log").read_text()
        (damaged,) = warning_lines(log, f"checkpoint-{newest} is incomplete")
        assert "optimizer.pt missing" in damaged
        assert len(warning_lines(log, "metrics.jsonl: last line cut off")) == 1
        assert resumed_from(log) == [before]
        assert (run_dir / "checkpoints" / f"damaged-checkpoint-{newest}").is_dir()
        assert state(run_dir)["status"] == "done"
        assert_one_record_per_step(run_dir, 8)

        finish(reference)
        ref_dir = only_run_dir(tmp_path / "ref")
        same_values(run_dir, ref_dir, ("train/reward", "train/loss", "train/cumulative_generated_tokens",
                                       "eval/accuracy_strict"))
    finally:
        kill(proc)
        kill(reference)

    # W&B: the same run id, one offline run dir (the killed attempt's moved aside) with every step once
    runs, history, run_records = wandb_history(run_dir)
    assert len(runs) == 1 and len(list((run_dir / "wandb" / "superseded").iterdir())) == 1
    assert run_records[0]["run_id"] == (run_dir / "wandb_id").read_text().strip()
    tracked = [h for h in history if "train/reward" in h or "eval/accuracy_strict" in h]
    assert [h["train/global_step"] for h in tracked] == [*range(9), 8]  # the final eval after step 8
    steps = [h["_step"] for h in history]
    assert steps == list(range(len(steps)))


DPO_ARGS = [
    "method=dpo", "dpo.rounds=2", "dpo.epochs=3", "dpo.batch_size=1", "dpo.max_length=192",
    "dpo.mining.max_questions=16", "dpo.mining.samples_per_question=8", "dpo.mining.max_new_tokens=48",
    "checkpoint.every_n_steps=1", "threads=1", "logger=none", "data.n_train=64", "data.n_eval=16",
    "eval.max_samples=16", "eval.max_new_tokens=48", "eval.every_n_steps=0",
]
DPO_KEYS = ("train/loss", "train/rewards/margins", "train/mining/pairs", "train/mining/sample_accuracy",
            "train/cumulative_rollouts", "eval/accuracy_strict")


def dpo_round_checkpoints(cwd: Path, round_no: int) -> list[int]:
    """Steps of round ``round_no``'s complete checkpoints."""
    return complete_checkpoints(cwd / "outputs" / "runs", f"*/checkpoints/round_{round_no}/checkpoint-*")


@pytest.mark.slow
def test_dpo_kills_resume_at_the_round_they_were_in(tmp_path, cache_dir):
    """Two DPO runs SIGKILLed (beside an uninterrupted one): A as soon as
    round 1 is done (the re-run reuses round 1's pairs and model and goes on
    in round 2), B once round 2 holds two complete checkpoints, whose newest
    checkpoint then loses its model weights and whose metrics get a torn last
    line (the re-run falls back to the checkpoint before, or to round 2's
    start, reusing its pairs). Both end with the reference's records."""
    args = [*DPO_ARGS, f"cache_dir={cache_dir}"]
    reference = popen_run(args, tmp_path / "ref")
    a = popen_run(args, tmp_path / "a")
    b = popen_run(args, tmp_path / "b")
    try:
        wait_for(lambda: list((tmp_path / "a" / "outputs" / "runs").glob("*/checkpoints/round_1/done.json")),
                 600, "round 1 done (A)", a, every=0.1)
        kill(a)
        wait_for(lambda: len(dpo_round_checkpoints(tmp_path / "b", 2)) >= 2, 600, "two round-2 checkpoints (B)", b,
                 every=0.05)
        kill(b)

        run_a = only_run_dir(tmp_path / "a")
        assert not (run_a / "checkpoints" / "round_2" / "done.json").exists()
        again = run_cli(args, cwd=tmp_path / "a", env=cli_env())
        assert again.returncode == 0, again.stderr[-3000:]
        log_a = (run_a / "run.log").read_text()
        assert "dpo resume: 1 of 2 rounds complete" in log_a, log_a[-2000:]
        assert "mine pairs (round 1)" not in again.stderr  # round 1 is not mined again

        run_b = only_run_dir(tmp_path / "b")
        ckpts = dpo_round_checkpoints(tmp_path / "b", 2)
        newest = ckpts[-1]
        (run_b / "checkpoints" / "round_2" / f"checkpoint-{newest}" / "model.safetensors").unlink()
        tear_metrics(run_b)
        again = run_cli(args, cwd=tmp_path / "b", env=cli_env())
        assert again.returncode == 0, again.stderr[-3000:]
        log_b = (run_b / "run.log").read_text()
        (damaged,) = warning_lines(log_b, f"round_2/checkpoint-{newest} is incomplete")
        assert "model weights" in damaged
        assert len(warning_lines(log_b, "metrics.jsonl: last line cut off")) == 1
        if len(ckpts) > 1:
            assert f"resuming from {run_b / 'checkpoints' / 'round_2' / f'checkpoint-{ckpts[-2]}'}" in log_b
        else:
            assert "resuming at the start of round 2 with its mined pairs" in log_b

        finish(reference)
        ref_dir = only_run_dir(tmp_path / "ref")
        ref_steps = [r["step"] for r in records(ref_dir)]
        train_steps = [r["step"] for r in records(ref_dir) if not is_eval_only(r)]
        assert train_steps == list(range(1, len(train_steps) + 1))  # each round's eval repeats its last step
        for run_dir in (run_a, run_b):
            assert state(run_dir)["status"] == "done"
            assert [r["step"] for r in records(run_dir)] == ref_steps
            same_values(run_dir, ref_dir, DPO_KEYS)
            for n in (1, 2):
                assert (run_dir / "pairs" / f"round_{n}.jsonl").read_text() == \
                    (ref_dir / "pairs" / f"round_{n}.jsonl").read_text()
            summary, ref_summary = state(run_dir)["summary"], state(ref_dir)["summary"]
            for key in ("final/accuracy_strict", "dpo/pairs", "dpo/rounds", "steps", "cumulative_rollouts"):
                assert summary[key] == pytest.approx(ref_summary[key]), key
            assert (run_dir / "final" / "model.safetensors").exists()
            assert not (run_dir / "checkpoints" / "round_1" / "model").exists()  # only the last round's model is kept
    finally:
        for proc in (a, b, reference):
            kill(proc)


EVAL_ARGS = ["method=eval", "threads=1", "logger=none", "data.n_eval=48", "eval.max_samples=48",
             "eval.max_new_tokens=48", "eval.batch_size=8"]
EVAL_KEYS = ("eval/accuracy_strict", "eval/accuracy_lenient", "eval/format_rate", "eval/samples")


@pytest.mark.slow
def test_eval_kill_restarts_and_a_finished_pass_is_reused(tmp_path, cache_dir):
    """An eval run SIGKILLed while it generates starts the pass over and ends
    with an uninterrupted run's results; an eval run interrupted after its pass
    was written (status still 'running', a torn metrics line) reuses the pass."""
    args = [*EVAL_ARGS, f"cache_dir={cache_dir}"]
    reference = popen_run(args, tmp_path / "ref")
    proc = popen_run(args, tmp_path / "run")
    try:
        # SIGKILL as soon as the greedy pass has started (its progress bar is up)
        wait_for(lambda: "eval@0" in (tmp_path / "run" / "stderr.txt").read_text(), 600, "the eval pass to start",
                 proc, every=0.05)
        kill(proc)
        run_dir = only_run_dir(tmp_path / "run")
        assert state(run_dir)["status"] == "running"
        again = run_cli(args, cwd=tmp_path / "run", env=cli_env())
        assert again.returncode == 0, again.stderr[-3000:]
        finish(reference)
    finally:
        kill(proc)
        kill(reference)
    ref_dir = only_run_dir(tmp_path / "ref")
    assert [r["step"] for r in records(run_dir)] == [0]
    same_values(run_dir, ref_dir, EVAL_KEYS)
    samples = (run_dir / "eval" / "step_000000.jsonl").read_text()
    assert samples == (ref_dir / "eval" / "step_000000.jsonl").read_text()

    # interrupted after the pass was written: reused, not redone
    record = (run_dir / "metrics.jsonl").read_text()
    summary = state(run_dir)["summary"]
    status = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({**status, "status": "running"}))
    tear_metrics(run_dir)
    again = run_cli(args, cwd=tmp_path / "run", env=cli_env())
    assert again.returncode == 0, again.stderr[-3000:]
    log = (run_dir / "run.log").read_text()
    assert "eval resume: the evaluation finished before the interruption; reusing its results" in log
    assert len(warning_lines(log, "metrics.jsonl: last line cut off")) == 1
    assert "eval@0" not in again.stderr  # no generation
    assert (run_dir / "metrics.jsonl").read_text() == record
    assert state(run_dir)["summary"] == {**summary, "run_dir": summary["run_dir"]}


@pytest.mark.slow
def test_sigterm_stops_a_run_like_ctrl_c_and_the_rerun_resumes(tmp_path, cache_dir):
    """Outside SLURM, SIGTERM (kill, timeout, a container stop) ends a run as Ctrl-C does: one line
    saying where it stopped and how to resume, run.json `interrupted`, exit 143; the same command
    again resumes from the last checkpoint and finishes."""
    args = [*(a for a in GRPO_ARGS if not a.startswith("logger")), "logger=none", f"cache_dir={cache_dir}"]
    proc = popen_run(args, tmp_path / "run")
    try:
        wait_for(lambda: any(complete_checkpoints(d) for d in (tmp_path / "run" / "outputs" / "runs").glob("*")),
                 600, "a complete checkpoint", proc, every=0.1)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    finally:
        kill(proc)
    assert proc.returncode == 143, proc.stderr_file.read_text()[-3000:]
    run_dir = only_run_dir(tmp_path / "run")
    line = state(run_dir)["error"]
    assert state(run_dir)["status"] == "interrupted"
    assert line.startswith("interrupted at step ") and "run the same command again to resume from checkpoints/" in line
    assert line in proc.stderr_file.read_text().splitlines()
    again = run_cli(args, cwd=tmp_path / "run", env=cli_env())
    assert again.returncode == 0, again.stderr[-3000:]
    assert state(run_dir)["status"] == "done" and resumed_from((run_dir / "run.log").read_text())
