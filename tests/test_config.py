"""Config composition (Hydra compose API), schema validation, and the CLI's
start-up path (no torch import for --help / --cfg job)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import CONF, ROOT, compose, compose_sweep_job, cuda_available, run_cli

from mathreason.config.geometry import plan_geometry
from mathreason.config.schema import validate
from mathreason.errors import UserError
from mathreason.launch.preflight import preflight

GROUPS = ["model", "data", "method", "reward", "logger", "experiment"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize(
    "override", [f"{g}={o}" for g in GROUPS for o in options(g)] + ["hydra/launcher=slurm", "hydra/launcher=local"]
)
def test_every_group_option_composes_and_validates(override):
    """Every option and every experiment file passes the whole validation (GPU
    and hub presets too: whether this machine can run them is preflight's job)."""
    cfg = compose([override])
    validate(cfg)
    group, _, option = override.partition("=")
    if group in ("model", "data", "reward", "logger"):
        assert cfg[group].name == option
    if group == "method":
        assert cfg.method == option


def test_experiment_presets_are_diffs_on_the_root_config():
    seed = compose(["experiment=seed_gsm8k_grpo"])
    assert seed.model.id == "Qwen/Qwen2.5-3B-Instruct"
    assert seed.model.backend == "unsloth" and seed.model.load_in_4bit
    assert seed.model.lora.r == 16
    assert seed.data.name == "gsm8k" and seed.method == "grpo"
    assert set(seed.reward.functions) == {"correctness", "strict_format", "soft_format", "integer", "xmlcount"}
    paper = compose(["experiment=paper_2grpo_math", "group_size=2"])
    geo = plan_geometry(paper, n_train_prompts=7500)
    assert (geo.prompts_per_step, geo.rollouts_per_step) == (256, 512)
    assert geo.learning_rate == pytest.approx(8e-6)
    paper16 = compose(["experiment=paper_2grpo_math", "group_size=16"])
    geo16 = plan_geometry(paper16, n_train_prompts=7500)
    assert (geo16.prompts_per_step, geo16.learning_rate) == (32, pytest.approx(1e-6))
    assert geo16.steps == 8 * geo.steps or abs(geo16.steps - 8 * geo.steps) <= 8


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["group_size=1"], "group_size"),
        (["geometry.rollouts_per_step=60", "group_size=16"], "geometry.rollouts_per_step"),
        (["geometry.hold=sideways"], "geometry.hold"),
        (["model.backend=jax"], "model.backend"),
        (["+reward.functions.made_up=1.0"], "reward.functions.made_up"),
        (["eval.batch_size=0"], "eval.batch_size"),
        (["data.path=/nonexistent/test.jsonl"], "data.path"),
        (["~model.dtype"], "model.dtype"),
    ],
)
def test_schema_names_the_offending_key(overrides, key):
    with pytest.raises(UserError) as info:
        validate(compose(overrides))
    message = str(info.value)
    assert key in message and "\n" not in message


@pytest.mark.skipif(cuda_available(), reason="checks the refusal on a machine without CUDA")
@pytest.mark.parametrize("override", ["model.backend=unsloth", "rollout.engine=vllm", "device=cuda"])
def test_gpu_options_pass_validation_and_stop_at_preflight_without_cuda(override):
    """The config is valid anywhere (a SLURM sweep is checked on a login node);
    the machine that runs the job refuses it before loading anything."""
    typed = validate(compose([override]))
    with pytest.raises(UserError) as info:
        preflight(typed)
    assert override in str(info.value) and "\n" not in str(info.value)


def test_wrong_type_is_caught_by_the_schema():
    with pytest.raises(UserError, match="eval.max_new_tokens"):
        validate(compose(["eval.max_new_tokens=lots"]))


def test_geometry_equal_rollouts_vs_equal_prompts():
    g2 = plan_geometry(compose(["group_size=2"]), n_train_prompts=256)
    g16 = plan_geometry(compose(["group_size=16"]), n_train_prompts=256)
    assert g2.rollouts_per_step == g16.rollouts_per_step == 64
    assert (g2.prompts_per_step, g16.prompts_per_step) == (32, 4)
    assert g16.steps == 8 * g2.steps and g16.total_rollouts == 8 * g2.total_rollouts
    assert g2.learning_rate == pytest.approx(8 * g16.learning_rate)
    held = plan_geometry(compose(["group_size=2", "geometry.hold=prompts"]), n_train_prompts=256)
    assert (held.prompts_per_step, held.rollouts_per_step, held.lr_scale) == (4, 8, 1.0)
    fixed = plan_geometry(compose(["group_size=2", "geometry.max_steps=7"]), n_train_prompts=256)
    assert fixed.steps == 7


def test_help_and_cfg_job_do_not_import_torch(tmp_path):
    probe = (
        "import sys, runpy; sys.argv = ['mathreason.run'] + sys.argv[1:]\n"
        "try:\n    runpy.run_module('mathreason.run', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'transformers', 'trl') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    for flag in (["--help"], ["--cfg", "job"], ["method=grpo", "group_size=2", "--cfg", "job"]):
        out = subprocess.run([sys.executable, "-c", probe, *flag], cwd=tmp_path, capture_output=True, text=True,
                             env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
        assert "HEAVY []" in out.stdout, (flag, out.stdout[-500:], out.stderr[-500:])


def test_cfg_job_shows_the_seed_setup(tmp_path):
    out = run_cli(["experiment=seed_gsm8k_grpo", "--cfg", "job"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "Qwen/Qwen2.5-3B-Instruct" in out.stdout and "backend: unsloth" in out.stdout


@pytest.mark.parametrize(("size", "prompts", "scale"), [(2, 32, 8), (16, 4, 1)])
def test_cfg_job_shows_the_derived_geometry(tmp_path, size, prompts, scale):
    """The composed config is followed by the geometry it implies, as YAML
    comments (the output still parses), worked out by mathreason.config.geometry."""
    import yaml

    out = run_cli(["method=grpo", f"group_size={size}", "--cfg", "job"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert yaml.safe_load(out.stdout)["group_size"] == size
    derived = [line for line in out.stdout.splitlines() if line.startswith("#   ")]
    cfg = compose([f"group_size={size}"])
    geo = plan_geometry(cfg, n_train_prompts=cfg.data.n_train)
    assert geo.prompts_per_step == prompts
    assert f"group_size {size} x {prompts} prompts = {geo.rollouts_per_step} rollouts" in derived[0]
    base = compose([]).model.recipe.grpo_lr  # grpo.learning_rate, at the reference group size
    assert geo.learning_rate == pytest.approx(scale * base)  # lr x (prompts per step / those of G=16)
    assert f"learning rate {geo.learning_rate:g}" in derived[1]
    assert f"steps {geo.steps}," in derived[2]


@pytest.mark.parametrize("size", [2, 4, 8, 16])
def test_group_size_is_one_plain_key(size):
    """The compose API takes a bare number, and it is all TRL's num_generations comes from."""
    cfg = compose([f"group_size={size}"])
    assert cfg.group_size == size and plan_geometry(cfg, n_train_prompts=64).group_size == size


@pytest.mark.parametrize("how", [["-m", "group_size=2,16"],
                                 ["-m", "--config-dir", str(ROOT / "sweeps"), "--config-name", "group_size_cpu"]])
def test_group_size_sweeps_take_bare_numbers(tmp_path, how):
    """`-m group_size=2,16` and a sweep file's `hydra.sweeper.params` give jobs
    with group_size=2 and 16 (here stopped by validation, before any job runs:
    a group size has no effect in method=eval)."""
    out = run_cli([*how, "method=eval", "logger=none"], cwd=tmp_path)
    assert out.returncode == 2 and "sweep job #0 (" in out.stderr and "group_size=2" in out.stderr, out.stderr
    cfg = run_cli(["method=grpo", "group_size=2", "--cfg", "job"], cwd=tmp_path)
    assert cfg.returncode == 0 and "\ngroup_size: 2\n" in cfg.stdout


def test_bad_override_is_one_line_exit_2(tmp_path):
    out = run_cli(["group_size=3"], cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "group_size" in out.stderr
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize("world", [1, 2, 4, 8])
@pytest.mark.parametrize("group", [2, 16])
def test_rollouts_per_step_hold_for_every_world_size(monkeypatch, tmp_path, world, group):
    """TRL multiplies the per-device batch by the number of processes: with a
    faked distributed state of `world` processes, TRL's own GRPOConfig still
    draws the configured rollouts per optimisation step."""
    from transformers import TrainingArguments
    from trl import GRPOConfig

    monkeypatch.setattr(TrainingArguments, "world_size", property(lambda self: world))
    cfg = compose([f"group_size={group}", "geometry.rollouts_per_step=64", "geometry.grad_accum=2"])
    geo = plan_geometry(cfg, n_train_prompts=256, world=world)
    assert geo.world_size == world and geo.as_log()["geometry/world_size"] == world
    args = GRPOConfig(output_dir=str(tmp_path), num_generations=geo.group_size, use_cpu=True, bf16=False,
                      per_device_train_batch_size=geo.per_device_batch, gradient_accumulation_steps=geo.grad_accum)
    assert args.generation_batch_size == 64  # completions per generation = per optimisation step
    assert args.generation_batch_size // args.num_generations == 64 // group  # prompts per step


def test_world_size_comes_from_the_launcher_and_must_divide_the_step(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")  # as torchrun / accelerate launch set it
    assert plan_geometry(compose(["geometry.rollouts_per_step=64"]), n_train_prompts=256).per_device_batch == 16
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(UserError, match="world size 3"):
        plan_geometry(compose(["geometry.rollouts_per_step=64"]), n_train_prompts=256)


@pytest.mark.parametrize("preset", sorted(p.stem for p in (CONF / "model").glob("qwen2.5-*.yaml")))
def test_each_real_model_preset_carries_its_own_lengths_and_lr(preset):
    """A Qwen run must not inherit the tiny model's 64-token completions and lr."""
    from omegaconf import OmegaConf

    for method in ("grpo", "dpo"):
        composed = compose([f"model={preset}", f"method={method}"])
        cfg = {key: OmegaConf.to_container(composed[key], resolve=True) for key in ("model", "eval", method)}
        recipe = cfg["model"]["recipe"]
        assert cfg["eval"]["max_new_tokens"] == recipe["eval_length"] >= 256
        if method == "grpo":
            assert cfg["grpo"]["max_completion_length"] == recipe["completion_length"] >= 256
            assert cfg["grpo"]["learning_rate"] == recipe["grpo_lr"]
        else:
            assert cfg["dpo"]["mining"]["max_new_tokens"] == recipe["completion_length"]
            assert cfg["dpo"]["learning_rate"] == recipe["dpo_lr"]
    tiny = compose(["model=tiny"]).model.recipe
    assert recipe["grpo_lr"] != tiny.grpo_lr and recipe["completion_length"] > tiny.completion_length
    # a method key set directly still wins over the preset
    assert compose([f"model={preset}", "grpo.learning_rate=0.001"]).grpo.learning_rate == 0.001


def test_the_miniature_dev_sweep_runs_the_papers_regime_on_dev():
    """Every arm of the dev phase validates, chooses on dev only, trains the same epochs over the
    same prompts with a 10-step warm-up; 16-GRPO is evaluated where 2-GRPO ends (equal rollouts);
    the SFT control takes as many steps over as many examples as 16-GRPO."""
    import math

    import yaml

    params = yaml.safe_load((ROOT / "sweeps" / "miniature_dev.yaml").read_text())["hydra"]["sweeper"]["params"]
    arms = {arm: validate(compose_sweep_job("miniature_dev", [f"+arm={arm}"]), [f"+arm={arm}"])
            for arm in params["+arm"].split(",")}
    assert {cfg.data.eval_split for cfg in arms.values()} == {"dev"}
    assert len({(cfg.data.n_train, cfg.data.seed, str(cfg.model.tiny)) for cfg in arms.values()}) == 1
    grpo = {arm: cfg for arm, cfg in arms.items() if cfg.method == "grpo"}
    assert {cfg.group_size for cfg in grpo.values()} == {2, 16}
    assert len({(cfg.geometry.epochs, cfg.geometry.rollouts_per_step, cfg.grpo.warmup_steps,
                 cfg.grpo.lr_scheduler_type) for cfg in grpo.values()}) == 1
    geo = {g: plan_geometry(cfg, n_train_prompts=cfg.data.n_train) for cfg in grpo.values() for g in [cfg.group_size]}
    assert geo[2].steps * 8 == geo[16].steps  # 1/8 of the steps and rollouts
    g2_total = geo[2].steps * geo[2].rollouts_per_step
    for cfg in grpo.values():
        if cfg.group_size == 16:
            assert g2_total in cfg.eval.at_rollouts
    lrs = sorted(cfg.grpo.learning_rate for cfg in grpo.values() if cfg.group_size == 2)
    assert [lr / lrs[0] for lr in lrs] == pytest.approx([1, 2, 4, 8])
    for cfg in (c for c in arms.values() if c.method == "sft"):
        assert math.ceil(cfg.data.n_train / cfg.sft.batch_size) * cfg.sft.epochs == geo[16].steps
        assert cfg.sft.batch_size == geo[16].prompts_per_step and cfg.sft.warmup_steps == 10
    assert sum(c.method == "sft" for c in arms.values()) == sum(c.group_size == 16 for c in grpo.values())


def test_every_key_the_schemas_rule_tables_name_is_a_real_key():
    """The range and no-effect tables are dotted strings; each must name a key of some method's
    composed config, and each TRL field they name must exist in TRL's config classes."""
    import dataclasses

    import trl
    from omegaconf import OmegaConf

    from mathreason.config import schema
    from mathreason.launch.preflight import EXTRA_RANGES

    composed = [OmegaConf.to_container(compose([f"method={m}"]), resolve=False) for m in ("grpo", "dpo", "sft", "eval")]

    def keys(node, prefix=""):
        for k, v in node.items():
            yield prefix + str(k)
            if isinstance(v, dict):
                yield from keys(v, f"{prefix}{k}.")

    real = {k for c in composed for k in keys(c)}
    named = [*schema.POSITIVE, *schema.AT_LEAST_1, *schema.NON_NEGATIVE, *schema.UNIT_INTERVAL]
    assert sorted(k for k in named if k not in real) == []
    prefixes = [prefix for prefix, _, _ in schema.NO_EFFECT]
    assert sorted(p for p in prefixes if not any(k == p or k.startswith(p) for k in real)) == []
    trl_fields = {f.name for cls in (trl.GRPOConfig, trl.DPOConfig, trl.SFTConfig) for f in dataclasses.fields(cls)}
    grpo_fields = {f.name for f in dataclasses.fields(trl.GRPOConfig)}
    assert sorted(set(schema.GRPO_DERIVED) - grpo_fields) == []
    assert sorted(set(EXTRA_RANGES) - trl_fields) == []


def test_lora_can_be_switched_off_on_a_lora_preset():
    """model=smollm2-135m-instruct turns LoRA on; model.lora.enabled=false (full fine-tuning)
    is an override that changes the run, not one refused as idle."""

    overrides = ["model=smollm2-135m-instruct", "model.lora.enabled=false"]
    cfg = validate(compose(overrides), overrides)
    assert cfg.model.lora.enabled is False


def test_the_smollm2_arms_are_matched_in_prompts_samples_and_steps():
    """Every SmolLM2 dev arm continues the same warm start on the same prompts and items; DPO samples
    as many completions as GRPO's rollouts, each prompt once, with no more optimizer steps; the SFT
    control takes GRPO's steps and examples per step; the warm start's questions are none of theirs."""
    import dataclasses
    import math

    import yaml

    from mathreason.config.geometry import plan_geometry
    from mathreason.data.arith import make_split

    params = yaml.safe_load((ROOT / "sweeps" / "smollm2_dev.yaml").read_text())["hydra"]["sweeper"]["params"]
    arms = {arm: compose_sweep_job("smollm2_dev", [f"+arm={arm}"]) for arm in params["+arm"].split(",")}
    assert {cfg.data.eval_split for cfg in arms.values()} == {"dev"}
    assert len({(cfg.data.n_train, cfg.data.seed, cfg.data.n_eval, cfg.model.adapter_path, cfg.model.name,
                 str(cfg.data.generator)) for cfg in arms.values()}) == 1
    by = {m: [c for c in arms.values() if c.method == m] for m in ("grpo", "dpo", "sft")}
    assert all(len(v) >= 2 for v in by.values()) and len(by["dpo"]) >= 3
    n = by["grpo"][0].data.n_train
    geos = {dataclasses.replace(plan_geometry(c, n_train_prompts=n), learning_rate=0.0) for c in by["grpo"]}
    assert len(geos) == 1  # the arms differ in lr only
    geo = geos.pop()
    rollouts = geo.steps * geo.rollouts_per_step
    for c in by["dpo"]:
        d = c.dpo
        assert d.rounds * d.mining.max_questions == n  # each prompt mined once
        assert d.rounds * d.mining.max_questions * d.mining.samples_per_question == rollouts
        assert d.mining.samples_per_question == by["grpo"][0].group_size
        assert d.batch_size == geo.prompts_per_step  # at most one pair per prompt: <= GRPO's steps
        assert d.mining.max_new_tokens == by["grpo"][0].grpo.max_completion_length
    for c in by["sft"]:
        assert c.sft.batch_size == geo.prompts_per_step
        assert math.ceil(n / c.sft.batch_size) * c.sft.epochs == geo.steps
    warm = compose_sweep_job("smollm2_warm_start", [])
    assert warm.method == "sft" and warm.model.adapter_path is None
    prompts = make_split(by["grpo"][0].data, "train")
    assert not {r["question"] for r in make_split(warm.data, "train")} & {r["question"] for r in prompts}
