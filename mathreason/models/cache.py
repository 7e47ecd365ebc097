"""Build products cached under the cache dir (the tiny model, converted GGUF weights): built once,
under a file lock, into a temporary directory that is moved into place whole, so a crashed or
concurrent build never leaves a half-written model where a run would load it."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (created with its parents), held for the block."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def build_once(cache_dir: str | Path, key: str, marker: str, build: Callable[[Path, Path], dict[str, Any]]) -> Path:
    """``cache_dir/key``, complete when it holds ``marker``. The first caller runs
    ``build(out_dir, work_dir)``, which writes the model into ``out_dir`` (scratch space in
    ``work_dir``) and returns the facts written to the marker; concurrent callers wait on the lock
    and reuse that build."""
    cache_dir = Path(cache_dir).expanduser()
    final = cache_dir / key
    if (final / marker).is_file():
        return final
    with file_lock(cache_dir / f".{key}.lock"):
        if (final / marker).is_file():  # built by another process while we waited
            return final
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.tmp-", dir=cache_dir))
        try:
            out = tmp / "model"
            facts = build(out, tmp)
            (out / marker).write_text(json.dumps(facts, indent=2, sort_keys=True))
            if final.exists():  # an incomplete leftover (a crashed build)
                shutil.rmtree(final)
            os.replace(out, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final
