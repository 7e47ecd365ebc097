"""A non-editable install ships its configs: `pip install .` into a fresh venv,
then the documented commands work from an unrelated directory."""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv

import pytest
from helpers import ROOT


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    root = tmp_path_factory.mktemp("pkg")
    env_dir = root / "venv"
    # the venv sees this machine's packages (torch, trl, ...) but gets its own,
    # non-editable copy of mathreason, built from a copy of the tree
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    src = root / "src"  # the build writes build/ and *.egg-info: not into the checkout
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", "outputs", "multirun", ".cache", "build",
                                                             "*.egg-info", "__pycache__", "docs", "wandb"))
    out = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps",
                          "--no-build-isolation", "--no-cache-dir", "-q", str(src)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    return py, elsewhere


def test_installed_package_is_not_the_checkout(installed):
    py, cwd = installed
    where = subprocess.run([str(py), "-c", "import mathreason; print(mathreason.__file__)"], cwd=cwd,
                           capture_output=True, text=True, timeout=120).stdout.strip()
    assert where.startswith(str(py.parents[1])), where


def test_cfg_job_from_an_unrelated_directory(installed):
    py, cwd = installed
    out = subprocess.run([str(py), "-m", "mathreason.run", "method=grpo", "group_size=2", "--cfg", "job"], cwd=cwd,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "group_size: 2\n" in out.stdout and "method: grpo\n" in out.stdout


def test_installed_console_command_matches_python_m(installed):
    py, cwd = installed
    command = py.parent / "mathreason"
    out = subprocess.run([str(command), "model=smollm2-135m-instruct", "--cfg", "job"], cwd=cwd,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "name: smollm2-135m-instruct" in out.stdout
    assert "Primary config module" not in out.stderr


def test_the_readme_is_read_in_five_minutes():
    """A newcomer's page: short, both set-up commands on the first screen, no issue
    numbers; narratives, measurements and the changelog live beside it."""
    import re

    root = ROOT
    lines = (root / "README.md").read_text().splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines (link to docs/ instead)"
    first_screen = "\n".join(lines[:40])
    assert "make install run" in first_screen and "make install test" in first_screen
    assert not re.search(r"\bissues? #?\d+|#\d+\b", "\n".join(lines), re.IGNORECASE)
    assert (root / "CHANGELOG.md").is_file() and any((root / "docs" / "experiments").glob("*.md"))
    for link in re.findall(r"\]\(([^)#]+)\)", "\n".join(lines)):  # every relative link resolves
        if not link.startswith("http"):
            assert (root / link).exists(), link
