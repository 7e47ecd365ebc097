"""The job's W&B run, one object: mode selection (a key and the host reachable, else offline),
start or resume under the run dir's W&B id, the replay of kept history after an offline resume,
and the end. job.py makes it; methods reach it as ``ctx.wandb``; nothing here is module state.

Every metric a run logs goes through the trainer's ``log()`` (records/telemetry.py), so W&B (via
transformers' WandbCallback) and metrics.jsonl hold the same records with the same keys."""

from __future__ import annotations

import logging
import os
import secrets
import sys
from pathlib import Path
from typing import Any

from mathreason.records import STEP_AXIS, WANDB_ID_FILE, arm_tag
from mathreason.records.secrets import scrub_secrets

log = logging.getLogger("mathreason")
WANDB_PROBE_TIMEOUT_S = 3.0


class WandbRun:
    """``mode``: online, offline or disabled. ``start`` begins (or resumes) the run; ``replay``
    logs the metrics kept from before an interruption into a new offline run (W&B cannot append
    to an earlier offline run file); ``finish`` ends it with the summary."""

    def __init__(self, mode: str = "disabled", replay_pending: bool = False):
        self.mode = mode
        self._replay_pending = replay_pending

    @property
    def enabled(self) -> bool:
        return self.mode != "disabled"

    @staticmethod
    def _live():
        """The wandb module while a W&B run is open in this process, else None (never imports it)."""
        wandb = sys.modules.get("wandb")
        return wandb if wandb is not None and wandb.run is not None else None

    @classmethod
    def start(cls, cfg: Any, run_dir: Path, run_name: str, overrides: list[str]) -> WandbRun:
        """``logger.mode=auto``: online with a W&B key (``WANDB_API_KEY`` or ``~/.netrc``) and the
        W&B host reachable, else offline (run files under ``<run dir>/wandb``) with one warning
        line. The run id is kept in the run dir, so a resumed run continues the same W&B run
        (``resume="allow"``). Offline, W&B cannot append to an earlier attempt's run file: the
        earlier ``offline-run-*`` dirs of this id move to ``wandb/superseded/`` and the method
        replays the metrics it keeps (:meth:`replay`), so the one offline run left holds every
        step once, in order. No key is ever written anywhere."""
        log_cfg = cfg.logger
        if log_cfg.name == "none" or log_cfg.mode == "disabled":
            return cls("disabled")
        import wandb
        from omegaconf import OmegaConf

        mode = choose_wandb_mode(log_cfg.mode, run_dir)
        id_file = run_dir / WANDB_ID_FILE
        run_id = id_file.read_text().strip() if id_file.exists() else ""
        if not run_id:
            run_id = secrets.token_hex(4)
            id_file.write_text(run_id)
        pending = mode == "offline" and supersede_offline_runs(run_dir / "wandb", run_id)
        config = scrub_secrets(OmegaConf.to_container(cfg, resolve=True))
        wandb.init(
            project=log_cfg.project,
            entity=log_cfg.entity,
            group=log_cfg.group,
            job_type=cfg.method,
            name=run_name,
            tags=[*config["logger"]["tags"], cfg.method, cfg.model.name, cfg.data.name, config_arm_tag(cfg)],
            config={**config, "overrides": overrides},
            dir=str(run_dir),
            id=run_id,
            resume="allow",
            mode=mode,
            settings=wandb.Settings(silent=True, console="off"),
        )
        os.environ["WANDB_PROJECT"] = log_cfg.project or "mathreason"
        return cls(mode, pending)

    def replay(self, records: list[dict], raw: bool = False) -> int:
        """After an offline resume: log the metrics records kept from before the interruption
        into the new offline run, as transformers' WandbCallback logged them (keys plus
        ``train/global_step``; ``raw``: unchanged, as the eval method logs its record). Once; a
        no-op otherwise; returns the number of records logged."""
        pending, self._replay_pending = self._replay_pending, False
        wandb = self._live()
        if not pending or wandb is None or not records:
            return 0
        if not raw:
            wandb.define_metric(STEP_AXIS)
            wandb.define_metric("*", step_metric=STEP_AXIS, step_sync=True)
        for record in records:
            row = {k: v for k, v in record.items() if k != "step"}
            wandb.log(record if raw else {**row, STEP_AXIS: record.get("step", 0)})
        return len(records)

    def log(self, record: dict) -> None:
        """A record the method logs itself (not through a trainer)."""
        wandb = self._live()
        if self.enabled and wandb is not None:
            wandb.log(record)

    def update_config(self, values: dict) -> None:
        wandb = self._live()
        if self.enabled and wandb is not None:
            wandb.config.update(values, allow_val_change=True)

    def location(self) -> str | None:
        """The W&B run's URL (online) or its offline folder (upload with `wandb sync`)."""
        wandb = self._live()
        if wandb is None or not self.enabled:
            return None
        run = wandb.run
        return run.url if self.mode == "online" else str(Path(run.dir).parent)

    def finish(self, summary: dict[str, Any] | None = None) -> None:
        wandb = self._live()
        if wandb is None:
            return
        if summary:
            wandb.run.summary.update(summary)
        wandb.finish()


def supersede_offline_runs(wandb_dir: Path, run_id: str) -> bool:
    """Move the offline run dirs of ``run_id`` (earlier attempts of this run)
    to ``wandb/superseded/``; True when there were any."""
    earlier = sorted(wandb_dir.glob(f"offline-run-*-{run_id}")) if wandb_dir.is_dir() else []
    if not earlier:
        return False
    target = wandb_dir / "superseded"
    target.mkdir(exist_ok=True)
    for path in earlier:
        path.rename(target / path.name)
    log.info("W&B offline resume: %d earlier offline run dir(s) of run %s moved to %s; their kept steps are "
             "logged again into the new one", len(earlier), run_id, target)
    return True


def choose_wandb_mode(mode: str, run_dir: Path | None = None) -> str:
    """``online``/``offline`` for ``logger.mode``: ``auto`` and ``online`` go
    online only with a key and the W&B host reachable, else offline (one info
    line for ``auto`` without a key, the usual offline default; one warning
    otherwise). ``offline``/``disabled`` are kept."""
    if mode not in ("auto", "online"):
        return mode
    env_mode = os.environ.get("WANDB_MODE", "").lower()
    if env_mode in ("offline", "dryrun", "disabled"):
        return "disabled" if env_mode == "disabled" else "offline"
    where = f"{run_dir / 'wandb'}" if run_dir is not None else "<run dir>/wandb"
    host, port = wandb_host()
    if not logged_in():
        (log.info if mode == "auto" else log.warning)(
            "W&B: not logged in (no WANDB_API_KEY, no ~/.netrc entry for %s): logging offline to %s "
            "(upload later with `wandb sync`)", host, where)
        return "offline"
    reachable, why = reachable_within(host, port)
    if not reachable:
        log.warning("W&B: logged in but %s:%d is unreachable (%s): logging offline to %s "
                    "(upload later with `wandb sync`)", host, port, why, where)
        return "offline"
    return "online"


def wandb_host() -> tuple[str, int]:
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai")
    return url.hostname or "api.wandb.ai", url.port or (80 if url.scheme == "http" else 443)


def reachable_within(host: str, port: int, timeout: float | None = None) -> tuple[bool, str]:
    """A TCP connection to the W&B host within ``timeout`` (name lookup
    included: it runs in a thread, so a hanging resolver cannot stall the run)."""
    import socket
    import threading

    timeout = WANDB_PROBE_TIMEOUT_S if timeout is None else timeout
    result: list[str] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append("")
        except OSError as err:
            result.append(f"{type(err).__name__}: {err}")

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    if not result:
        return False, f"no answer within {timeout:.0f} s"
    return result[0] == "", result[0]


def logged_in() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return wandb_host()[0] in netrc.read_text(errors="ignore")
    except OSError:
        return False


def config_arm_tag(cfg: Any) -> str:
    """records.arm_tag of a composed config: ``g2``/``g16`` for GRPO, ``k4`` (samples per question) for DPO."""
    if cfg.method == "grpo":
        return arm_tag("grpo", cfg.group_size)
    if cfg.method == "dpo":
        return arm_tag("dpo", samples_per_question=cfg.dpo.mining.samples_per_question)
    return arm_tag(cfg.method)
