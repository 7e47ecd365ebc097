"""Hydra callbacks: validate the composed config before any job starts, and
report the failed jobs of a sweep.

``ValidateConfig``: ``on_run_start`` runs before Hydra creates the run
directory, so a bad override leaves nothing behind; ``on_multirun_start``
checks every job of a sweep before the launcher submits any of them.

``ReportFailures``: a failed sweep job is reported with its overrides and log
path while the other jobs go on; at the end of the sweep
``<sweep dir>/failures.json`` lists the failed jobs and a summary is printed.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import sys
import traceback
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from mathreason.errors import UserError
from mathreason.one_line import fail
from mathreason.records import FAILURES_FILE


class ValidateConfig(Callback):
    """Single run: validate and claim the run dir before Hydra writes into it
    (so a refused run never touches another run's files; rank 0 claims it for a
    job on several processes). Sweep: validate
    every job before the launcher submits any. Hydra turns a callback's
    exception into a warning, so a user error exits here (``fail``)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        from mathreason.config.schema import check_dir, validate
        from mathreason.processes import is_main
        from mathreason.records.run_dir import check_reuse, claim, remove_created

        try:
            typed = validate(config, list(config.hydra.overrides.task))
            check_dir("hydra.run.dir", config.hydra.run.dir)
            if not is_main():  # a job on several processes: rank 0 claims the run dir
                return
            run_dir = claim(str(config.hydra.run.dir))
            try:
                check_reuse(run_dir, typed)
            except UserError:
                remove_created(run_dir)
                raise
        except UserError as err:
            fail(err)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from mathreason.launch.sweep_check import validate_sweep

        try:
            validate_sweep(config)
        except UserError as err:
            fail(err)


class JoinTasks(Callback):
    """A sweep job on several SLURM tasks (``hydra.launcher.tasks_per_node`` > 1):
    submitit runs the job once per task; each task takes its rank from SLURM
    (``processes.adopt_slurm_tasks``), and the tasks other than rank 0 stop
    writing to the job's log file (Hydra opened it for every task) and log
    warnings only. Rank 0 owns the run as under torchrun."""

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        import logging

        from mathreason import processes

        processes.adopt_slurm_tasks()
        if processes.is_main():
            return
        root = logging.getLogger()
        for handler in [h for h in root.handlers if isinstance(h, logging.FileHandler)]:
            root.removeHandler(handler)
            handler.close()
        root.setLevel(logging.WARNING)


JOBS_DIR = ".jobs"  # one JSON record per finished job, written by the job itself


def _is_multirun(config: DictConfig) -> bool:
    from hydra.types import RunMode

    return OmegaConf.select(config, "hydra.mode") == RunMode.MULTIRUN


def _overrides_text(overrides: Any) -> str:
    return " ".join(str(o) for o in overrides) or "(no overrides)"


def _first_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _write_json(path: Path, data: Any) -> None:
    from mathreason.records.files import write_atomic

    write_atomic(path, json.dumps(data, indent=2, default=str) + "\n")


def _submitit_stderr() -> str | None:
    """The submitit log of this job (stderr) when it runs under submitit."""
    if not os.environ.get("SUBMITIT_EXECUTOR"):
        return None
    try:
        import submitit

        return str(submitit.JobEnvironment().paths.stderr)
    except Exception:  # noqa: BLE001 - best effort only
        return None


class ReportFailures(Callback):
    """Report failed jobs of a multirun without stopping the others.

    Hydra runs every job of a batch even when one fails (the task's exception
    is kept in its ``JobReturn``); this callback makes the failure visible at
    once and in one place:

    * ``on_job_end`` (runs where the job runs: in the sweep process for the
      basic launcher, in the SLURM/submitit job otherwise) prints
      ``job <num> failed: <overrides> — log: <path>``, appends the traceback to
      that log and records the job's outcome in ``<sweep dir>/.jobs/<num>.json``;
    * ``on_multirun_end`` (in the sweep process) writes
      ``<sweep dir>/failures.json`` (a list, empty when all jobs succeeded) and
      prints a summary. Hydra skips ``on_multirun_end`` when a job failed (its
      sweeper re-raises the first failure after the batch), so the same report
      is also registered with ``atexit`` and runs once either way.
    """

    def __init__(self) -> None:
        self._sweep_dir: Path | None = None
        self._jobs: list[list[str]] | None = None  # the jobs' overrides (basic sweeper only)
        self._reported = False

    # ------------------------------------------------------------ sweep side
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._sweep_dir = Path(str(config.hydra.sweep.dir)).absolute()
        self._reported = False
        # outcomes of an earlier sweep into the same directory are not this sweep's
        shutil.rmtree(self._sweep_dir / JOBS_DIR, ignore_errors=True)
        (self._sweep_dir / FAILURES_FILE).unlink(missing_ok=True)
        self._jobs = None
        if str(OmegaConf.select(config, "hydra.sweeper._target_") or "").endswith(".BasicSweeper"):
            try:
                from mathreason.launch.sweep_check import sweep_jobs

                self._jobs = [list(job) for job in sweep_jobs(config)]
            except Exception:  # noqa: BLE001 - the job list only improves the summary
                self._jobs = None
        atexit.register(self._report)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._report()

    def _report(self) -> None:
        if self._reported or self._sweep_dir is None:
            return
        self._reported = True
        sweep_dir = self._sweep_dir
        records = []
        for path in sorted((sweep_dir / JOBS_DIR).glob("*.json")):
            try:
                records.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue
        records.sort(key=lambda r: r.get("num", 0))
        failed = [r for r in records if r.get("status") != "done"]
        seen = {r.get("num") for r in records}
        jobs = self._jobs or []
        missing = [n for n in range(len(jobs)) if n not in seen]
        failures = failed + [
            {"num": n, "status": "no result", "overrides": jobs[n], "log": str(sweep_dir / ".submitit"),
             "error": "no outcome when the sweep process stopped: the job died without reporting (killed, out of "
                      "memory, cancelled) or, after another job died, it is still running (its outcome will be in "
                      f"{sweep_dir / JOBS_DIR / f'{n}.json'})"}
            for n in missing
        ]
        try:
            _write_json(sweep_dir / FAILURES_FILE, failures)
        except OSError as err:
            print(f"could not write {sweep_dir / FAILURES_FILE}: {err}", file=sys.stderr)
        total = len(jobs) if self._jobs is not None else len(records)
        done = len(records) - len(failed)
        if not failures:
            print(f"sweep {sweep_dir}: all {total} jobs done", flush=True)
            return
        lines = [f"sweep {sweep_dir}: {done} of {total} jobs done, {len(failures)} failed"]
        for r in failed:
            lines.append(f"  job {r['num']} failed: {_overrides_text(r.get('overrides') or [])} — log: {r.get('log')}"
                         f" ({r.get('error')})")
        for n in missing:
            lines.append(f"  job {n} failed: {_overrides_text(jobs[n])} — no result (died, or still running after"
                         f" another job died); see the launcher's logs under {sweep_dir / '.submitit'}")
        lines.append(f"  failed jobs listed in {sweep_dir / FAILURES_FILE}")
        sys.stdout.flush()
        print("\n".join(lines), file=sys.stderr, flush=True)

    # -------------------------------------------------------------- job side
    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        from hydra.core.utils import JobStatus

        from mathreason.processes import is_main

        if not _is_multirun(config) or not is_main():  # a job on several tasks: rank 0 reports it
            return
        num = OmegaConf.select(config, "hydra.job.num")
        output_dir = Path(str(config.hydra.runtime.output_dir))
        overrides = list(job_return.overrides or [])
        record: dict[str, Any] = {"num": num, "overrides": overrides, "output_dir": str(output_dir)}
        job_id = OmegaConf.select(config, "hydra.job.id")
        if job_id:
            record["job_id"] = str(job_id)
        if job_return.status == JobStatus.COMPLETED:
            record["status"] = "done"
            print(f"job {num} done: {_overrides_text(overrides)} — {output_dir}", file=sys.stderr, flush=True)
        else:
            # the exception itself: `.return_value` would log "Error executing job ..."
            # once more (the sweeper reads it again after the batch) and re-raise it
            err = getattr(job_return, "_return_value", None)
            record.update(status="failed", error=_first_line(err) if isinstance(err, BaseException) else str(err))
            record["log"] = self._log_failure(config, output_dir, num, err)
            submitit_log = _submitit_stderr()
            if submitit_log:
                record["submitit_log"] = submitit_log
            print(f"job {num} failed: {_overrides_text(overrides)} — log: {record['log']}", file=sys.stderr, flush=True)
        sweep_dir = Path(str(config.hydra.sweep.dir)).absolute()
        try:
            _write_json(sweep_dir / JOBS_DIR / f"{num}.json", record)
        except OSError as err:
            print(f"could not record job {num} in {sweep_dir / JOBS_DIR}: {err}", file=sys.stderr)

    @staticmethod
    def _log_failure(config: DictConfig, output_dir: Path, num: Any, err: Any) -> str:
        """Append the traceback to the job's log; return that log's path. When
        the job removed its own directory (an early user error), the traceback
        goes to ``<sweep dir>/.jobs/<num>.log`` instead."""
        if isinstance(err, BaseException):
            text = "".join(traceback.format_exception(type(err), err, err.__traceback__))
        else:
            text = f"{err}\n"
        try:
            log_file = OmegaConf.select(config, "hydra.job_logging.handlers.file.filename")
        except Exception:  # noqa: BLE001 - a custom job_logging may not resolve
            log_file = None
        path = Path(str(log_file)) if log_file else output_dir / "job.log"
        if not path.parent.is_dir():
            path = Path(str(config.hydra.sweep.dir)).absolute() / JOBS_DIR / f"{num}.log"
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with path.open("a") as fh:
                fh.write(f"job {num} failed:\n{text}")
        except OSError:
            pass
        return str(path)
