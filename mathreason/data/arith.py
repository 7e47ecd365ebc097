"""The embedded dataset: GSM8K-style arithmetic word problems, generated offline.

Each problem is a few templated sentences (names, objects, numbers) describing
1-3 operations -- add, subtract, multiply by a small factor ("twice as many",
"3 times as many") -- and a question about the final count. The answer must be
computed; the solution is one line restating the start plus one equation per
operation, e.g.::

    Tom has 23 apples.
    23 + 15 = 38
    38 - 7 = 31

Generation is deterministic in ``(n, seed, difficulty knobs)``. The problem
space is split once and for all by the *equation chain* of a problem's
solution (its equations: operands, operators and results, without the
wording): a problem is in the *eval* partition iff its chain's hash bucket is
below ``EVAL_PERCENT``. Train rows (and the tiny model's warm-start data) only
come from the train partition, eval rows only from the eval partition, so no
eval item's arithmetic appears, in any wording, in the training data,
whatever seeds or knobs are used (``shared_chains`` checks it).

The eval partition is split further, again by chain (a second hash), into
**dev** (choose settings on it) and **test** (report on it), and **ood** holds
three-step items of the eval partition (a length the default RL prompts, of one
or two steps, lack). ``data.eval_split`` picks one: ``eval`` (the whole
partition), ``dev``, ``test`` or ``ood``. What is held out is the chain; single
equations (``7 + 5 = 12``) and the question templates are shared by every split.
Each row carries its ``chain_id``: items of one chain form a cluster, and
bootstraps resample clusters, not items.

This module must stay importable without torch (it is on the ``--help`` path).
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterable, Mapping
from typing import Any

from mathreason.errors import UserError

# --------------------------------------------------------------------------
# Vocabulary of the templates

NAMES_HE = (
    "Tom", "Ben", "Sam", "Jack", "Leo", "Max", "Noah", "Liam", "Owen", "Finn",
    "Adam", "Eli", "Hugo", "Luke", "Omar", "Ravi", "Carlos", "Kenji", "Ivan", "Paul",
)
NAMES_SHE = (
    "Anna", "Lily", "Mia", "Emma", "Zoe", "Ella", "Ava", "Grace", "Ruby", "Nora",
    "Sara", "Maya", "Lucy", "Chloe", "Aisha", "Mei", "Rosa", "Nina", "Julia", "Hana",
)
OBJECTS = (
    "apples", "pencils", "stickers", "marbles", "books", "cookies", "cards",
    "shells", "coins", "stamps", "balloons", "eggs", "oranges", "toys",
    "flowers", "candies", "buttons", "crayons", "beads", "rocks",
)

_START = (
    "{X} has {a} {obj}.",
    "{X} owns {a} {obj}.",
    "{X} collected {a} {obj}.",
    "There are {a} {obj} in {X}'s bag.",
)
_ADD = (
    "{P} buys {b} more {obj}.",
    "{P} finds {b} more {obj}.",
    "Then {p} gets {b} more {obj}.",
    "{Y} gives {x} {b} more {obj}.",
)
_SUB = (
    "{P} gives {b} {obj} to {Y}.",
    "{P} loses {b} of them.",
    "{P} sells {b} {obj}.",
    "Then {p} gives away {b} of them.",
)
_MUL = (  # the subject's own count is multiplied
    "{P} doubles the number of {obj} {p} has.",
    "{P} triples the number of {obj} {p} has.",
    "Then {p} gets enough {obj} to have {k} times as many as before.",
)
_CMP_ADD = ("{Y} has {b} more {obj} than {X}.",)
_CMP_SUB = ("{Y} has {b} fewer {obj} than {X}.",)
_CMP_MUL = ("{Y} has twice as many {obj} as {X}.", "{Y} has {k} times as many {obj} as {X}.")
_QUESTION = (
    "How many {obj} does {X} have now?",
    "How many {obj} does {X} have in the end?",
)
_QUESTION_CMP = ("How many {obj} does {X} have?",)
_SOLUTION_START = "{X} has {a} {obj}."


def vocabulary() -> list[str]:
    """Every word the templates can produce (used to build the tiny tokenizer)."""
    words: set[str] = set(NAMES_HE) | set(NAMES_SHE) | set(OBJECTS)
    words |= {"He", "he", "She", "she", "him", "her", "his"}
    for group in (_START, _ADD, _SUB, _MUL, _CMP_ADD, _CMP_SUB, _CMP_MUL, _QUESTION,
                  _QUESTION_CMP, (_SOLUTION_START,)):
        for template in group:
            words |= set(re.findall(r"[A-Za-z]+", re.sub(r"\{[^}]*\}", " ", template)))
    return sorted(words)


# --------------------------------------------------------------------------
# Difficulty knobs

# The knobs a generator config must set (data/arith.yaml's `generator`, the tiny
# model's warm_start.generator): the values live in the YAML, not here.
KNOBS = (
    "min_steps",    # operations per problem (1-3)
    "max_steps",
    "min_start",    # the first number
    "max_start",
    "max_operand",  # added / subtracted amounts are 1..max_operand
    "max_factor",   # multipliers are 2..max_factor
    "max_result",   # every intermediate value stays <= max_result
    "ops",          # a non-empty subset of add, sub, mul
    "comparisons",  # allow "Y has 5 more/fewer/twice as many ... than X"
)
# Hash buckets (of 100) that form the eval partition. A fact of the problem
# space, not a knob: every split and every warm start must agree on it.
EVAL_PERCENT = 10
_OPS = ("add", "sub", "mul")
_PARTITIONS = (None, "train", "eval", "dev", "test")
# data.eval_split names for the arith generator (module docstring); ood = eval-partition items of OOD_STEPS steps
EVAL_SPLITS = ("eval", "dev", "test", "ood")
OOD_STEPS = 3


def _check_int(where: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise UserError(f"{where}: must be an integer in [{lo}, {hi}], got {value!r}")
    return value


def _resolve_difficulty(difficulty: Mapping[str, Any], where: str) -> dict[str, Any]:
    unknown = sorted(set(difficulty) - set(KNOBS))
    if unknown:
        raise UserError(f"{where}.{unknown[0]}: unknown knob; allowed: {', '.join(KNOBS)}")
    missing = [k for k in KNOBS if difficulty.get(k) is None]
    if missing:
        raise UserError(f"{where}.{missing[0]}: no value; a generator sets every knob: {', '.join(KNOBS)}")
    d = dict(difficulty)
    _check_int(f"{where}.min_steps", d["min_steps"], 1, 3)
    _check_int(f"{where}.max_steps", d["max_steps"], d["min_steps"], 3)
    _check_int(f"{where}.min_start", d["min_start"], 1, 10**6)
    _check_int(f"{where}.max_start", d["max_start"], d["min_start"], 10**6)
    _check_int(f"{where}.max_operand", d["max_operand"], 1, 10**6)
    _check_int(f"{where}.max_factor", d["max_factor"], 2, 10)
    _check_int(f"{where}.max_result", d["max_result"], d["max_start"], 10**9)
    ops = d["ops"]
    if isinstance(ops, str):
        ops = [ops]
    ops = list(ops)
    if not ops or any(op not in _OPS for op in ops):
        raise UserError(f"{where}.ops: must be a non-empty list of {list(_OPS)}, got {d['ops']!r}")
    d["ops"] = sorted(set(ops), key=_OPS.index)
    if not isinstance(d["comparisons"], bool):
        raise UserError(f"{where}.comparisons: must be true or false, got {d['comparisons']!r}")
    return d


# --------------------------------------------------------------------------
# Generation


def equation_chain(solution: str) -> str:
    """The arithmetic of a worked solution without its wording: the equation
    lines (``23 + 15 = 38; 38 - 7 = 31``), or the start value when there are none."""
    lines = solution.split("\n")
    equations = [line.strip() for line in lines[1:] if "=" in line]
    return "; ".join(equations) if equations else re.findall(r"\d+", lines[0])[-1]


def _in_eval_partition(chain: str) -> bool:
    bucket = int(hashlib.sha256(chain.encode("utf-8")).hexdigest()[:8], 16) % 100
    return bucket < EVAL_PERCENT


def chain_id(chain: str) -> str:
    """A short stable id of an equation chain (the cluster an item belongs to)."""
    return hashlib.sha1(chain.encode("utf-8")).hexdigest()[:12]


def partition_of(chain: str) -> str:
    """``train``, or the eval partition's half the chain falls in: ``dev`` or ``test``."""
    if not _in_eval_partition(chain):
        return "train"
    return "dev" if int(hashlib.sha256(f"dev-test:{chain}".encode()).hexdigest()[:8], 16) % 2 == 0 else "test"


def shared_chains(train_rows: Iterable[Mapping[str, str]], eval_rows: Iterable[Mapping[str, str]]) -> set[str]:
    """Equation chains of ``eval_rows`` that also occur in ``train_rows``
    (empty for arith splits: the partition is by chain)."""
    return {equation_chain(r["solution"]) for r in eval_rows} & {equation_chain(r["solution"]) for r in train_rows}


def _person(rng: random.Random, exclude: str | None = None) -> tuple[str, str, str]:
    while True:
        if rng.random() < 0.5:
            name, pron, obj = rng.choice(NAMES_HE), "he", "him"
        else:
            name, pron, obj = rng.choice(NAMES_SHE), "she", "her"
        if name != exclude:
            return name, pron, obj


def _one_problem(rng: random.Random, d: Mapping[str, Any]) -> dict[str, str]:
    obj = rng.choice(OBJECTS)
    x_name, x_pron, x_obj = _person(rng)
    value = rng.randint(d["min_start"], d["max_start"])
    sentences = [rng.choice(_START).format(X=x_name, a=value, obj=obj)]
    lines = [_SOLUTION_START.format(X=x_name, a=value, obj=obj)]
    n_steps = rng.randint(d["min_steps"], d["max_steps"])
    last_was_cmp = False
    for _ in range(n_steps):
        # pick a feasible operation
        choices = []
        for op in d["ops"]:
            if op == "add" and value + 1 <= d["max_result"]:
                choices.append(op)
            elif op == "sub" and value >= 2:
                choices.append(op)
            elif op == "mul" and value * 2 <= d["max_result"]:
                choices.append(op)
        if not choices:
            break
        op = rng.choice(choices)
        cmp_ = d["comparisons"] and rng.random() < 0.3
        y_name, y_pron, y_obj = _person(rng, exclude=x_name)
        fmt = dict(X=x_name, P=x_pron.capitalize(), p=x_pron, x=x_obj, Y=y_name, obj=obj)
        if op == "add":
            hi = min(d["max_operand"], d["max_result"] - value)
            b = rng.randint(min(2, hi), hi)
            new, line = value + b, f"{value} + {b} = {value + b}"
            template = rng.choice(_CMP_ADD if cmp_ else _ADD)
        elif op == "sub":
            hi = min(d["max_operand"], value - 1)
            b = rng.randint(min(2, hi), hi)
            new, line = value - b, f"{value} - {b} = {value - b}"
            template = rng.choice(_CMP_SUB if cmp_ else _SUB)
        else:
            k_max = min(d["max_factor"], d["max_result"] // value)
            template = rng.choice(_CMP_MUL if cmp_ else _MUL)
            if "twice" in template or "doubles" in template:
                k = 2
            elif "triples" in template:
                if k_max < 3:
                    template, k = (_MUL[0], 2)
                else:
                    k = 3
            else:
                k = rng.randint(2, k_max)
            new, line = value * k, f"{value} * {k} = {value * k}"
            fmt["k"] = k
        sentences.append(template.format(b=b if op != "mul" else "", **fmt))
        lines.append(line)
        value = new
        last_was_cmp = cmp_
        if cmp_:  # the question now follows the other person
            x_name, x_pron, x_obj = y_name, y_pron, y_obj
    question_t = rng.choice(_QUESTION_CMP if last_was_cmp else _QUESTION)
    sentences.append(question_t.format(X=x_name, obj=obj))
    return {"question": " ".join(sentences), "answer": str(value), "solution": "\n".join(lines)}


def generate_problems(n: int, seed: int, *, partition: str | None = None, where: str = "data.generator",
                      **difficulty: Any) -> list[dict[str, str]]:
    """``n`` distinct problems, deterministic in ``seed`` and the knobs.

    ``partition``: ``"train"`` or ``"eval"`` restricts to that part of the
    problem space, ``"dev"`` or ``"test"`` to that half of the eval partition
    (see module docstring); ``None`` draws from all of it. Knobs: all of
    ``KNOBS`` (``where`` names their config section in errors).
    Rows: ``{"question", "answer", "solution", "chain_id"}``.
    """
    if partition not in _PARTITIONS:
        raise UserError(f"partition: must be one of train, eval, dev, test or None, got {partition!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise UserError(f"data.n: must be a non-negative integer, got {n!r}")
    d = _resolve_difficulty(difficulty, where)
    rng = random.Random(f"mathreason-arith:{seed}:{partition}")
    rows: list[dict[str, str]] = []
    seen: set[str] = set()
    attempts, max_attempts = 0, 200 * n + 1000
    while len(rows) < n:
        attempts += 1
        if attempts > max_attempts:
            raise UserError(
                f"data.generator: could only generate {len(rows)} distinct problems of {n}; "
                "widen the number ranges or the number of steps"
            )
        row = _one_problem(rng, d)
        q = row["question"]
        if q in seen:
            continue
        chain = equation_chain(row["solution"])
        part = partition_of(chain)
        if partition is not None and part != partition and not (partition == "eval" and part != "train"):
            continue
        seen.add(q)
        rows.append({**row, "chain_id": chain_id(chain)})
    return rows


def make_split(data_cfg: Mapping[str, Any], split: str) -> list[dict[str, str]]:
    """Rows for ``split`` of the arith dataset: ``train``; ``eval``, the cfg's
    ``eval_split`` (``eval``, the default, is the whole eval partition); or one of
    ``dev``, ``test``, ``ood`` by name (module docstring).

    Reads ``n_train``, ``n_eval``, ``seed`` and the ``generator`` knobs (ood:
    with ``OOD_STEPS`` steps). Train and every eval split come from disjoint
    sets of equation chains.
    """
    generator = data_cfg.get("generator") or {}
    if not isinstance(generator, Mapping):
        raise UserError(f"data.generator: must be a mapping of difficulty knobs, got {generator!r}")
    seed = data_cfg.get("seed")
    seed = 0 if seed is None else seed
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise UserError(f"data.seed: must be an integer, got {seed!r}")
    if split == "train" or split == data_cfg.get("train_split", "train"):
        key, partition = "n_train", "train"
    else:
        name = (data_cfg.get("eval_split") or "eval") if split == "eval" else split
        if name not in EVAL_SPLITS:
            where = "data.eval_split" if split == "eval" else "split"
            raise UserError(f"{where}: the arith generator's eval splits are {', '.join(EVAL_SPLITS)}, got {name!r}")
        key, partition = "n_eval", name
    n = data_cfg.get(key)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise UserError(f"data.{key}: must be a non-negative integer, got {n!r}")
    if partition == "ood":
        generator = {**dict(generator), "min_steps": OOD_STEPS, "max_steps": OOD_STEPS}
        return generate_problems(n, seed, partition="eval", where="data.generator (ood: 3 steps)", **generator)
    return generate_problems(n, seed, partition=partition, **dict(generator))
