"""A saved W&B workspace for mathreason runs (``wandb-workspaces``).

``python -m mathreason.dashboard --entity E --project P [--group SWEEP] [--name NAME] [--dry-run]``

Sections: Reward, Accuracy (vs step, rollouts, wall-clock), Memory, DPO. Runs
are grouped by ``method`` and ``group_size`` (config keys) and,
with ``--group``, filtered to one W&B group (= the sweep's ``experiment_name``).
``--dry-run`` prints the workspace's JSON instead of saving it (saving needs the
network and ``wandb login``). ``wandb_workspaces`` is imported only when a
workspace is built: ``pip install 'mathreason[dashboard]'``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mathreason import records as R
from mathreason.errors import UserError
from mathreason.one_line import fail
from mathreason.scoring.rewards import REWARD_FUNCS

STEP_AXIS = R.STEP_AXIS  # transformers' WandbCallback logs every record against it
REWARD_COMPONENTS = tuple(REWARD_FUNCS)  # the reward registry (scoring/rewards.py), built-ins first
GROUP_BY = ("method", "group_size")

_X_TITLES = {STEP_AXIS: "step", R.ROLLOUTS: "cumulative rollouts", R.WALL: "wall-clock (s)"}

# (section, open?, panels); a panel is ("line", title, x, [y, ...]) or ("bar", title, [metric, ...]).
LAYOUT: list[tuple[str, bool, list[tuple]]] = [
    ("Reward", True, [
        ("line", "Reward (weighted sum)", STEP_AXIS, [R.REWARD]),
        *(("line", f"Reward: {fn}", STEP_AXIS, [R.reward_key(fn)]) for fn in REWARD_COMPONENTS),
        ("line", "Reward std within groups", STEP_AXIS, [f"{R.REWARD}_std"]),
        ("line", "Fraction of groups with zero reward std", STEP_AXIS, [R.ZERO_SIGNAL]),
    ]),
    ("Accuracy", True, [
        ("line", f"{kind.capitalize()} accuracy vs {_X_TITLES[x]}", x, [key])
        for x in (STEP_AXIS, R.ROLLOUTS, R.WALL) for kind, key in (("strict", R.STRICT), ("lenient", R.LENIENT))
    ] + [("line", "Format rate vs step", STEP_AXIS, [R.FORMAT_RATE])]),
    ("Memory", False, [
        ("bar", "Peak RSS per run (CPU, MB)", [R.OVERALL_PEAK_KEYS[0]]),
        ("bar", "Peak allocated per run (GPU, MB)", [R.OVERALL_PEAK_KEYS[2]]),
        ("bar", "Peak reserved per run (GPU, MB)", [R.OVERALL_PEAK_KEYS[1]]),
        ("line", "Peak memory per logging interval (MB)", STEP_AXIS,
         list(R.INTERVAL_PEAK_KEYS)),
    ]),
    ("DPO", False, [
        ("line", "DPO reward margin (chosen - rejected)", STEP_AXIS, [R.DPO_KEYS[0]]),
        ("line", "DPO preference accuracy", STEP_AXIS, [R.DPO_KEYS[1]]),
        ("line", "DPO implicit rewards: chosen vs rejected", STEP_AXIS, list(R.DPO_KEYS[2:])),
    ]),
]


def _panel_keys(panel: tuple) -> list[str]:
    if panel[0] == "line":
        return [panel[2], *panel[3]]
    return list(panel[2])


# Every metric key the workspace uses (x and y), except the W&B step axis
# STEP_AXIS, which metrics.jsonl stores as "step".
DASHBOARD_KEYS: tuple[str, ...] = tuple(dict.fromkeys(
    key for _, _, panels in LAYOUT for panel in panels for key in _panel_keys(panel) if key != STEP_AXIS
))
SECTIONS: tuple[str, ...] = tuple(name for name, _, _ in LAYOUT)


def _import_workspaces():
    try:
        import wandb_workspaces.reports.v2 as wr
        import wandb_workspaces.workspaces as ws
    except ImportError as err:
        raise UserError(
            f"the dashboard needs wandb-workspaces ({err}); install it with: pip install 'mathreason[dashboard]'"
        ) from err
    return ws, wr


def build_workspace(entity: str, project: str, group: str | None = None, name: str | None = None) -> Any:
    """The workspace (a ``wandb_workspaces.workspaces.Workspace``), not saved."""
    ws, wr = _import_workspaces()
    sections = []
    for section_name, is_open, panels in LAYOUT:
        built = []
        for panel in panels:
            if panel[0] == "line":
                _, title, x, ys = panel
                built.append(wr.LinePlot(
                    title=title, x=x, y=list(ys), title_x=_X_TITLES.get(x, x),
                    title_y=ys[0] if len(ys) == 1 else None,
                    groupby_aggfunc="mean", groupby_rangefunc="minmax", max_runs_to_show=100,
                ))
            else:
                _, title, metrics = panel
                built.append(wr.BarPlot(title=title, metrics=list(metrics), orientation="h", max_runs_to_show=100))
        sections.append(ws.Section(
            name=section_name, panels=built, is_open=is_open,
            panel_settings=ws.SectionPanelSettings(x_axis=STEP_AXIS),
        ))
    runset = ws.RunsetSettings(
        groupby=[ws.Config(key) for key in GROUP_BY],
        filters=[ws.Metric("Group") == group] if group else "",
    )
    return ws.Workspace(
        entity=entity,
        project=project,
        name=name or (f"mathreason: {group}" if group else "mathreason"),
        sections=sections,
        settings=ws.WorkspaceSettings(x_axis=STEP_AXIS, max_runs=100),
        runset_settings=runset,
    )


def workspace_keys(workspace: Any) -> set[str]:
    """The metric keys (x and y) the workspace's panels use."""
    keys: set[str] = set()
    for section in workspace.sections:
        for panel in section.panels:
            for attr in ("x", "y", "metrics"):
                value = getattr(panel, attr, None)
                if value is None:
                    continue
                keys.update(str(getattr(v, "name", v)) for v in (value if isinstance(value, list) else [value]))
    return keys


def workspace_json(workspace: Any) -> str:
    return workspace._to_model().model_dump_json(by_alias=True, exclude_none=True, indent=2)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m mathreason.dashboard",
                                     description="Build (and save) a W&B workspace for mathreason runs.")
    parser.add_argument("--entity", required=True, help="W&B entity (user or team)")
    parser.add_argument("--project", required=True, help="W&B project")
    parser.add_argument("--group", default=None, help="only runs of this W&B group (a sweep's experiment_name)")
    parser.add_argument("--name", default=None, help="workspace name (default: 'mathreason[: GROUP]')")
    parser.add_argument("--dry-run", action="store_true", help="print the workspace JSON instead of saving it")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        workspace = build_workspace(args.entity, args.project, args.group, args.name)
        if args.dry_run:
            print(workspace_json(workspace))
            n_panels = sum(len(s.panels) for s in workspace.sections)
            print(f"dry run: workspace '{workspace.name}' for {args.entity}/{args.project} with "
                  f"{len(workspace.sections)} sections, {n_panels} panels (not saved)", file=sys.stderr)
            return 0
        try:
            workspace.save()
        except Exception as err:  # network, login, permissions: all one line
            raise UserError(
                f"could not save the workspace to {args.entity}/{args.project}: {type(err).__name__}: {err} "
                "(saving needs the network and `wandb login`; --dry-run prints it instead)"
            ) from err
    except UserError as err:
        fail(err)
    try:
        print(f"saved workspace '{workspace.name}': {workspace.url}")
    except Exception:
        print(f"saved workspace '{workspace.name}' in {args.entity}/{args.project}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
