"""How errors end: one line on stderr, exit status 2, no traceback.

``HYDRA_FULL_ERROR=1`` (or ``MATHREASON_DEBUG=1``) shows the traceback instead.
In a job on several processes rank 0 prints the line; every rank exits 2.
"""

from __future__ import annotations

import os
import re
import sys


def debug_mode() -> bool:
    return os.environ.get("MATHREASON_DEBUG") == "1"


_UNKNOWN_KEY = re.compile(r"Could not override '([^']+)'|^([\w.]+): unknown key")


def one_line(err: BaseException) -> str:
    """The first meaningful part of an error message, on one line. A
    mistyped key gets the closest existing key, not Hydra's advice to add it."""
    text = str(err).split("Config search path")[0]
    unknown = _UNKNOWN_KEY.search(text)
    if unknown:
        key = unknown[1] or unknown[2]
        from mathreason.config.schema import known_keys, suggest_key

        known = key in known_keys()
        return f"{key}: {'not in this composition' if known else 'unknown key'}{suggest_key(key)}"
    text = re.sub(r"\s*\n\s*", "; ", text.strip())
    text = re.sub(r"(; )+", "; ", text).replace("\t", " ")
    text = " ".join(text.split()).replace(":; ", ": ").rstrip(";")
    return text or type(err).__name__


def end_bar_line() -> None:
    tqdm = sys.modules.get("tqdm")
    if tqdm is not None and getattr(tqdm.tqdm, "_instances", None):
        sys.stderr.write("\n")  # end an open progress bar's line first


def fail(err: BaseException) -> None:
    """Report a user error in one line and exit 2 (raise it in debug mode)."""
    from mathreason.processes import is_main

    if debug_mode():
        raise err
    if is_main():  # a job on several processes: rank 0 says it once
        end_bar_line()
        sys.stderr.write(f"error: {one_line(err)}\n")
        sys.stderr.flush()
    from mathreason.errors import UserError

    raise SystemExit(UserError.exit_code)
