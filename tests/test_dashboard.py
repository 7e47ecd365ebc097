"""mathreason.analysis.dashboard (`python -m mathreason.dashboard`) builds the W&B workspace offline: sections, panels, metric keys."""

from __future__ import annotations

import json
import sys

import pytest

from mathreason.analysis import dashboard
from mathreason.analysis.dashboard import DASHBOARD_KEYS, STEP_AXIS, build_workspace, main, workspace_keys

pytest.importorskip("wandb_workspaces")

COMPONENTS = ("correctness", "strict_format", "soft_format", "integer", "xmlcount")
# The keys our runs log (the run-dir contract; W&B history keys are the same).
# TODO(lead): also check against the keys of a real short run's metrics.jsonl.
LOGGED_KEYS = {
    "train/reward", "train/reward_std", "train/frac_reward_zero_std", "train/completions/mean_length",
    "train/kl", "train/loss", "train/learning_rate",
    *(f"train/rewards/{fn}/mean" for fn in COMPONENTS),
    "train/rewards/chosen", "train/rewards/rejected", "train/rewards/margins", "train/rewards/accuracies",
    "train/wall_clock_s", "train/memory/rss_mb", "train/memory/peak_rss_mb", "train/memory/overall_peak_rss_mb",
    "train/memory/peak_allocated_mb", "train/memory/peak_reserved_mb",
    "train/memory/overall_peak_allocated_mb", "train/memory/overall_peak_reserved_mb",
    "train/cumulative_rollouts", "train/cumulative_generated_tokens",
    "eval/accuracy_strict", "eval/accuracy_lenient", "eval/format_rate", "eval/samples",
    "train/geometry/group_size", "train/geometry/prompts_per_step", "train/geometry/rollouts_per_step",
    "train/geometry/steps",
}


@pytest.fixture(scope="module")
def workspace():
    return build_workspace("my-entity", "mathreason", group="g2_vs_g16")


def panels_of(workspace, section: str) -> list:
    (sec,) = [s for s in workspace.sections if s.name == section]
    return sec.panels


def test_every_key_is_logged_by_our_runs(workspace):
    assert set(DASHBOARD_KEYS) <= LOGGED_KEYS, set(DASHBOARD_KEYS) - LOGGED_KEYS
    assert workspace_keys(workspace) == set(DASHBOARD_KEYS) | {STEP_AXIS}


def test_reward_components_match_the_registry():
    from mathreason.scoring.rewards import REWARD_FUNCS

    assert set(dashboard.REWARD_COMPONENTS) == set(REWARD_FUNCS)


def test_sections_and_panels(workspace):
    import wandb_workspaces.reports.v2 as wr

    assert [s.name for s in workspace.sections] == ["Reward", "Accuracy", "Memory", "DPO"]
    reward = panels_of(workspace, "Reward")
    reward_ys = {y for p in reward for y in p.y}
    assert {"train/reward", *(f"train/rewards/{fn}/mean" for fn in COMPONENTS)} <= reward_ys
    assert all(isinstance(p, wr.LinePlot) and p.x == STEP_AXIS for p in reward)

    accuracy = {(p.x, y) for p in panels_of(workspace, "Accuracy") for y in p.y}
    for x in (STEP_AXIS, "train/cumulative_rollouts", "train/wall_clock_s"):
        assert (x, "eval/accuracy_strict") in accuracy and (x, "eval/accuracy_lenient") in accuracy

    bars = [p for p in panels_of(workspace, "Memory") if isinstance(p, wr.BarPlot)]
    assert {m for p in bars for m in p.metrics} == {
        "train/memory/overall_peak_rss_mb", "train/memory/overall_peak_allocated_mb",
        "train/memory/overall_peak_reserved_mb"}

    dpo_ys = {y for p in panels_of(workspace, "DPO") for y in p.y}
    assert dpo_ys == {"train/rewards/margins", "train/rewards/accuracies", "train/rewards/chosen",
                      "train/rewards/rejected"}
    assert all(p.title for s in workspace.sections for p in s.panels)


def test_grouping_and_group_filter(workspace):
    spec = json.loads(dashboard.workspace_json(workspace))
    (runset,) = spec["spec"]["section"]["runSets"]
    assert [g["name"] for g in runset["grouping"]] == ["method.value", "group_size.value"]
    (flt,) = runset["filters"]["filters"]
    assert flt["key"] == {"section": "run", "name": "group"} and flt["value"] == "g2_vs_g16"
    assert spec["spec"]["section"]["settings"]["xAxis"] == STEP_AXIS
    assert workspace.name == "mathreason: g2_vs_g16"

    plain = build_workspace("e", "p", name="mine")
    assert plain.name == "mine"
    assert not json.loads(dashboard.workspace_json(plain))["spec"]["section"]["runSets"][0]["filters"].get("filters")


def test_dry_run_prints_json(capsys):
    assert main(["--entity", "e", "--project", "p", "--group", "sweep1", "--dry-run"]) == 0
    captured = capsys.readouterr()
    spec = json.loads(captured.out)
    names = [s["name"] for s in spec["spec"]["section"]["panelBankConfig"]["sections"]]
    assert names == ["Reward", "Accuracy", "Memory", "DPO"]
    assert "not saved" in captured.err


def test_module_entry_point_dry_run():
    import subprocess

    out = subprocess.run([sys.executable, "-m", "mathreason.dashboard", "--entity", "e", "--project", "p", "--dry-run"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and json.loads(out.stdout)["spec"], out.stderr[-2000:]


def test_missing_package_is_one_line_exit_2(monkeypatch, capsys):
    for mod in [m for m in sys.modules if m.startswith("wandb_workspaces")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "wandb_workspaces", None)  # makes the import fail
    with pytest.raises(SystemExit) as exc:
        main(["--entity", "e", "--project", "p", "--dry-run"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "pip install 'mathreason[dashboard]'" in err[0]
