"""mathreason.report on synthetic run directories that follow the run-dir contract."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from mathreason import report
from mathreason.report import build_report, main, mean_ci, steps_to_plateau, t_quantile

T_975_DF1 = 12.706204736174694  # Student's t, 97.5% quantile, 1 df (tables / scipy)
COMPONENTS = ("correctness", "strict_format", "soft_format", "integer", "xmlcount")


def make_run(root: Path, name: str, *, method: str = "grpo", seed: int = 0, group_size: int = 16,
             reward: str = "seed", evals: dict[int, float] | None = None, wall: float = 100.0,
             rollouts_per_step: int = 64, status: str = "done", peak_mb: float = 1000.0,
             extra_config: dict | None = None, model: str = "tiny", data: str = "arith") -> Path:
    """A run dir: run.json + metrics.jsonl with one record per step 0..last eval step.
    ``evals`` maps eval step -> strict accuracy (lenient = strict + 0.1)."""
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
    (run_dir / "run.json").write_text(json.dumps(state))
    evals = evals or {0: 0.2}
    last = max(evals)
    lines = []
    for step in range(last + 1):
        frac = step / last if last else 1.0
        rec: dict = {"step": step, "train/wall_clock_s": wall * frac,
                     "train/memory/rss_mb": peak_mb * 0.8, "train/memory/peak_rss_mb": peak_mb * (0.9 + 0.1 * frac),
                     "train/memory/overall_peak_rss_mb": peak_mb * (0.9 + 0.1 * frac)}
        if method == "grpo":
            rec.update({"train/reward": 1.0 + frac, "train/reward_std": 0.3, "train/loss": 0.01,
                        "train/frac_reward_zero_std": 0.5, "train/completions/mean_length": 40.0,
                        "train/learning_rate": 1e-5, "train/cumulative_rollouts": step * rollouts_per_step,
                        "train/cumulative_generated_tokens": step * rollouts_per_step * 40.0})
            rec.update({f"train/rewards/{c}/mean": frac * (i + 1) / 5 for i, c in enumerate(COMPONENTS)})
        elif method == "dpo":
            rec.update({"train/rewards/chosen": 0.1 * frac, "train/rewards/rejected": -0.1 * frac,
                        "train/rewards/margins": 0.2 * frac, "train/rewards/accuracies": 0.5 + 0.4 * frac,
                        "train/loss": 0.69 - 0.2 * frac, "train/cumulative_rollouts": 256})
        if step == 0 and method != "eval":
            rec.update({"train/geometry/group_size": group_size, "train/geometry/rollouts_per_step": rollouts_per_step,
                        "train/geometry/prompts_per_step": rollouts_per_step // group_size,
                        "train/geometry/steps": last})
        if step in evals:
            rec.update({"eval/accuracy_strict": evals[step], "eval/accuracy_lenient": evals[step] + 0.1,
                        "eval/format_rate": 0.9, "eval/samples": 200})
        lines.append(json.dumps(rec))
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return run_dir


G2 = {0: {0: 0.20, 10: 0.40, 20: 0.55, 30: 0.60}, 1: {0: 0.20, 10: 0.30, 20: 0.50, 30: 0.50}}
G16 = {0: {0: 0.20, 10: 0.61, 20: 0.62, 30: 0.62}, 1: {0: 0.20, 10: 0.25, 20: 0.58, 30: 0.58}}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """2 GRPO arms x 2 seeds, a baseline eval run, one DPO run that loses accuracy, one unfinished run."""
    root = tmp_path_factory.mktemp("sweeps") / "g2_vs_g16"
    root.mkdir()
    (root / "multirun.yaml").write_text("hydra: {}\n")
    make_run(root, "method=eval", method="eval", evals={0: 0.20}, wall=20, peak_mb=500)
    for seed in (0, 1):
        make_run(root, f"group_size=2,seed={seed}", group_size=2, seed=seed, evals=G2[seed],
                 wall=100 + 10 * seed, rollouts_per_step=64, peak_mb=800)
        make_run(root / "nested", f"group_size=16,seed={seed}", group_size=16, seed=seed, evals=G16[seed],
                 wall=400 + 40 * seed, rollouts_per_step=128, peak_mb=1200)
    make_run(root, "method=dpo", method="dpo", evals={0: 0.20, 5: 0.15, 10: 0.15}, wall=50)
    make_run(root, "group_size=4", group_size=4, status="running", evals={0: 0.2, 10: 0.9})
    return root


@pytest.fixture(scope="module")
def cli_run(sweep, tmp_path_factory):
    """The CLI once on the sweep (it writes every file): (stdout, stderr, out dir)."""
    out = tmp_path_factory.mktemp("report")
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        assert main([str(sweep), "--out", str(out), "--plateau-frac", "0.95"]) == 0
    return stdout.getvalue(), stderr.getvalue(), out


@pytest.fixture(scope="module")
def built(sweep, tmp_path_factory):
    """The same analysis without plotting: (report-like object, warnings)."""
    warnings: list[str] = []
    runs = report.load_runs([sweep], warn=warnings.append)
    arms = report.group_arms(runs, warn=warnings.append)
    report.summarize(arms, 0.95)
    return SimpleNamespace(arms=arms, ratios=report.ratios_2grpo(arms)), warnings


def by_label(rep) -> dict:
    return {arm.label: arm for arm in rep.arms}


def test_t_quantile_and_ci_by_hand():
    assert t_quantile(0.975, 1) == pytest.approx(T_975_DF1, rel=1e-9)
    assert t_quantile(0.975, 2) == pytest.approx(4.302652729749464, rel=1e-9)
    assert t_quantile(0.975, 10) == pytest.approx(2.228138851986274, rel=1e-9)
    assert t_quantile(0.975, 200) == pytest.approx(1.971896224, rel=1e-7)
    # n = 3: mean 0.5, sd 0.1 -> half-width t(0.975, 2) * 0.1 / sqrt(3)
    mean, ci = mean_ci([0.4, 0.5, 0.6])
    assert mean == pytest.approx(0.5)
    assert ci == pytest.approx(4.302652729749464 * 0.1 / math.sqrt(3))
    assert mean_ci([0.7]) == (0.7, None)
    assert mean_ci([]) == (None, None)


def test_steps_to_plateau_crafted_curve():
    curve = [(0, 0.2), (10, 0.4), (20, 0.55), (30, 0.6)]  # gain 0.4 -> target 0.58
    assert steps_to_plateau(curve, 0.2, 0.95) == 30
    assert steps_to_plateau(curve, 0.2, 0.8) == 20  # target 0.52
    assert steps_to_plateau(curve, 0.2, 0.5) == 10  # target 0.40, reached exactly
    assert steps_to_plateau([(0, 0.2), (10, 0.1)], 0.2, 0.95) is None  # never gains
    assert steps_to_plateau([(0, 0.2), (10, 0.2)], 0.2, 0.95) is None  # no gain either
    assert steps_to_plateau(curve, None, 0.95) is None


def test_arms_rows_and_values(built):
    rep, warnings = built
    arms = by_label(rep)
    assert list(arms) == ["baseline", "grpo G=2", "grpo G=16", "dpo"]
    assert any("status=running" in w for w in warnings)

    g2, g16, base, dpo = arms["grpo G=2"], arms["grpo G=16"], arms["baseline"], arms["dpo"]
    assert base.source == "eval run" and base.n == 1 and base.stats["strict"] == pytest.approx(0.20)
    assert g2.n == 2 and sorted(g2.seeds) == [0, 1]
    half = T_975_DF1 * (0.1 / math.sqrt(2)) / math.sqrt(2)  # finals 0.6, 0.5: sd = 0.1 / sqrt(2)
    assert g2.stats["strict"] == pytest.approx(0.55)
    assert g2.stats["strict_ci"] == pytest.approx(half)
    assert g2.stats["lenient"] == pytest.approx(0.65)
    assert g2.stats["gain"] == pytest.approx(0.35)
    assert g16.stats["strict"] == pytest.approx(0.60)
    assert g16.stats["gain"] == pytest.approx(0.40)
    # plateau: G2 seed 0 target 0.58 -> 30, seed 1 target 0.485 -> 20; G16: 0.599 -> 10, 0.561 -> 20
    assert g2.plateaus == [30, 20] and g2.stats["plateau"] == 25
    assert sorted(g16.plateaus) == [10, 20]
    assert dpo.plateaus == [None] and dpo.stats["gain"] == pytest.approx(-0.05)
    assert g2.stats["wall_clock"] == pytest.approx(105) and g16.stats["wall_clock"] == pytest.approx(420)
    assert g2.stats["rollouts"] == 30 * 64 and g16.stats["rollouts"] == 30 * 128
    assert g16.stats["memory"] == pytest.approx(1200) and g16.stats["memory_keys"] == ["train/memory/overall_peak_rss_mb"]
    assert base.stats["rollouts"] is None
    # marks: G16 best, G2's CI overlaps it; the n=1 baseline and DPO values lie outside G16's CI
    assert g16.mark == "*" and g2.mark == "†" and base.mark == "" and dpo.mark == ""

    rows = {row[0]: row for row in report.table_rows(rep.arms)}
    assert rows["grpo G=2 †"][1:6] == ["2", f"55.0 ± {100 * half:.1f}", f"65.0 ± {100 * half:.1f}",
                                       f"+35.0 ± {100 * half:.1f}", "25"]
    assert rows["baseline"][2:6] == ["20.0", "30.0", "—", "—"]
    assert rows["dpo"][4:6] == ["-5.0", "never (0/1)"]
    assert rows["grpo G=16 *"][6:] == ["1,200", "420", "3,840"]


def test_ratios_and_files(built, cli_run):
    rep, _ = built
    out = cli_run[2]
    (ratio,) = rep.ratios
    assert ratio["gain_ratio"] == pytest.approx(0.35 / 0.40)
    assert ratio["wall_clock_ratio"] == pytest.approx(105 / 420)
    assert ratio["rollouts_ratio"] == pytest.approx(0.5)
    text = (out / "results.md").read_text()
    assert "gain ratio 0.88" in text and "wall-clock ratio 0.25" in text and "rollouts ratio 0.500" in text
    assert "Steps to plateau" in text and "95% of the run's gain" in text

    with (out / "results.csv").open() as fh:
        rows = {r["arm"]: r for r in csv.DictReader(fh)}
    assert set(rows) == {"baseline", "grpo G=2", "grpo G=16", "dpo"}
    assert float(rows["grpo G=2"]["strict_mean"]) == pytest.approx(0.55)
    assert rows["grpo G=16"]["best"] == "True" and rows["grpo G=2"]["ci_overlaps_best"] == "True"
    assert rows["grpo G=2"]["plateau_steps_per_run"] == "30;20"


def test_pngs_are_valid_images(cli_run):
    import matplotlib.image as mpimg

    stdout, _, out = cli_run
    names = ["accuracy_vs_step.png", "accuracy_vs_rollouts.png", "accuracy_vs_wallclock.png",
             "reward_components.png", "dpo_margins.png"]
    for name in names:
        assert f"wrote {out / name}" in stdout
        img = mpimg.imread(out / name)
        assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 300, name
        assert img.std() > 0.01, f"{name} looks blank"


def test_step0_baseline_reward_split_and_other_keys(tmp_path):
    """No eval run: the baseline comes from the training runs' step-0 evals; arms
    split by reward preset and by any other differing config key, never by seed."""
    for seed in (0, 1):
        make_run(tmp_path, f"c{seed}", seed=seed, reward="correctness", evals={0: 0.1, 10: 0.3})
        make_run(tmp_path, f"s{seed}", seed=seed, reward="seed", evals={0: 0.1, 10: 0.4})
        make_run(tmp_path, f"lr{seed}", seed=seed, reward="seed", evals={0: 0.1, 10: 0.2},
                 extra_config={"grpo": {"beta": 0.0, "learning_rate": 1e-6}})
    runs = report.load_runs([tmp_path])
    arms = report.group_arms(runs)
    report.summarize(arms, 0.95)
    labels = {a.label: a for a in arms}
    assert set(labels) == {"baseline (step 0)", "grpo G=16 (correctness)", "grpo G=16 (seed; no grpo.learning_rate)",
                           "grpo G=16 (seed; grpo.learning_rate=1e-06)"}
    base = labels["baseline (step 0)"]
    assert base.n == 2 and base.seeds == [0, 1] and base.stats["strict"] == pytest.approx(0.1)
    assert base.stats["wall_clock"] is None and base.stats["memory"] is None
    assert labels["grpo G=16 (correctness)"].stats["gain"] == pytest.approx(0.2)
    assert report.ratios_2grpo(arms) == []


def test_cli_prints_table_and_paths(cli_run):
    stdout, stderr, out = cli_run
    assert "| arm | n | final strict (%)" in stdout
    assert "| grpo G=2 † | 2 |" in stdout
    for name in ("results.md", "results.csv"):
        assert f"wrote {out / name}" in stdout
    assert "first eval step whose strict accuracy ≥ baseline + 0.95 × (final − baseline)" in stdout
    assert "gain ratio 0.88" in stdout
    assert stderr.count("warning:") == 1 and "status=running" in stderr


def test_default_out_dir(tmp_path):
    make_run(tmp_path, "only", evals={0: 0.1, 2: 0.2})
    with contextlib.redirect_stdout(io.StringIO()):
        assert main([str(tmp_path)]) == 0
    assert (tmp_path / "report" / "results.md").exists()
    assert not (tmp_path / "report" / "dpo_margins.png").exists()  # no DPO runs


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


def test_bad_plateau_frac(sweep, capsys):
    with pytest.raises(SystemExit) as exc:
        main([str(sweep), "--plateau-frac", "1.5"])
    assert exc.value.code == 2 and "--plateau-frac" in capsys.readouterr().err


def test_ties_are_all_best(tmp_path):
    """A run that never gains ties with its step-0 baseline: both are best, neither merely overlaps."""
    make_run(tmp_path, "flat", evals={0: 0.0, 2: 0.0, 4: 0.0})
    arms = report.group_arms(report.load_runs([tmp_path]))
    report.summarize(arms, 0.95)
    assert [(a.label, a.mark) for a in arms] == [("baseline (step 0)", "*"), ("grpo G=16", "*")]
    assert report.table_rows(arms)[1][4:6] == ["+0.0", "never (0/1)"]


def test_defensive_records(tmp_path):
    """Missing keys, a half-written last line and a run without evals do not break the report."""
    run = make_run(tmp_path, "a", evals={0: 0.2, 4: 0.3})
    with (run / "metrics.jsonl").open("a") as fh:
        fh.write('{"step": 5, "train/rew')
    bare = tmp_path / "b"
    bare.mkdir()
    (bare / "run.json").write_text(json.dumps({"status": "done", "method": "grpo", "config": {}}))
    (bare / "metrics.jsonl").write_text('{"step": 1}\n')
    rep = build_report([tmp_path], tmp_path / "out", warn=lambda m: None)
    labels = [a.label for a in rep.arms]
    assert any(label.startswith("grpo G=16") for label in labels)
    assert (tmp_path / "out" / "accuracy_vs_step.png").exists()


def test_report_imports_no_torch():
    code = "import sys, mathreason.report; assert 'torch' not in sys.modules and 'pandas' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
