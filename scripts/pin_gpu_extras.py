"""Write constraints/<extra>.txt: the versions `pip install 'mathreason[<extra>]'` resolves to on top of
this install (pip's own resolver, --dry-run --report; nothing is installed). `make constraints`."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import tomllib
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXTRAS = ("unsloth", "vllm")
# what the suite's behaviour depends on; CI runs the fast suite against the unsloth set of these
WATCHED = ("trl", "transformers", "datasets", "huggingface-hub", "peft", "accelerate")


def resolve(requirements: list[str]) -> dict[str, str]:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--report", str(report),
                        *requirements], check=True)
        installs = json.loads(report.read_text())["install"]
    return {i["metadata"]["name"].lower().replace("_", "-"): i["metadata"]["version"] for i in installs}


def write(extra: str, pins: dict[str, str]) -> None:
    lines = [f"# What `pip install 'mathreason[{extra}]'` resolved to on top of the CPU install "
             f"(scripts/pin_gpu_extras.py, {date.today()}): pip install -e '.[{extra}]' -c constraints/{extra}.txt",
             "# gets the same set. Packages already installed at a fitting version are not listed. "
             "Regenerate: make constraints"]
    lines += [f"{name}=={version}" for name, version in sorted(pins.items())]
    (ROOT / "constraints" / f"{extra}.txt").write_text("\n".join(lines) + "\n")
    print(f"constraints/{extra}.txt: {len(pins)} pins; " +
          ", ".join(f"{n} {pins[n]}" for n in WATCHED if n in pins))


def main() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for extra in EXTRAS:
        write(extra, resolve(extras[extra]))


if __name__ == "__main__":
    main()
