"""A real short GRPO run with W&B in offline mode, read back with wandb's own reader.

wandb 0.31 has no Python-level reader for the ``.wandb`` transaction log (the
old ``wandb.sdk.internal.datastore`` is gone; the log is read by wandb-core),
so the run file is decoded with wandb's CLI: ``wandb leet inspect --json``,
which prints one JSON object per record (run, config, history, summary, exit…).

One run serves both tests (a real run costs about a minute on this CPU): it is
started with a fake ``WANDB_API_KEY`` (so it "looks" logged in) and a fake
``HF_TOKEN``, with ``WANDB_DIR``/``WANDB_MODE`` unset, and ``logger.mode=offline``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import run_cli
from omegaconf import OmegaConf
from test_training import SHORT, only_run_dir, records

pytestmark = pytest.mark.slow

FAKE_WANDB_KEY = "fake-key-0123456789abcdef0123456789abcdef01234567"
FAKE_HF_TOKEN = "hf_FakeToken0123456789abcdefABCDEFghijkl"
FAKE_SERVICE_TOKEN = "svc-0123456789abcdef-not-real"
SECRETS = (FAKE_WANDB_KEY, FAKE_HF_TOKEN, FAKE_SERVICE_TOKEN)

REWARD_FUNCS = ("correctness", "strict_format", "soft_format", "integer", "xmlcount")  # reward=seed
SHORT_GRPO = [
    "method=grpo",
    "group_size=2",
    "geometry.rollouts_per_step=32",
    "geometry.max_steps=2",
    *(a for a in SHORT if a != "logger=none"),
]
KEEP_WANDB_ENV = {"WANDB_SILENT"}


def read_wandb_records(wandb_file: Path) -> list[dict]:
    """Every record of a ``.wandb`` file, decoded by wandb itself
    (``wandb leet inspect --json``: one JSON record per line)."""
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_ERROR_REPORTING": "false"}  # no telemetry upload
    out = subprocess.run(
        [sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(wandb_file)],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    recs = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    assert recs and recs[0]["type"] == "header", out.stdout[:500]
    return recs


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory, cache_dir):
    root = tmp_path_factory.mktemp("wandb_offline")
    with pytest.MonkeyPatch.context() as mp:
        # No W&B setting from the outer environment: WANDB_DIR and WANDB_MODE in
        # particular are unset, so only logger.mode / WandbRun.start decide.
        for key in list(os.environ):
            if key.startswith("WANDB_") and key not in KEEP_WANDB_ENV:
                mp.delenv(key)
        mp.setenv("WANDB_API_KEY", FAKE_WANDB_KEY)
        mp.setenv("HF_TOKEN", FAKE_HF_TOKEN)
        mp.setenv("MY_SERVICE_TOKEN", FAKE_SERVICE_TOKEN)
        out = run_cli(
            [*SHORT_GRPO, "logger=wandb", "logger.mode=offline", f"cache_dir={cache_dir}",
             # a user who puts a secret into the config by interpolation: redacted in every record
             "logger.tags=[${oc.env:WANDB_API_KEY},${oc.env:MY_SERVICE_TOKEN}]"],
            cwd=root, timeout=1800,  # 1800: a cold cache builds the tiny model first
        )
    assert out.returncode == 0, out.stderr[-3000:]
    run_dir = only_run_dir(root)
    wandb_runs = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(wandb_runs) == 1, wandb_runs
    wandb_files = list(wandb_runs[0].glob("run-*.wandb"))
    assert len(wandb_files) == 1, wandb_files
    return {"root": root, "run_dir": run_dir, "out": out, "wandb_file": wandb_files[0],
            "records": read_wandb_records(wandb_files[0])}


def _of_type(recs: list[dict], kind: str) -> list[dict]:
    return [r[kind] for r in recs if r["type"] == kind]


def test_offline_wandb_history_matches_metrics_file(offline_run):
    run_dir: Path = offline_run["run_dir"]
    recs = offline_run["records"]

    # Offline although an API key is set (logger.mode=offline wins), files in the run dir.
    assert "W&B offline" in (run_dir / "run.log").read_text() + offline_run["out"].stderr
    assert not (offline_run["root"] / "wandb").exists()  # WANDB_DIR unset: nothing beside outputs/
    (run,) = _of_type(recs, "run")
    assert run["telemetry"]["feature"].get("offline") is True
    assert _of_type(recs, "exit")[-1].get("exit_code", 0) == 0

    # Run identity as WandbRun.start sets it.
    assert run["run_id"] == (run_dir / "wandb_id").read_text().strip()
    assert run["project"] == "mathreason"
    assert run["run_group"] == "default"  # ${experiment_name}
    assert run["job_type"] == "grpo"
    # the two secret tags (interpolated from the environment) redacted; then method, model, data, arm
    assert run["tags"] == ["***", "***", "grpo", "tiny", "arith", "g2"]
    assert run["display_name"].startswith("method=grpo,group_size=2,")

    # The resolved config, the same as the run dir's config.yaml, plus the overrides.
    config = run["config"]["update"]
    assert config["group_size"] == 2
    assert config["geometry"]["rollouts_per_step"] == 32
    assert config["logger"]["mode"] == "offline"
    assert "logger.mode=offline" in config["overrides"]
    saved = OmegaConf.to_container(OmegaConf.load(run_dir / "config.yaml"))
    assert {k: v for k, v in config.items() if k not in ("_wandb", "overrides")} == saved
    # transformers' WandbCallback adds TrainingArguments later, without clobbering ours
    later = {k: v for c in _of_type(recs, "config") for k, v in c.get("update", {}).items()}
    assert later["num_generations"] == 2
    assert all(later[k] == config[k] for k in later.keys() & config.keys())
    assert later.get("hub_token") in (None, "<HUB_TOKEN>")  # transformers redacts it

    # W&B history: reward curve, per-component rewards, memory, held-out accuracy.
    history = [h["item"] for h in _of_type(recs, "history") if "item" in h]
    train_rows = [h for h in history if "train/reward" in h]
    assert [h["train/global_step"] for h in train_rows] == [1, 2]
    for row in train_rows:
        for name in REWARD_FUNCS:
            assert f"train/rewards/{name}/mean" in row, sorted(row)
        assert "train/memory/peak_rss_mb" in row and "train/memory/overall_peak_rss_mb" in row
    eval_rows = [h for h in history if "eval/accuracy_strict" in h]
    assert [h["train/global_step"] for h in eval_rows] == [0, 2]  # baseline and final
    assert all(0.0 <= h["eval/accuracy_strict"] <= 1.0 for h in eval_rows)

    # metrics.jsonl holds the same records: same keys and values at the same steps
    # (W&B's train/global_step is metrics.jsonl's step).
    local = records(run_dir)
    assert [r["step"] for r in local if "train/reward" in r] == [1, 2]
    assert [r["step"] for r in local if "eval/accuracy_strict" in r] == [0, 2]
    for rec in local:
        want = {k: v for k, v in rec.items() if k != "step"}
        candidates = [h for h in history if h["train/global_step"] == rec["step"] and want.keys() <= h.keys()]
        assert len(candidates) == 1, (rec["step"], sorted(want))
        got = {k: v for k, v in candidates[0].items() if not k.startswith("_") and k != "train/global_step"}
        assert got == pytest.approx(want, rel=1e-9, abs=0), rec["step"]
    # …and every W&B row with a metric we track is one of them
    tracked = [h for h in history if "train/reward" in h or "eval/accuracy_strict" in h]
    assert len(tracked) == len([r for r in local if "train/reward" in r or "eval/accuracy_strict" in r])

    # the run's summary reaches W&B too (WandbRun.finish)
    summary = {k: v for s in _of_type(recs, "summary") for k, v in s.get("update", {}).items()}
    run_summary = json.loads((run_dir / "run.json").read_text())["summary"]
    assert summary["final/accuracy_strict"] == pytest.approx(run_summary["final/accuracy_strict"])
    assert summary["train/reward"] == pytest.approx(train_rows[-1]["train/reward"])


def test_no_secret_written_anywhere(offline_run):
    """Neither the W&B key nor the HF token lands in any file the run wrote
    (the .wandb log, W&B's files/logs, config.yaml, run.json, .hydra/, run.log,
    checkpoints), nor in the decoded W&B records or the CLI's output."""
    root: Path = offline_run["root"]
    run_dir: Path = offline_run["run_dir"]
    needles = [s.encode() for s in SECRETS]
    scanned, leaks = [], []
    for dirpath, _dirs, files in os.walk(root):  # followlinks=False: wandb/latest-run is a link
        for name in files:
            path = Path(dirpath) / name
            if path.is_symlink():
                continue
            data = path.read_bytes()
            scanned.append(path.relative_to(run_dir) if path.is_relative_to(run_dir) else path)
            leaks += [(str(path), n.decode()) for n in needles if n in data]
    assert not leaks, leaks
    must_scan = {"config.yaml", "run.json", "run.log", "metrics.jsonl", ".hydra/config.yaml",
                 ".hydra/hydra.yaml", ".hydra/overrides.yaml"}
    assert must_scan <= {str(p) for p in scanned}
    wandb_dir = offline_run["wandb_file"].parent.relative_to(run_dir)
    assert wandb_dir / offline_run["wandb_file"].name in scanned
    assert any(str(p).startswith(f"{wandb_dir}/logs/") for p in scanned)

    decoded = json.dumps(offline_run["records"])
    out = offline_run["out"]
    for secret in SECRETS:
        assert secret not in decoded
        assert secret not in out.stdout and secret not in out.stderr
