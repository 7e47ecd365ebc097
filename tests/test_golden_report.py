"""The report of a short real sweep (tests/fixtures/golden_sweep: 2-GRPO and 16-GRPO x 2 seeds, 2
steps each, and a baseline, on the embedded default; run dirs without weights) is unchanged byte
for byte: tables, per-run and per-item records. Refactors of the records, the run dir or the
analysis must keep it so; a deliberate change of the report regenerates the expected files with
`python tests/test_golden_report.py` and says why in its commit."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT

FIXTURE = "tests/fixtures/golden_sweep"  # relative: the report quotes the path it was given
EXPECTED = ROOT / "tests" / "fixtures" / "golden_report"
TEXT_OUTPUTS = ("results.md", "results.csv", "runs.csv", "comparisons.csv", "factors.csv")


def build(out: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "mathreason.report", FIXTURE, "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("golden") / "report"
    build(out)
    return out


@pytest.mark.parametrize("name", TEXT_OUTPUTS)
def test_each_table_is_unchanged(report, name):
    assert (report / name).read_bytes() == (EXPECTED / name).read_bytes()


def test_the_per_item_records_are_unchanged(report):
    assert gzip.decompress((report / "items.csv.gz").read_bytes()) == (EXPECTED / "items.csv").read_bytes()


if __name__ == "__main__":  # regenerate the expected files
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        build(Path(tmp) / "report")
        for name in TEXT_OUTPUTS:
            shutil.copy(Path(tmp) / "report" / name, EXPECTED / name)
        (EXPECTED / "items.csv").write_bytes(gzip.decompress((Path(tmp) / "report" / "items.csv.gz").read_bytes()))
