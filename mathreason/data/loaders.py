"""Load a dataset split (hub or local JSONL) into the rows every method uses.

Row contract: ``{"prompt": build_prompt(question), "question": str,
"answer": parsed gold str, "answer_format": fmt, "solution": str}``.
Rows whose gold answer cannot be parsed are listed in ``LoadedSplit.skipped``
(never silently scored 0); malformed files raise UserError naming ``file:line``.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mathreason.data.prompts import build_prompt
from mathreason.errors import UserError
from mathreason.records import item_id
from mathreason.scoring.answers import FORMATS, GoldParseError, parse_gold

log = logging.getLogger(__name__)

SPLITS = ("train", "eval")


@dataclass
class LoadedSplit:
    rows: list[dict]
    skipped: list[dict] = field(default_factory=list)  # {"where", "reason", "raw"}
    source: str = ""  # file path or hub id


def load_split(data_cfg: Mapping, split: str) -> LoadedSplit:
    """Rows of the ``train`` or ``eval`` split described by ``data_cfg`` (the ``data`` config)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    limit_key = "max_train" if split == "train" else "max_eval"
    limit = data_cfg.get(limit_key)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise UserError(f"data.{limit_key}: must be a non-negative integer or null (all rows), got {limit!r}")

    if data_cfg.get("name") == "arith":  # the embedded generator: no files, no hub
        from mathreason.data import arith

        problems = arith.make_split(data_cfg, split)  # [{"question", "answer", "solution"}]
        records = ((f"arith:{split}[{i}]", p) for i, p in enumerate(problems))
        fields = _Fields(question="question", answer="answer", solution="solution")
        fmt = _answer_format(data_cfg.get("answer_format") or "number")
        return _build(records, fields, fmt, limit, "arith (embedded generator)", split, "")

    fmt = _answer_format(_required(data_cfg, "answer_format"))
    fields = _Fields(
        question=_required(data_cfg, "question_field"),
        answer=_required(data_cfg, "answer_field"),
        solution=data_cfg.get("solution_field") or None,
    )
    path_key = "train_path" if split == "train" else "path"
    if data_cfg.get(path_key):
        path = Path(str(data_cfg[path_key])).expanduser()
        source = str(path)
        records = _read_jsonl(path, path_key, fields)
    else:
        source, records = _read_hub(data_cfg, split)
    return _build(
        records, fields, fmt, limit, source, split, f", data.{limit_key}={'null' if limit is None else limit}"
    )


def _build(
    records: Iterable[tuple[str, object]],
    fields: _Fields,
    fmt: str,
    limit: int | None,
    source: str,
    split: str,
    hint: str,
) -> LoadedSplit:
    """Rows in the contract from ``(where, record)`` pairs; unparseable golds go to ``skipped``."""
    rows, skipped = [], []
    for where, record in itertools.islice(records, limit):
        fields.check(where, record)
        question = record[fields.question]
        if not isinstance(question, str) or not question.strip():
            raise UserError(f"{where}: field {fields.question!r} must be a non-empty string")
        raw = record[fields.answer]
        try:
            gold = parse_gold(raw, fmt)
        except GoldParseError as e:
            skipped.append({"where": where, "reason": str(e), "raw": raw})
            continue
        solution = record.get(fields.solution) if fields.solution else None
        rows.append(
            {
                "prompt": build_prompt(question),
                "question": question,
                "answer": gold,
                "answer_format": fmt,
                "solution": "" if solution is None else str(solution),
                # the cluster the item belongs to for bootstraps: its equation chain (arith), else itself
                "chain_id": record.get("chain_id") or item_id(question),
            }
        )
    if skipped:
        log.warning("%s: skipped %d rows with unparseable gold answers (first: %s)", source, len(skipped), skipped[0])
    if not rows:
        raise UserError(
            f"{source}: no usable rows for the {split} split ({len(skipped)} skipped with unparseable answers{hint})"
        )
    return LoadedSplit(rows=rows, skipped=skipped, source=source)


@dataclass
class _Fields:
    question: str
    answer: str
    solution: str | None

    def check(self, where: str, record) -> None:
        expected = ", ".join(f for f in (self.question, self.answer, self.solution) if f)
        if not isinstance(record, Mapping):
            raise UserError(f"{where}: expected a JSON object (expected fields: {expected})")
        for name in (self.question, self.answer, self.solution):
            if name and name not in record:
                raise UserError(f"{where}: missing field {name!r} (expected fields: {expected})")


def _answer_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise UserError(f"data.answer_format: {fmt!r} is not one of {', '.join(FORMATS)}")
    return fmt


def _required(data_cfg: Mapping, key: str):
    value = data_cfg.get(key)
    if value is None or value == "":
        raise UserError(f"data.{key}: must be set")
    return value


def _read_jsonl(path: Path, key: str, fields: _Fields) -> Iterator[tuple[str, object]]:
    """``(path:line, record)`` for each non-blank line; raises UserError on bad JSON."""
    if not path.is_file():
        raise UserError(f"data.{key}: file not found: {path} (resolved: {path.resolve()})")
    expected = ", ".join(f for f in (fields.question, fields.answer, fields.solution) if f)

    def records() -> Iterator[tuple[str, object]]:
        with path.open(encoding="utf-8") as f:
            try:
                for lineno, line in enumerate(f, start=1):
                    if not line.strip():
                        continue
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise UserError(
                            f"{path}:{lineno}: invalid JSON ({e.msg} at column {e.colno}) (expected fields: {expected})"
                        ) from None
                    yield f"{path}:{lineno}", record
            except UnicodeDecodeError as e:
                raise UserError(f"{path}: not UTF-8 text ({e.reason})") from None

    return records()


def hub_load_kwargs(data_cfg: Mapping, split: str) -> dict:
    """Keyword arguments for ``datasets.load_dataset`` for the ``train``/``eval`` split."""
    split_key = "train_split" if split == "train" else "eval_split"
    path_key = "train_path" if split == "train" else "path"
    if not data_cfg.get("hub_id"):
        raise UserError(f"data.hub_id: must be set (or set data.{path_key} to a local JSONL file)")
    return {
        "path": str(data_cfg["hub_id"]),
        "name": data_cfg.get("hub_config") or None,
        "split": str(_required(data_cfg, split_key)),
    }


def _read_hub(data_cfg: Mapping, split: str) -> tuple[str, Iterable[tuple[str, object]]]:
    kwargs = hub_load_kwargs(data_cfg, split)
    import datasets

    try:
        dataset = datasets.load_dataset(**kwargs)
    except Exception as e:  # offline, unknown id/config/split: one line for the user
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(
            f"data.hub_id: cannot load {kwargs['path']!r} (config {kwargs['name']!r}, split {kwargs['split']!r}): "
            f"{reason}; set data.path / data.train_path to read a local JSONL file"
        ) from e
    where = f"{kwargs['path']}:{kwargs['split']}"
    return where, ((f"{where}[{i}]", record) for i, record in enumerate(dataset))
