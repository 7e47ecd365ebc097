"""The two file primitives every record uses: an atomic write (a reader sees the old file or the
new one, never half of one) and one JSONL reader (readers never write)."""

from __future__ import annotations

import json
import os
from pathlib import Path


def write_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same directory and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def numbered_jsonl(path: str | Path, *, torn_tail_ok: bool = False,
                   error: type[Exception] = ValueError) -> list[tuple[int, dict]]:
    """``(line number, record)`` of each record of a JSONL file (blank lines skipped). A line that
    is not JSON raises ``error`` naming ``path:line``; with ``torn_tail_ok``, a last line cut off
    mid-write (a run killed while logging) is left out instead. Never writes: repairing a torn tail
    is the run's own job when it resumes (telemetry.MetricsFile.repair)."""
    path = Path(path)
    lines = [(n, line) for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1) if line.strip()]
    out = []
    for number, line in lines:
        try:
            out.append((number, json.loads(line)))
        except ValueError as err:
            if torn_tail_ok and number == lines[-1][0]:
                break
            raise error(f"{path}:{number}: not a JSON record ({getattr(err, 'msg', err)})") from None
    return out


def read_jsonl(path: str | Path, *, torn_tail_ok: bool = False, error: type[Exception] = ValueError) -> list[dict]:
    """The records of a JSONL file; see ``numbered_jsonl``."""
    return [record for _, record in numbered_jsonl(path, torn_tail_ok=torn_tail_ok, error=error)]
