"""What a person sees in the terminal.

One line per phase, one progress bar per long phase with the few numbers that
matter in its postfix, one line per eval, and a summary table at the end. The
full metric stream goes to ``metrics.jsonl`` and W&B, never to the terminal;
``verbose=true`` gives TRL's own logging back.

Lines go through the ``mathreason`` logger, so ``run.log`` (Hydra's file
handler) holds the same lines with timestamps; the console handler writes
with ``tqdm.write`` so an open progress bar is not torn.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from tqdm.std import tqdm as _tqdm

from mathreason.records import (
    CORRECT_FALSE_EQUATION,
    ERROR_KINDS,
    ERRORS,
    FORMAT_RATE,
    LENIENT,
    SAMPLED_PREFIXES,
    STRICT,
    summary_key,
)

log = logging.getLogger("mathreason")

# Postfix of the training bar: (log key, label, format). The first present wins per label.
POSTFIX = (
    ("reward", "reward", "{:.2f}"),
    ("rewards/correctness/mean", "correct", "{:.0%}"),
    ("rewards/margins", "margin", "{:.2f}"),
    ("rewards/accuracies", "pref acc", "{:.0%}"),
    ("loss", "loss", "{:.3f}"),
    ("step_time", "s/step", "{:.1f}"),
    ("cumulative_rollouts", "rollouts", "{:,.0f}"),
)


class TqdmHandler(logging.StreamHandler):
    """Console handler that prints above an open tqdm bar instead of through it."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=self.stream or sys.stderr)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed file
        return False


class LogFileBar(_tqdm):
    """A progress bar for a file nobody watches (SLURM, nohup, CI, ``> log 2>&1``):
    no redraws, one whole line each time the work passes another tenth (10% to
    90%), and the final line when the bar closes, with the last numbers the
    phase set. A bar with no total prints only its final line."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._tenths = 0            # the last tenth printed (0: none yet)
        self._printed_n: float | None = None
        super().__init__(*args, **kwargs)

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if msg is not None:         # tqdm clearing its in-place line: nothing was drawn in place
            return False
        tenths = min(9, int(10 * self.n / self.total)) if self.total else 0
        if tenths > self._tenths:
            self._tenths = tenths
            self._print_line()
        return True

    def _print_line(self) -> None:
        self._printed_n = self.n
        self.fp.write(self.__str__() + "\n")
        self.fp.flush()

    def clear(self, nolock: bool = False) -> None:
        pass

    def moveto(self, n: int) -> None:
        pass

    def close(self) -> None:
        if getattr(self, "disable", True):
            return
        if self._printed_n != self.n:
            self._ema_dt = lambda: None  # the overall rate, as tqdm's own final line
            self._print_line()
        self.leave = False
        super().close()


def progress_bar(**kwargs: Any) -> _tqdm:
    """Every progress bar of a run: tqdm's redrawing bar in a terminal, a
    :class:`LogFileBar` when the stream is a file."""
    from mathreason.processes import is_main

    kwargs.setdefault("disable", not is_main())  # a job on several processes: rank 0's bars only
    stream = kwargs.get("file") or sys.stderr
    if is_terminal(stream):
        from tqdm.auto import tqdm

        return tqdm(**kwargs)
    return LogFileBar(**kwargs)


def phase(name: str, detail: str = "") -> None:
    """Announce a phase of the run: ``▸ training — 16 steps x 64 rollouts``."""
    log.info("▸ %s%s", name, f" — {detail}" if detail else "")


class EvalLines:
    """One line per held-out eval, with the change since the step-0 eval (the
    baseline; a resumed run, which does not repeat it, shows no change)."""

    def __init__(self) -> None:
        self.baseline: float | None = None

    def line(self, step: int, metrics: dict[str, Any], rollouts: float | None = None) -> str:
        strict = metrics.get("eval_accuracy_strict", metrics.get("eval/accuracy_strict"))
        if strict is None:
            return ""
        if step == 0:
            self.baseline = strict
        parts = [f"eval @ step {step}" + (f" ({rollouts:,.0f} rollouts)" if rollouts else "")]
        if step == 0:
            parts.append(f"strict {strict:.1%} (baseline)")
        elif self.baseline is not None:
            parts.append(f"strict {strict:.1%} ({100 * (strict - self.baseline):+.1f} pp vs baseline)")
        else:
            parts.append(f"strict {strict:.1%}")
        for key, label in (("accuracy_lenient", "lenient"), ("format_rate", "format")):
            value = metrics.get(f"eval_{key}", metrics.get(f"eval/{key}"))
            if value is not None:
                parts.append(f"{label} {value:.1%}")
        for key, value in metrics.items():
            if key.replace("/", "_").startswith(("eval_pass@", "eval_mean@")):
                parts.append(f"{key.split('_', 1)[-1].split('/', 1)[-1]} {value:.1%}")
        return " · ".join(parts)

    def report(self, step: int, metrics: dict[str, Any], rollouts: float | None = None) -> None:
        text = self.line(step, metrics, rollouts)
        if text:
            log.info(text)


EVAL_LINES = EvalLines()  # one per process: the baseline is the run's first eval


def make_progress_callback(desc: str):
    """A transformers ``TrainerCallback``: one bar over the phase's steps whose
    postfix shows the numbers in ``POSTFIX``; replaces transformers'
    ``ProgressCallback`` (which prints every metric dict to the terminal)."""
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        bar = None
        shown: dict[str, str] = {}

        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                self.bar = progress_bar(total=state.max_steps, initial=state.global_step, desc=desc, unit="step",
                                dynamic_ncols=True, leave=True)

        def on_step_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.bar is None or not logs:
                return
            shown: dict[str, str] = {}
            for key, label, fmt in POSTFIX:
                value = logs.get(key, logs.get(f"train/{key}"))
                if label not in shown and isinstance(value, (int, float)):
                    shown[label] = fmt.format(value)
            if shown:  # a record without rewards (the end-of-training summary) keeps the last ones
                self.shown = {**self.shown, **shown}
                self.bar.set_postfix(self.shown, refresh=True)

        def on_train_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    return Progress()


def quiet_trainer(trainer, desc: str, verbose: bool = False):
    """Console set-up for a TRL trainer: our progress bar instead of
    transformers' metric-dict printer, unless ``verbose``."""
    if verbose:
        return trainer
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(make_progress_callback(desc))
    _no_empty_completion_panel()
    return trainer


def _no_empty_completion_panel() -> None:
    """TRL's GRPOTrainer prints a rich 'Step N' panel of sample completions on
    every log, empty when ``num_completions_to_print=0``: skip the empty one
    (``+grpo.extra.num_completions_to_print=4`` shows four)."""
    try:
        import trl.trainer.grpo_trainer as grpo_trainer
    except ImportError:
        return
    original = grpo_trainer.print_prompt_completions_sample
    if getattr(original, "skips_empty", False):
        return

    def printer(*args, **kwargs):
        count = args[5] if len(args) > 5 else kwargs.get("num_samples")
        if count != 0:
            original(*args, **kwargs)

    printer.skips_empty = True
    grpo_trainer.print_prompt_completions_sample = printer


def quiet_libraries(verbose: bool = False) -> None:
    """Hugging Face's own per-operation bars (dataset maps, shard writing) are
    noise next to the phase bars; ``verbose`` keeps them."""
    if verbose:
        return
    import datasets
    from transformers.utils import logging as hf_logging

    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()


def change_lines(summary: dict[str, Any]) -> list[str]:
    """How sure the before/after is, one line per metric (``change/<metric>/...`` in run.json);
    an eval-only run: its accuracy's CI (``final/<metric>_ci``)."""
    lines = []
    for metric, label in _summary_metrics(summary):
        c = {k.rsplit("/", 1)[1]: v for k, v in summary.items() if k.startswith(f"change/{metric}/")}
        if c.get("diff") is not None:
            tail = f"{c['gained']} items gained, {c['lost']} lost"
            if c.get("p_mcnemar") is not None:
                tail += f", McNemar p = {c['p_mcnemar']:.2g}"
            lines.append(f"{label} {100 * c['diff']:+.1f} pp [{100 * c['ci_low']:+.1f}, {100 * c['ci_high']:+.1f}] "
                         f"(95% CI, paired over {c['n_items']:,} items; {tail})")
        ci = summary.get(f"final/{metric}_ci")
        if ci and c.get("diff") is None:
            lines.append(f"{label} {100 * summary.get(f'final/{metric}', float('nan')):.1f}% "
                         f"[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}] over {summary.get('eval_items', '?'):,} items")
    return lines


def _summary_metrics(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """(metric, label) for greedy strict accuracy and each sampled mean@k in the summary."""
    names = set()
    for key in summary:
        if key.startswith("change/mean@"):
            names.add(key.split("/")[1])
        elif key.startswith("final/mean@") and key.endswith("_ci"):
            names.add(key[len("final/"):-len("_ci")])
    return [("accuracy_strict", "strict")] + [(m, m) for m in sorted(names)]


def summary_table(summary: dict[str, Any]) -> str:
    """The end-of-run table as text (the console and run.log print the same): before/after rows
    (one row for an eval-only run), the change with its CI, the error mix, the run's facts."""
    from rich.console import Console
    from rich.table import Table

    single = summary_key("baseline", STRICT) not in summary
    sampled = sorted({k.split("/", 1)[1] for k in summary
                      if k.startswith(tuple(summary_key(t, p) for t in ("baseline", "final") for p in SAMPLED_PREFIXES))
                      and not k.endswith("_ci")}, key=lambda m: (m.split("@")[0] != "pass", m))
    columns = [STRICT, LENIENT, FORMAT_RATE] + [f"eval/{m}" for m in sampled]
    table = Table(title=f"{summary.get('method')} — held-out accuracy", title_justify="left")
    table.add_column("", justify="left")
    for metric in columns:
        table.add_column(metric.split("/", 1)[1].replace("accuracy_", "").replace("_rate", ""), justify="right")
    rows = (("final", "accuracy"),) if single else (("baseline", "before training"), ("final", "after training"))
    for tag, label in rows:
        values = [summary.get(summary_key(tag, m)) for m in columns]
        if values[0] is not None:
            table.add_row(label, *(f"{v:.1%}" if v is not None else "–" for v in values))
    console = Console(width=100, record=True, file=_Null())
    console.print(table)
    lines = [console.export_text().rstrip()]
    for n, text in enumerate(change_lines(summary)):
        lines.append(f"{('95% CI' if single else 'change') if n == 0 else '':>12}{':' if n == 0 else ' '} {text}")
    shown = [(kind, ERRORS + kind) for kind in ERROR_KINDS[1:]] + [("right with a false equation", CORRECT_FALSE_EQUATION)]
    if single:
        errors = [f"{name} {summary[summary_key('final', m)]:.1%}" for name, m in shown
                  if summary.get(summary_key("final", m)) is not None]
    else:
        errors = [f"{name} {summary[summary_key('baseline', m)]:.1%} → {summary[summary_key('final', m)]:.1%}"
                  for name, m in shown if summary.get(summary_key("baseline", m)) is not None
                  and summary.get(summary_key("final", m)) is not None]
    if errors:
        lines.append(f"{'errors':>12}: " + " · ".join(errors))
    facts = [
        ("wall-clock", summary.get("wall_clock_s"), lambda v: f"{v:,.0f} s"),
        ("rollouts", summary.get("cumulative_rollouts"), lambda v: f"{v:,.0f}"),
        ("peak memory", summary.get("peak_memory_mb"), lambda v: f"{v:,.0f} MB"),
        ("run dir", summary.get("run_dir"), str),
        ("W&B", summary.get("wandb"), str),
    ]
    lines += [f"{name:>12}: {fmt(value)}" for name, value, fmt in facts if value not in (None, "")]
    return "\n".join(lines)


class _Null:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass
