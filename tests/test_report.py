"""The report (mathreason.report -> mathreason.analysis) on synthetic run
directories that follow the run-dir contract in mathreason.records."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from mathreason import records
from mathreason.analysis import report as analysis
from mathreason.analysis.runs import group_arms, items_frame, load_runs, rewarded_false_equation
from mathreason.report import main
from mathreason.scoring.rewards import REWARD_FUNCS

COMPONENTS = tuple(REWARD_FUNCS)
N_ITEMS = 40


def write_eval(run_dir: Path, step: int, acc: float, shift: int = 0, samples: int = 0) -> None:
    """Items q0..q39; the first round(acc * N) (rotated by ``shift``) are correct."""
    n_ok = round(acc * N_ITEMS)
    lines = []
    for i in range(N_ITEMS):
        ok = (i - shift) % N_ITEMS < n_ok
        rec = {"item_id": records.item_id(f"q{i}"), "question": f"q{i}", "gold": "1", "completion": "",
               "extracted": "1" if ok else None, "extracted_lenient": "1", "correct": ok, "correct_lenient": True,
               "format": ok}
        if samples:
            rec["samples_correct"] = [ok] * (samples - 1) + [False]
        lines.append(json.dumps(rec))
    path = records.eval_file(run_dir, step)
    path.parent.mkdir(exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def make_run(root: Path, name: str, *, method: str = "grpo", seed: int = 0, group_size: int = 16,
             reward: str = "seed", evals: dict[int, float] | None = None, wall: float = 100.0,
             rollouts_per_step: int = 64, status: str = "done", peak_mb: float = 1000.0,
             extra_config: dict | None = None, model: str = "tiny", data: str = "arith", items: bool = True,
             shift: int = 0, samples: int = 0) -> Path:
    """A run dir: run.json, metrics.jsonl (one record per step 0..last eval step) and
    eval/step_*.jsonl. ``evals`` maps eval step -> strict accuracy (lenient = strict + 0.1)."""
    run_dir = root / name
    run_dir.mkdir(parents=True)
    config = {
        "seed": seed, "method": method, "model": {"name": model}, "data": {"name": data, "seed": seed},
        "reward": {"name": reward, "functions": {c: 1.0 for c in COMPONENTS}},
        "group_size": {"num_generations": group_size},
        "geometry": {"hold": "rollouts", "rollouts_per_step": rollouts_per_step},
        **({"grpo": {"beta": 0.0}} if method == "grpo" else {"dpo": {"beta": 0.1}} if method == "dpo" else {}),
        **(extra_config or {}),
    }
    state = {"status": status, "method": method, "overrides": [f"method={method}", f"seed={seed}"],
             "config": config, "summary": {}, "started": 1000.0, "finished": 1000.0 + wall}
    if status == "failed":
        state["error"] = "UserError: out of memory"
    (run_dir / records.STATE_FILE).write_text(json.dumps(state))
    evals = evals or {0: 0.2}
    last = max(evals)
    lines = []
    for step in range(last + 1):
        frac = step / last if last else 1.0
        rec: dict = {"step": step, records.WALL: wall * frac, "train/memory/rss_mb": peak_mb * 0.8,
                     "train/memory/overall_peak_rss_mb": peak_mb * (0.9 + 0.1 * frac)}
        if method == "grpo":
            rec.update({records.REWARD: 1.0 + frac, "train/loss": 0.01, records.ROLLOUTS: step * rollouts_per_step})
            rec.update({records.reward_key(c): frac * (i + 1) / 5 for i, c in enumerate(COMPONENTS)})
        elif method == "dpo":
            rec.update(dict(zip(records.DPO_KEYS, (0.2 * frac, 0.5 + 0.4 * frac, 0.1 * frac, -0.1 * frac))))
            rec[records.ROLLOUTS] = 256
        if step == 0 and method in ("grpo", "dpo"):  # SFT and eval runs sample no rollouts
            rec.update({records.GROUP_SIZE: group_size, records.ROLLOUTS_PER_STEP: rollouts_per_step})
        if step in evals:
            rec.update({records.STRICT: evals[step], records.LENIENT: evals[step] + 0.1, records.FORMAT_RATE: 0.9})
            if items:
                write_eval(run_dir, step, evals[step], shift, samples)
        lines.append(json.dumps(rec))
    (run_dir / records.METRICS_FILE).write_text("\n".join(lines) + "\n")
    return run_dir


G2 = {0: {0: 0.20, 10: 0.40, 20: 0.55, 30: 0.60}, 1: {0: 0.20, 10: 0.30, 20: 0.50, 30: 0.50}}
G16 = {0: {0: 0.20, 10: 0.60, 20: 0.625, 30: 0.625}, 1: {0: 0.20, 10: 0.25, 20: 0.575, 30: 0.575}}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """2 GRPO arms x 2 seeds, a baseline eval run, a DPO run that loses accuracy,
    an unfinished run, a failed run and a failures.json entry without a run dir."""
    root = tmp_path_factory.mktemp("sweeps") / "g2_vs_g16"
    root.mkdir()
    make_run(root, "method=eval", method="eval", evals={0: 0.20}, wall=20, peak_mb=500)
    for seed in (0, 1):
        make_run(root, f"group_size=2,seed={seed}", group_size=2, seed=seed, evals=G2[seed],
                 wall=100 + 10 * seed, rollouts_per_step=64, peak_mb=800, samples=4)
        make_run(root / "nested", f"group_size=16,seed={seed}", group_size=16, seed=seed, evals=G16[seed],
                 wall=400 + 40 * seed, rollouts_per_step=128, peak_mb=1200)
    make_run(root, "method=dpo", method="dpo", evals={0: 0.20, 5: 0.15, 10: 0.15}, wall=50)
    make_run(root, "group_size=4", group_size=4, status="running", evals={0: 0.2, 10: 0.9})
    make_run(root, "group_size=8", group_size=8, status="failed", evals={0: 0.2})
    (root / records.FAILURES_FILE).write_text(json.dumps([
        {"num": 7, "status": "no result", "overrides": ["group_size=32"], "error": "killed"}]))
    return root


@pytest.fixture(scope="module")
def cli_run(sweep, tmp_path_factory):
    """The CLI once on the sweep: (stdout, stderr, out dir, Report built the same way)."""
    out = tmp_path_factory.mktemp("report")
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        assert main([str(sweep), "--out", str(out), "--resamples", "500"]) == 0
    return stdout.getvalue(), stderr.getvalue(), out


@pytest.fixture(scope="module")
def rep(sweep, tmp_path_factory):
    return analysis.build_report([sweep], tmp_path_factory.mktemp("rep"), n_resamples=500, warn=lambda m: None)


def test_arms_values_and_paired_gains(rep):
    arms = {a.label: a for a in rep.arms}
    assert list(arms) == ["baseline", "grpo G=2", "grpo G=16", "dpo"]
    g2, g16, base, dpo = arms["grpo G=2"], arms["grpo G=16"], arms["baseline"], arms["dpo"]
    assert base.source == "eval run" and base.stats["strict"].mean == pytest.approx(0.20)
    assert g2.seeds == [0, 1] and g2.stats["strict"].mean == pytest.approx(0.55)
    assert g2.stats["lenient"].mean == pytest.approx(1.0) and g2.stats["sampled"].mean == pytest.approx(0.55 * 0.75)
    assert g2.stats["pass"].mean == pytest.approx(0.55)  # 3 of 4 samples right on the greedy-right items, none elsewhere
    assert "pass" not in g16.stats  # no samples
    gain = g2.stats["gain"]  # paired per seed and item against each run's own step 0
    assert gain.mean == pytest.approx(0.35) and gain.n_seeds == 2 and gain.n_items == N_ITEMS
    assert gain.ci_low <= 0.35 <= gain.ci_high and gain.ci_low > 0 and gain.p < 0.01
    assert g16.stats["gain"].mean == pytest.approx(0.40)
    assert dpo.stats["gain"].mean == pytest.approx(-0.05) and dpo.stats["gain"].ci_high <= 0
    # rollouts to 90% of the gain: G2 mean curve 0.2, 0.35, 0.525, 0.55 -> target 0.515 at step 20 (64/step)
    assert g2.stats["reach"].mean == 20 * 64
    assert g16.stats["reach"].mean == 20 * 128  # 0.2, 0.425, 0.6, 0.6 -> target 0.56
    assert "reach" not in base.stats
    # the same eval as steps; a CI end is an eval's step (the resolution is the eval interval)
    assert g2.stats["reach_steps"].mean == 20 and g16.stats["reach_steps"].mean == 20
    evals = set(G2[0]) | set(G16[0])
    assert {g2.stats["reach_steps"].ci_low, g2.stats["reach_steps"].ci_high} <= evals
    assert g2.stats["reach"].ci_low == 64 * g2.stats["reach_steps"].ci_low
    row = rep.table.set_index("arm").loc["grpo G=16"]
    assert row["wall_clock_s"] == pytest.approx(420) and row["total_rollouts"] == 30 * 128
    assert row["peak_memory_mb"] == pytest.approx(1200) and row["memory_keys"] == "train/memory/overall_peak_rss_mb"


def test_comparisons_ratio_and_findings(rep):
    comps = rep.comparisons.set_index("comparison")
    assert set(comps.index) >= {"grpo G=2 − its step-0 eval", "grpo G=2 − grpo G=16", "grpo G=16 − dpo"}
    d = comps.loc["grpo G=2 − grpo G=16"]
    assert d["diff_pp"] == pytest.approx(-5.0) and d["n_seeds"] == 2 and d["ci_low_pp"] < 0
    (ratio,) = rep.ratios
    assert ratio["gain_ratio"].mean == pytest.approx(0.35 / 0.40)
    assert ratio["wall_clock_s"] == pytest.approx(105 / 420) and ratio["total_rollouts"] == pytest.approx(0.5)
    text = "\n".join(rep.findings)
    assert "grpo G=2 − its step-0 eval: +35.0 pp, 95% CI [" in text and "the CI excludes 0" in text
    assert "gain ratio (grpo G=2 / grpo G=16): 0.88, 95% CI [" in text


def test_files(rep, cli_run):
    out = cli_run[2]
    text = (out / "results.md").read_text()
    for heading in ("## Paired differences", "## What this shows", "## What it does not show", "## Runs left out"):
        assert heading in text
    assert "| grpo G=2" in text and "rollouts to 90% of gain" in text
    rows = pd.read_csv(out / "results.csv").set_index("arm")
    assert set(rows.index) == {"baseline", "grpo G=2", "grpo G=16", "dpo"}
    assert rows.at["grpo G=2", "strict_mean"] == pytest.approx(0.55) and rows.at["grpo G=2", "n_items"] == N_ITEMS
    assert len(pd.read_csv(out / "comparisons.csv")) == len(rep.comparisons)
    assert len(pd.read_csv(out / "runs.csv")) == 6


def test_items_csv_recomputes_the_numbers(cli_run):
    items = pd.read_csv(cli_run[2] / "items.csv.gz")
    assert {"arm", "seed", "phase", "item_id", "correct", "sampled"} <= set(items.columns)
    assert set(items["phase"]) == {"baseline", "train", "final"}
    assert items.groupby(["arm", "seed", "phase", "step"]).size().eq(N_ITEMS).all()
    final = items[items["phase"] == "final"].groupby("arm")["correct"].mean()
    assert final["grpo G=2"] == pytest.approx(0.55) and final["dpo"] == pytest.approx(0.15)
    assert items.loc[items["arm"] == "grpo G=2", "sampled"].notna().all()
    assert items.loc[items["arm"] == "grpo G=16", "sampled"].isna().all()


def test_pngs_are_valid_images(cli_run):
    import matplotlib.image as mpimg

    stdout, _, out = cli_run[:3]
    for name in ("accuracy_vs_step", "accuracy_vs_rollouts", "accuracy_vs_wallclock", "forest",
                 "reward_components", "dpo_margins"):
        assert f"wrote {out / name}.png" in stdout
        img = mpimg.imread(out / f"{name}.png")
        assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 300, name
        assert img.std() > 0.01, f"{name} looks blank"


def test_failed_and_skipped_runs_are_listed(cli_run):
    stdout, stderr, out = cli_run
    text = (out / "results.md").read_text()
    assert "group_size=4`: status=running" in text
    assert "group_size=8`: status=failed (UserError: out of memory)" in text
    assert "job 7 (group_size=32)`: no result: killed" in text
    assert "left out: " in stdout and stderr.count("warning: skipping") == 2


def test_step0_baseline_reward_split_and_other_keys(tmp_path):
    """No eval run: the baseline is the training runs' step-0 evals; arms split by
    reward preset and by any other differing config key, never by seed."""
    for seed in (0, 1):
        make_run(tmp_path, f"c{seed}", seed=seed, reward="correctness", evals={0: 0.1, 10: 0.3})
        make_run(tmp_path, f"s{seed}", seed=seed, reward="seed", evals={0: 0.1, 10: 0.4})
        make_run(tmp_path, f"lr{seed}", seed=seed, reward="seed", evals={0: 0.1, 10: 0.2},
                 extra_config={"grpo": {"beta": 0.0, "learning_rate": 1e-6}})
    runs, skipped = load_runs([tmp_path])
    arms = group_arms(runs)
    table, _ = analysis.arm_table(arms, items_frame(arms), n_resamples=200)
    labels = {a.label: a for a in arms}
    assert set(labels) == {"baseline (step 0)", "grpo G=16 (correctness)", "grpo G=16 (seed; no grpo.learning_rate)",
                           "grpo G=16 (seed; grpo.learning_rate=1e-06)"} and skipped == []
    base = labels["baseline (step 0)"]
    assert base.seeds == [0, 1] and base.stats["strict"].mean == pytest.approx(0.1)
    assert pd.isna(table.set_index("arm").at["baseline (step 0)", "wall_clock_s"])
    assert labels["grpo G=16 (correctness)"].stats["gain"].mean == pytest.approx(0.2)


def test_default_out_dir_and_defensive_records(tmp_path):
    """A torn last metrics line and a run without eval files (seed-level values) still report."""
    run = make_run(tmp_path, "a", evals={0: 0.2, 4: 0.3})
    with (run / records.METRICS_FILE).open("a") as fh:
        fh.write('{"step": 5, "train/rew')
    make_run(tmp_path, "b", seed=1, group_size=2, evals={0: 0.2, 4: 0.4}, items=False)
    with contextlib.redirect_stdout(io.StringIO()):
        assert main([str(tmp_path), "--resamples", "100"]) == 0
    rows = pd.read_csv(tmp_path / "report" / "results.csv").set_index("arm")
    assert rows.at["grpo G=2", "strict_mean"] == pytest.approx(0.4) and rows.at["grpo G=2", "n_items"] == 0
    assert (tmp_path / "report" / "accuracy_vs_step.png").exists()
    assert not (tmp_path / "report" / "dpo_margins.png").exists()


@pytest.mark.parametrize("setup", ["missing", "empty", "unfinished"])
def test_exit_2_without_runs(tmp_path, capsys, setup):
    path = tmp_path / "nothing"
    if setup != "missing":
        path.mkdir()
    if setup == "unfinished":
        make_run(path, "r", status="failed")
    with pytest.raises(SystemExit) as exc:
        main([str(path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and str(path) in err[-1]


@pytest.mark.parametrize("damage, named", [
    ("no_state", "no run.json"), ("no_metrics", "no metrics.jsonl"), ("no_seed", "no 'config.seed' key"),
    ("no_strict", "no 'eval/accuracy_strict' key"), ("no_correct", "no 'correct' key")])
def test_partial_run_dir_fails_with_one_line(tmp_path, capsys, damage, named):
    run = make_run(tmp_path, "old", evals={0: 0.2, 2: 0.3})
    if damage == "no_state":
        (run / records.STATE_FILE).unlink()
        (run / records.METRICS_FILE).rename(run / "kept.jsonl")  # nothing left that looks like a run
        with pytest.raises(records.RunDirError, match=named):
            records.read_run_record(run)
        return
    if damage == "no_metrics":
        (run / records.METRICS_FILE).unlink()
    elif damage == "no_seed":
        state = json.loads((run / records.STATE_FILE).read_text())
        del state["config"]["seed"]
        (run / records.STATE_FILE).write_text(json.dumps(state))
    elif damage == "no_strict":
        (run / records.METRICS_FILE).write_text('{"step": 0, "train/loss": 1.0}\n')
    else:
        path = records.eval_file(run, 2)
        path.write_text(path.read_text().replace('"correct": ', '"right": '))
    with pytest.raises(SystemExit) as exc:
        main([str(run), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and err[-1].startswith("error: ") and named in err[-1], err


def test_bad_gain_frac(sweep, capsys):
    with pytest.raises(SystemExit) as exc:
        main([str(sweep), "--gain-frac", "1.5"])
    assert exc.value.code == 2 and "--gain-frac" in capsys.readouterr().err


def test_report_imports_no_torch():
    code = ("import sys, mathreason.report, mathreason.records, mathreason.dashboard; "
            "assert 'torch' not in sys.modules and 'pandas' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_eval_records_without_item_ids(tmp_path):
    """Eval files written before item ids: the id is derived from the question; a repeated question gets '#2'."""
    path = tmp_path / "step_000000.jsonl"
    path.write_text("".join(json.dumps({"question": q, "correct": ok}) + "\n" for q, ok in
                            (("a", True), ("b", False), ("a", False))))
    ids = [r["item_id"] for r in records.read_eval(path)]
    assert ids == [records.item_id("a"), records.item_id("b"), records.item_id("a") + "#2"]


def test_each_2grpo_arm_gets_its_gain_ratio_and_the_error_taxonomy_is_tabled(tmp_path):
    """Two G=2 arms (lr scaled or not) are each compared with the one G=16 arm;
    items that carry an error kind give the taxonomy table (shares per arm and phase)."""
    root = tmp_path / "sweep"
    for seed in (0, 1):
        for scaled in (True, False):
            make_run(root, f"g2,scale={scaled},seed={seed}", group_size=2, seed=seed, evals=G2[seed],
                     extra_config={"geometry": {"hold": "rollouts", "rollouts_per_step": 64, "scale_lr": scaled}})
        make_run(root, f"g16,seed={seed}", group_size=16, seed=seed, evals=G16[seed],
                 extra_config={"geometry": {"hold": "rollouts", "rollouts_per_step": 64, "scale_lr": True}})
    for path in root.glob("*/eval/*.jsonl"):
        recs = [json.loads(line) for line in path.read_text().splitlines()]
        for n, rec in enumerate(recs):
            rec["error"] = "correct" if rec["correct"] else "arithmetic"
            rec["false_equation"] = not rec["correct"] or n % 2 == 0  # every other right answer by luck
        path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    rep = analysis.build_report([root], tmp_path / "out", n_resamples=200, warn=lambda m: None)
    labels = sorted((r["small_arm"], r["large_arm"]) for r in rep.ratios)
    assert labels == [("grpo G=2 (geometry.scale_lr=False)", "grpo G=16"),
                      ("grpo G=2 (geometry.scale_lr=True)", "grpo G=16")]
    # both G=2 arms have G2's accuracies, so both ratios are the same point estimate
    assert rep.ratios[0]["gain_ratio"].mean == pytest.approx(rep.ratios[1]["gain_ratio"].mean)
    items = items_frame(rep.arms)
    table = analysis.error_table(items)
    final = items[(items["phase"] == "final") & (items["arm"] == "grpo G=16")]
    share = 100 * (final["error"] == "arithmetic").mean()
    row = next(line for line in table.splitlines() if "grpo G=16 " in line and "| final" in line)
    assert [float(c) for c in row.split("|")[3:5]] == pytest.approx([100 - share, share])
    lucky = 100 * (final["correct"] * final["false_equation"]).mean()
    assert "correct with a false equation" in table.splitlines()[0]
    assert float(row.split("|")[-2]) == pytest.approx(lucky, abs=0.051)
    assert 0 < lucky < 100 - share
    assert "## Error taxonomy of the greedy answers" in (tmp_path / "out" / "results.md").read_text()


def test_rewarded_rollouts_with_a_false_equation_come_from_trls_logged_completions(tmp_path):
    """Of the rollouts the correctness reward scored right, the share whose working has a
    false equation; a run without logged completions (or without correctness) has none."""
    root = tmp_path / "sweep"
    run_dir = make_run(root, "g16", evals={0: 0.2, 2: 0.3})
    texts = [("4 + 7 = 11", 1.0), ("4 + 5 = 11", 1.0), ("4 + 5 = 10", 0.0), ("3 + 4 = 7\n7 + 1 = 9", 1.0)]
    done = run_dir / Path(records.COMPLETIONS_GLOB).parent
    done.mkdir(parents=True)
    for step, rows in ((1, texts[:2]), (2, texts[2:])):
        pd.DataFrame({"step": [step] * len(rows), "prompt": [[{"role": "user", "content": "q"}]] * len(rows),
                      "completion": [[{"role": "assistant", "content": t}] for t, _ in rows],
                      "correctness": [c for _, c in rows], "advantage": [0.0] * len(rows)}
                     ).to_parquet(done / f"completions_{step:05d}.parquet")
    assert rewarded_false_equation(run_dir) == pytest.approx(2 / 3)
    assert pd.isna(rewarded_false_equation(make_run(tmp_path, "no-completions")))
    rep = analysis.build_report([root / "g16"], tmp_path / "out", n_resamples=50, warn=lambda m: None)
    assert rep.table.loc[rep.table["arm"] == "grpo G=16", "rewarded_false_equation"].item() == pytest.approx(2 / 3)
    assert "rewarded rollouts with a false equation (%)" in (tmp_path / "out" / "results.md").read_text()


def test_2grpo_is_compared_with_16grpo_at_its_own_rollout_count(tmp_path):
    """Like for like: 2-GRPO's last eval (1,280 rollouts at 64 per step) against
    16-GRPO's eval at 1,280 rollouts (step 10 at 128 per step), paired per seed and item."""
    root = tmp_path / "sweep"
    for seed in (0, 1):
        make_run(root, f"g2,seed={seed}", group_size=2, seed=seed, evals={0: 0.2, 10: 0.3, 20: 0.5})
        make_run(root, f"g16,seed={seed}", group_size=16, seed=seed, evals={0: 0.2, 10: 0.4, 20: 0.7},
                 rollouts_per_step=128)
    rep = analysis.build_report([root], tmp_path / "out", n_resamples=500, warn=lambda m: None)
    comps = rep.comparisons.set_index("comparison")
    at = comps.loc["grpo G=2 − grpo G=16 at 1,280 rollouts"]
    assert at["diff_pp"] == pytest.approx(10.0) and at["n_seeds"] == 2 and at["n_items"] == N_ITEMS
    assert at["versus"] == "grpo G=16 at 1,280 rollouts"
    assert comps.loc["grpo G=2 − grpo G=16", "diff_pp"] == pytest.approx(-20.0)  # each arm at its own end
    assert any(line.startswith("grpo G=2 − grpo G=16 at 1,280 rollouts: +10.0 pp") for line in rep.findings)


def test_the_runs_package_versions_are_listed_and_a_difference_is_flagged(tmp_path):
    a = make_run(tmp_path / "s", "a", seed=0, evals={0: 0.2, 4: 0.4})
    b = make_run(tmp_path / "s", "b", seed=1, evals={0: 0.2, 4: 0.4})
    for run_dir, trl in ((a, "1.16.0"), (b, "1.17.0")):
        state = json.loads((run_dir / records.STATE_FILE).read_text())
        state["versions"] = {"torch": "2.13.0+cpu", "trl": trl}
        (run_dir / records.STATE_FILE).write_text(json.dumps(state))
    runs, _ = load_runs([a])
    assert analysis.versions_line(runs) == "Package versions (every run): torch 2.13.0+cpu, trl 1.16.0."
    runs, _ = load_runs([tmp_path / "s"])
    line = analysis.versions_line(runs)
    assert line.startswith("Package versions differ between runs:") and "trl 1.16.0" in line and "trl 1.17.0" in line
    analysis.build_report([tmp_path / "s"], tmp_path / "out", n_resamples=200, warn=lambda m: None)
    assert line in (tmp_path / "out" / "results.md").read_text()


def test_a_curve_matches_evals_by_order_where_seeds_evaluate_at_other_steps(tmp_path):
    """DPO's rounds mine a different number of pairs per seed, so its evals fall at
    other steps; the curve still has every eval, at the seeds' mean x."""
    make_run(tmp_path, "dpo0", method="dpo", seed=0, evals={0: 0.2, 5: 0.3, 10: 0.4})
    make_run(tmp_path, "dpo1", method="dpo", seed=1, evals={0: 0.2, 6: 0.1, 12: 0.2})
    rep = analysis.build_report([tmp_path], tmp_path / "out", n_resamples=200, warn=lambda m: None)
    (dpo,) = [a for a in rep.arms if a.kind == "dpo"]
    curve = dpo.stats["curve"]
    assert list(curve["step"]) == [0, 5.5, 11] and list(curve["mean"]) == pytest.approx([0.2, 0.2, 0.3])
    assert (curve["low"] <= curve["mean"]).all() and (curve["mean"] <= curve["high"]).all()


def test_the_report_compares_whatever_group_sizes_the_runs_have(tmp_path):
    """No group size is built in: a G=4 vs G=32 sweep gets its 4-GRPO / 32-GRPO gain ratio."""
    root = tmp_path / "sweep"
    for seed in (0, 1):
        for g, evals in ((4, G2[seed]), (32, G16[seed])):
            make_run(root, f"g{g},seed={seed}", group_size=g, seed=seed, evals=evals,
                     extra_config={"geometry": {"hold": "rollouts", "rollouts_per_step": 64, "scale_lr": True}})
    rep = analysis.build_report([root], tmp_path / "out", n_resamples=50, warn=lambda m: None)
    assert [(r["small_arm"], r["large_arm"], r["sizes"]) for r in rep.ratios] == [("grpo G=4", "grpo G=32", (4, 32))]
    assert "4-GRPO / 32-GRPO gain ratio (grpo G=4 / grpo G=32)" in (tmp_path / "out" / "results.md").read_text()


def test_runs_that_continue_an_adapter_are_paired_on_it_and_the_raw_model_is_its_own_row(tmp_path):
    """The SmolLM2 protocol's layout: every training run continues one SFT adapter (model.adapter_path),
    an eval run of that adapter is their baseline, and an eval run of the raw model (no adapter) is a
    row of its own, not the baseline. The SFT run is the control: ``sft-control``."""
    root = tmp_path / "sweep"
    start = {"model": {"name": "smollm2", "adapter_path": "/cache/sweeps/smollm2_warm_start/final"}}
    make_run(root, "raw", method="eval", evals={0: 0.05}, model="smollm2", extra_config={"model": {"name": "smollm2"}})
    make_run(root, "start", method="eval", evals={0: 0.30}, model="smollm2", extra_config=start)
    for seed in (0, 1):
        make_run(root, f"grpo,seed={seed}", group_size=8, seed=seed, evals={0: 0.30, 24: 0.60}, extra_config=start)
        make_run(root, f"sft,seed={seed}", method="sft", seed=seed, evals={0: 0.30, 24: 0.45}, extra_config=start)
    runs, _ = load_runs([root], warn=lambda m: None)
    assert {r.warm_start for r in runs} == {"smollm2", "smollm2+smollm2_warm_start"}
    arms = {a.label: a for a in group_arms(runs, warn=lambda m: None)}
    assert sorted(arms) == ["baseline", "grpo G=8", "raw model", "sft-control"]
    assert arms["baseline"].runs[0].path.name == "start" and arms["raw model"].runs[0].path.name == "raw"
    rep = analysis.build_report([root], tmp_path / "out", n_resamples=50, warn=lambda m: None)
    comps = rep.comparisons.set_index("comparison")
    assert comps.loc["grpo G=8 − sft-control", "diff_pp"] == pytest.approx(15.0)
    assert comps.loc["grpo G=8 − its step-0 eval", "diff_pp"] == pytest.approx(30.0)
    raw = rep.table.set_index("arm").loc["raw model"]
    assert raw["strict_mean"] == pytest.approx(0.05) and raw["kind"] == "eval"
    assert not any(c.startswith("raw model") for c in comps.index)  # it shares no replicate with the baseline
    items = pd.read_csv(tmp_path / "out" / "items.csv.gz")
    assert set(items["arm"]) == {"baseline", "grpo G=8", "raw model", "sft-control"}
    # the SFT control gains but samples no rollouts: its rollouts-to-90% cell is empty, not "never gains"
    sft_row = next(line for line in (tmp_path / "out" / "results.md").read_text().splitlines()
                   if line.startswith("| sft-control"))
    cells = [c.strip() for c in sft_row.split("|")]
    assert "never gains" not in cells and cells[10:12] == ["—", "24 [24, 24]"]
