"""Reward functions (TRL signature) and the registry the config selects from.

Each function is ``f(prompts, completions, **kwargs) -> list[float]`` and
returns UNWEIGHTED scores; TRL applies ``reward_weights`` and logs
``rewards/<__name__>/mean``, so a function's name is its registry key.
Completions are strings or conversational (``[{"role": "assistant",
"content": text}]``). Gold answers arrive as ``kwargs["answer"]`` (parsed by
the loader) and their format as ``kwargs["answer_format"]``.
"""

from __future__ import annotations

import functools
import importlib
import math
import re
from collections.abc import Callable, Mapping, Sequence

from mathreason.errors import NumericFault, UserError
from mathreason.scoring.answers import answers_match, extract_xml_answer

RewardFunc = Callable[..., list]

_STRICT = re.compile(r"^<reasoning>\n.*?\n</reasoning>\n<answer>\n.*?\n</answer>\n?\Z", re.DOTALL)
_REASONING_THEN_ANSWER = re.compile(r"</reasoning>\s*<answer>")
_INTEGER = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)")


def completion_text(completion) -> str:
    """The text of a completion: a string, or the last message's content."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Mapping):
        return str(completion.get("content") or "")
    if isinstance(completion, Sequence) and completion:
        return completion_text(completion[-1])
    return ""


def _texts(completions) -> list[str]:
    return [completion_text(c) for c in completions]


def correctness(prompts, completions, answer, answer_format, log_extra=None, **kwargs) -> list[float]:
    """1.0 if the ``<answer>`` content equals the gold answer, else 0.0. Under
    TRL the gold answer becomes a column of the completions table."""
    if log_extra is not None:
        log_extra("gold", list(answer))
    return [
        1.0 if answers_match(extract_xml_answer(text), gold, fmt) else 0.0
        for text, gold, fmt in zip(_texts(completions), answer, answer_format, strict=True)
    ]


def strict_format(prompts, completions, **kwargs) -> list[float]:
    """1.0 if the whole completion is exactly the reasoning/answer layout
    (multi-line reasoning allowed, one optional trailing newline) with each
    tag once: the public regex alone also accepts two answer blocks."""
    return [1.0 if _tags_once(text) and _STRICT.match(text) else 0.0 for text in _texts(completions)]


def _tags_once(text: str) -> bool:
    # Checked before _STRICT: with each tag once its lazy scans are linear, not quadratic.
    return all(text.count(tag) == 1 for tag in ("<reasoning>", "</reasoning>", "<answer>", "</answer>"))


def soft_format(prompts, completions, **kwargs) -> list[float]:
    """1.0 if a ``<reasoning>…</reasoning>`` block followed by an
    ``<answer>…</answer>`` block appears anywhere."""
    return [1.0 if _soft(text) else 0.0 for text in _texts(completions)]


def _soft(text: str) -> bool:
    # Linear form of re.search(r"<reasoning>.*?</reasoning>\s*<answer>.*?</answer>", text, re.DOTALL),
    # which is cubic on repeated tags: the first <reasoning>, then the first
    # </reasoning><answer> after it, then any </answer>.
    start = text.find("<reasoning>")
    middle = _REASONING_THEN_ANSWER.search(text, start + len("<reasoning>")) if start >= 0 else None
    return middle is not None and text.find("</answer>", middle.end()) >= 0


def integer(prompts, completions, **kwargs) -> list[float]:
    """1.0 if the ``<answer>`` content is written as an integer: ``42``,
    ``-3``, ``1,080``. ``3.0``, ``$18`` and ``18 apples`` do not count (this is a
    format reward for the GSM8K answer style; correctness is scored apart)."""
    return [
        1.0 if (a := extract_xml_answer(text)) is not None and _INTEGER.fullmatch(a) else 0.0
        for text in _texts(completions)
    ]


def xmlcount(prompts, completions, **kwargs) -> list[float]:
    """0.125 for each of ``<reasoning>\\n``, ``\\n</reasoning>\\n``,
    ``\\n<answer>\\n`` and ``\\n</answer>`` occurring exactly once, minus 0.001
    per character after the final ``</answer>`` (one trailing newline is free).

    The public version's rule, with its double count of the trailing-text
    penalty removed: a strict-format completion scores exactly 0.5.
    """
    return [_xmlcount(text) for text in _texts(completions)]


def _xmlcount(text: str) -> float:
    score = sum(
        0.125 for tag in ("<reasoning>\n", "\n</reasoning>\n", "\n<answer>\n", "\n</answer>") if text.count(tag) == 1
    )
    end = text.rfind("</answer>")
    if end >= 0:
        trailing = text[end + len("</answer>") :]
        trailing = trailing[1:] if trailing.startswith("\n") else trailing
        score -= 0.001 * len(trailing)
    return score


REWARD_FUNCS: dict[str, RewardFunc] = {
    f.__name__: f for f in (correctness, strict_format, soft_format, integer, xmlcount)
}


def register_reward(func: RewardFunc) -> RewardFunc:
    """Decorator: add a reward function to the registry under its ``__name__``
    (for plugin modules listed in ``reward.plugins``)."""
    REWARD_FUNCS[func.__name__] = func
    return func


def load_plugins(modules) -> None:
    """Import the modules of ``reward.plugins`` so their rewards register."""
    for module in modules or ():
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise UserError(f"reward.plugins: cannot import {module!r} ({err})") from err


def _finite_checked(func: RewardFunc) -> RewardFunc:
    """Stop the run on a NaN/inf reward, naming the function and the step."""

    @functools.wraps(func)
    def checked(prompts, completions, **kwargs):
        values = func(prompts, completions, **kwargs)
        for value in values:
            if value is not None and not math.isfinite(value):
                state = kwargs.get("trainer_state")
                step = state.global_step + 1 if state is not None else "?"
                raise NumericFault(f"reward function '{func.__name__}' returned {value} at step {step}")
        return values

    return checked


def build_reward_funcs(functions: Mapping[str, float]) -> tuple[list[RewardFunc], list[float]]:
    """Reward functions and their weights from a ``name -> weight`` mapping
    (``reward.functions`` in the config)."""
    allowed = ", ".join(REWARD_FUNCS)
    if not isinstance(functions, Mapping) or not functions:
        raise UserError(f"reward.functions: must be a non-empty mapping name -> weight; names: {allowed}")
    funcs, weights = [], []
    for name, weight in functions.items():
        key = f"reward.functions.{name}"
        if name not in REWARD_FUNCS:
            raise UserError(f"{key}: unknown reward function; allowed: {allowed}")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
            raise UserError(f"{key}: weight must be a finite number, got {weight!r} (remove the function with ~{key})")
        funcs.append(_finite_checked(REWARD_FUNCS[name]))
        weights.append(float(weight))
    return funcs, weights


def score_completions(
    funcs: Sequence[RewardFunc], weights: Sequence[float], prompts, completions, **columns
) -> tuple[list[float], dict[str, list[float | None]]]:
    """Weighted total per completion and each function's unweighted values.

    ``columns`` are the per-completion dataset columns (``answer``,
    ``answer_format``, ...). As in TRL, a None value adds nothing to the total.
    """
    totals = [0.0] * len(completions)
    per_function: dict[str, list[float | None]] = {}
    for func, weight in zip(funcs, weights, strict=True):
        values = list(func(prompts=prompts, completions=completions, **columns))
        if len(values) != len(completions):
            raise ValueError(f"reward {func.__name__} returned {len(values)} values for {len(completions)} completions")
        per_function[func.__name__] = values
        for i, value in enumerate(values):
            if value is not None:
                totals[i] += weight * value
    return totals, per_function
