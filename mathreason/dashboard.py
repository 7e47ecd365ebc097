"""``python -m mathreason.dashboard``: the W&B workspace builder, now
:mod:`mathreason.analysis.dashboard` (kept here as the command's entry point)."""

from __future__ import annotations

import sys

from mathreason.analysis.dashboard import main

if __name__ == "__main__":
    sys.exit(main())
