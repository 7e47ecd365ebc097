"""``python -m mathreason.report <sweep or run dirs…> [--out DIR]``: a thin CLI
over :mod:`mathreason.analysis` (imported on call, so importing this module
pulls in neither pandas nor torch)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from mathreason.analysis.report import main as report_main

    return report_main(argv)


if __name__ == "__main__":
    sys.exit(main())
