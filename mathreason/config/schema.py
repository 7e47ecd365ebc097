"""The typed schema of the composed config, checked before anything heavy runs.

The YAML under ``mathreason/conf/`` is primary and holds every value; these
dataclasses hold none (every field is MISSING or a nested section): they only
say which keys exist, their types and, below, what values are allowed
(verl-style). A key the YAML leaves without a value fails validation. ``validate``
turns the first problem it finds into a one-line :class:`UserError` that names
the key. No torch import here: ``--help`` and ``--cfg job`` stay fast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mathreason.errors import UserError

METHODS = ("grpo", "dpo", "sft", "eval")
BACKENDS = ("transformers", "unsloth")
ROLLOUT_ENGINES = ("transformers", "vllm")
ANSWER_FORMATS = ("gsm8k", "number", "latex", "boxed")
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("float32", "bfloat16", "float16", "auto")
LOGGER_MODES = ("auto", "online", "offline", "disabled")
GEOMETRY_HOLDS = ("rollouts", "prompts")
SAMPLED_EVALS = ("ends", "last", "all")
# GRPOConfig fields that mathreason derives; `grpo.extra` may not set them.
GRPO_DERIVED = {
    "reward_weights": "reward.functions (one weight per reward function)",
    "num_generations": "group_size",
    "per_device_train_batch_size": "geometry (rollouts per step / grad_accum)",
    "gradient_accumulation_steps": "geometry.grad_accum",
    "generation_batch_size": "geometry.rollouts_per_step",
    "steps_per_generation": "geometry.grad_accum",
    "max_steps": "geometry.epochs / geometry.max_steps",
    "learning_rate": "grpo.learning_rate (scaled by geometry.scale_lr)",
    "output_dir": "the Hydra run dir",
    "use_vllm": "rollout.engine",
}


@dataclass
class LoraCfg:
    enabled: bool = MISSING
    r: int = MISSING
    alpha: int = MISSING
    dropout: float = MISSING
    target_modules: Any = MISSING


@dataclass
class RecipeCfg:
    """What the methods need for this model; grpo.*, dpo.* and eval.* interpolate it."""
    completion_length: int = MISSING
    eval_length: int = MISSING
    grpo_lr: float = MISSING
    dpo_lr: float = MISSING
    rollouts_per_s: float | None = MISSING


@dataclass
class ModelCfg:
    name: str = MISSING
    id: str | None = MISSING
    size_b: float | None = MISSING
    backend: str = MISSING
    dtype: str = MISSING
    load_in_4bit: bool = MISSING
    adapter_path: str | None = MISSING
    max_seq_length: int = MISSING
    fast_inference: bool = MISSING  # unsloth: vLLM-backed generation
    gpu_memory_utilization: float = MISSING  # unsloth fast_inference only
    lora: LoraCfg = field(default_factory=LoraCfg)
    recipe: RecipeCfg = field(default_factory=RecipeCfg)
    tiny: Dict[str, Any] | None = MISSING
    gguf_file: str | None = MISSING  # a .gguf file or pip:<req>#<member>, converted once (models/gguf.py)


@dataclass
class DataCfg:
    name: str = MISSING
    hub_id: str | None = MISSING
    hub_config: str | None = MISSING
    train_size: int | None = MISSING
    train_split: str | None = MISSING
    eval_split: str | None = MISSING
    path: str | None = MISSING
    train_path: str | None = MISSING
    question_field: str = MISSING
    answer_field: str = MISSING
    answer_format: str = MISSING
    solution_field: str | None = MISSING
    max_train: int | None = MISSING
    max_eval: int | None = MISSING
    # embedded generator only
    n_train: int | None = MISSING
    n_eval: int | None = MISSING
    seed: int | None = MISSING
    generator: Dict[str, Any] | None = MISSING


@dataclass
class RewardCfg:
    name: str = MISSING
    functions: Dict[str, float] = MISSING
    plugins: List[str] = MISSING


@dataclass
class LoggerCfg:
    name: str = MISSING
    project: str | None = MISSING
    entity: str | None = MISSING
    group: str | None = MISSING
    tags: List[str] = MISSING
    mode: str = MISSING


@dataclass
class GeometryCfg:
    hold: str = MISSING
    rollouts_per_step: int = MISSING
    prompts_per_step: int = MISSING
    epochs: float = MISSING
    max_steps: int | None = MISSING
    scale_lr: bool = MISSING
    lr_reference_group_size: int = MISSING
    grad_accum: int = MISSING


@dataclass
class EvalCfg:
    every_n_steps: int = MISSING
    at_rollouts: list[int] | None = MISSING
    max_samples: int | None = MISSING
    batch_size: int = MISSING
    max_new_tokens: int = MISSING
    num_samples: int = MISSING
    temperature: float = MISSING
    top_p: float = MISSING
    sampled_evals: str = MISSING
    save_samples: bool = MISSING
    final_splits: list[str] = MISSING


@dataclass
class CheckpointCfg:
    every_n_steps: int = MISSING
    keep: int = MISSING
    resume: bool = MISSING


@dataclass
class RolloutCfg:
    engine: str = MISSING
    vllm_mode: str = MISSING
    vllm_gpu_memory_utilization: float = MISSING
    vllm_server_base_url: str | None = MISSING


@dataclass
class GRPOCfg:
    learning_rate: float = MISSING
    lr_scheduler_type: str = MISSING
    warmup_steps: Any = MISSING
    weight_decay: float = MISSING
    max_grad_norm: float = MISSING
    beta: float = MISSING
    loss_type: str = MISSING
    scale_rewards: str = MISSING
    epsilon: float = MISSING
    epsilon_high: float | None = MISSING
    num_iterations: int = MISSING
    temperature: float = MISSING
    top_p: float = MISSING
    max_completion_length: int = MISSING
    mask_truncated_completions: bool = MISSING
    logging_steps: int = MISSING
    log_completions: bool = MISSING
    extra: Dict[str, Any] = MISSING


@dataclass
class MiningCfg:
    samples_per_question: int = MISSING
    temperature: float = MISSING
    max_new_tokens: int = MISSING
    batch_size: int = MISSING
    max_questions: int | None = MISSING


@dataclass
class DPOCfg:
    rounds: int = MISSING
    pairs_path: str | None = MISSING
    mining: MiningCfg = field(default_factory=MiningCfg)
    learning_rate: float = MISSING
    lr_scheduler_type: str = MISSING
    warmup_steps: Any = MISSING
    beta: float = MISSING
    loss_type: str = MISSING
    epochs: float = MISSING
    batch_size: int = MISSING
    grad_accum: int = MISSING
    max_length: int = MISSING
    precompute_ref_log_probs: bool = MISSING
    logging_steps: int = MISSING
    extra: Dict[str, Any] = MISSING


@dataclass
class SFTCfg:
    learning_rate: float = MISSING
    lr_scheduler_type: str = MISSING
    warmup_steps: Any = MISSING
    weight_decay: float = MISSING
    max_grad_norm: float = MISSING
    epochs: float = MISSING
    batch_size: int = MISSING
    max_length: int = MISSING
    logging_steps: int = MISSING
    extra: Dict[str, Any] = MISSING


@dataclass
class RootCfg:
    method: str = MISSING
    seed: int = MISSING
    cache_dir: str = MISSING
    device: str = MISSING
    threads: int | None = MISSING
    experiment_name: str = MISSING
    verbose: bool = MISSING
    model: ModelCfg = field(default_factory=ModelCfg)
    data: DataCfg = field(default_factory=DataCfg)
    reward: RewardCfg = field(default_factory=RewardCfg)
    group_size: int = MISSING
    logger: LoggerCfg = field(default_factory=LoggerCfg)
    geometry: GeometryCfg = field(default_factory=GeometryCfg)
    eval: EvalCfg = field(default_factory=EvalCfg)
    rollout: RolloutCfg = field(default_factory=RolloutCfg)
    checkpoint: CheckpointCfg = field(default_factory=CheckpointCfg)
    grpo: GRPOCfg | None = None
    dpo: DPOCfg | None = None
    sft: SFTCfg | None = None




# Range rules for numeric keys (a key absent from the composed config is skipped).
POSITIVE = (
    "grpo.learning_rate", "dpo.learning_rate", "sft.learning_rate", "sft.epochs", "geometry.epochs", "dpo.epochs", "grpo.temperature", "model.recipe.rollouts_per_s",
    "eval.temperature", "dpo.mining.temperature", "grpo.max_grad_norm", "model.lora.alpha",
)
AT_LEAST_1 = (
    "geometry.rollouts_per_step", "geometry.prompts_per_step", "geometry.grad_accum", "geometry.max_steps",
    "geometry.lr_reference_group_size", "eval.batch_size", "eval.num_samples", "eval.max_samples",
    "eval.max_new_tokens", "grpo.max_completion_length", "grpo.num_iterations", "grpo.logging_steps",
    "dpo.rounds", "dpo.batch_size", "dpo.grad_accum", "dpo.max_length", "dpo.logging_steps",
    "dpo.mining.max_new_tokens", "sft.batch_size", "sft.max_length", "sft.logging_steps", "dpo.mining.batch_size", "dpo.mining.max_questions", "model.lora.r",
    "model.max_seq_length", "checkpoint.keep", "threads", "data.n_train", "data.n_eval", "data.max_train",
    "data.max_eval", "data.train_size",
)
NON_NEGATIVE = (
    "seed", "grpo.beta", "dpo.beta", "grpo.epsilon", "grpo.epsilon_high", "grpo.weight_decay",
    "checkpoint.every_n_steps", "eval.every_n_steps",
)
UNIT_INTERVAL = {  # key: (low, high, whether low itself is allowed)
    "grpo.top_p": (0.0, 1.0, False),
    "eval.top_p": (0.0, 1.0, False),
    "model.lora.dropout": (0.0, 0.999, True),
    "model.gpu_memory_utilization": (0.0, 1.0, False),
    "rollout.vllm_gpu_memory_utilization": (0.0, 1.0, False),
}
# Overrides that would change nothing in the composed run: (key prefix, when it
# has no effect, why). A user who sets them is told, not silently ignored.
NO_EFFECT = (
    ("model.lora.", lambda c: not c.model.lora.enabled and c.model.backend == "transformers",
     "model.lora.enabled=false; add model.lora.enabled=true"),
    ("group_size", lambda c: c.method != "grpo", "only GRPO samples groups (method={method})"),
    ("geometry.", lambda c: c.method != "grpo", "the GRPO batch geometry is not used by method={method}"),
    ("rollout.", lambda c: c.method != "grpo", "rollouts are GRPO's (method={method})"),
    ("geometry.prompts_per_step", lambda c: c.geometry.hold == "rollouts", "geometry.hold=rollouts"),
    ("geometry.rollouts_per_step", lambda c: c.geometry.hold == "prompts", "geometry.hold=prompts"),
    ("geometry.lr_reference_group_size", lambda c: not c.geometry.scale_lr, "geometry.scale_lr=false"),
    ("eval.temperature", lambda c: c.eval.num_samples == 1, "eval.num_samples=1 decodes greedily"),
    ("eval.sampled_evals", lambda c: c.eval.num_samples == 1, "eval.num_samples=1 decodes greedily"),
    ("eval.top_p", lambda c: c.eval.num_samples == 1, "eval.num_samples=1 decodes greedily"),
    ("rollout.vllm_", lambda c: c.rollout.engine != "vllm", "rollout.engine=transformers"),
)

SWITCHES = {"model.lora.enabled"}  # the key that turns a section off is never idle itself


def _at_least(key: str, value: Any, low: float) -> None:
    if value is not None and value < low:
        raise UserError(f"{key}={value} is too small; it must be >= {low}")


class _Checker:
    """Range checks that quote a value the way the user typed it."""

    def __init__(self, cfg: DictConfig, overrides: list[str]):
        self.cfg = cfg
        self.typed = {}
        for item in overrides:
            key, sep, value = str(item).lstrip("+~").partition("=")
            if sep:
                self.typed[key] = value

    def shown(self, key: str, value: Any) -> str:
        return f"{key}={self.typed.get(key, value)}"

    def one_of(self, key: str, allowed: tuple) -> None:
        value = OmegaConf.select(self.cfg, key)
        if value not in allowed:
            raise UserError(f"{self.shown(key, value)} is not allowed; choose one of: {', '.join(map(str, allowed))}")

    def ranges(self) -> None:
        rules = [(k, "> 0", lambda v: v > 0) for k in POSITIVE]
        rules += [(k, ">= 1", lambda v: v >= 1) for k in AT_LEAST_1]
        rules += [(k, ">= 0", lambda v: v >= 0) for k in NON_NEGATIVE]
        rules += [(k, f"in ({lo}, {hi}]" if not closed else f"in [{lo}, {hi}]",
                   lambda v, lo=lo, hi=hi, closed=closed: (lo <= v if closed else lo < v) and v <= hi)
                  for k, (lo, hi, closed) in UNIT_INTERVAL.items()]
        for key, what, ok in rules:
            value = OmegaConf.select(self.cfg, key, default=None)
            if value is not None and not ok(value):
                raise UserError(f"{self.shown(key, value)} is out of range; it must be {what}")

    def finite(self, node: Any = None, prefix: str = "") -> None:
        node = OmegaConf.to_container(self.cfg, resolve=True) if node is None else node
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in items:
            full = f"{prefix}{key}"
            if isinstance(value, float) and not math.isfinite(value):
                raise UserError(f"{self.shown(full, value)} is not a finite number")
            self.finite(value, full + ".") if isinstance(value, (dict, list)) else None

    def no_effect(self) -> None:
        for key in self.typed:
            for prefix, idle, why in NO_EFFECT:
                if (key == prefix or key.startswith(prefix)) and key not in SWITCHES and idle(self.cfg):
                    raise UserError(f"{self.shown(key, '')} has no effect: {why.format(method=self.cfg.method)}")


def _check_types(cfg: DictConfig) -> DictConfig:
    """Merge into the structured schema: unknown keys and wrong types fail here."""
    plain = OmegaConf.masked_copy(cfg, [k for k in cfg.keys() if k != "hydra"])
    try:
        typed = OmegaConf.merge(OmegaConf.structured(RootCfg), plain)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "config"
        reason = str(err).splitlines()[0]
        if "not in struct" in reason or "Key '" in reason and "not in" in reason:
            reason = "unknown key"
        raise UserError(f"{key}: {reason}") from err
    missing = sorted(OmegaConf.missing_keys(typed))
    if missing:
        raise UserError(f"{missing[0]}: no value; every key takes its value from the YAML under mathreason/conf/ "
                        "(config.yaml or the selected group option) or from the command line")
    return typed


_validated: dict[str, DictConfig] = {}  # validation runs once per composed config and process


def validate(cfg: DictConfig, overrides: list[str] | None = None) -> DictConfig:
    """Check the composed config; return the schema-merged copy or raise
    UserError. ``overrides`` (the command line's) let messages quote values
    as typed and catch overrides that would have no effect."""
    plain = OmegaConf.masked_copy(cfg, [k for k in cfg.keys() if k != "hydra"])
    memo = OmegaConf.to_yaml(plain) + repr(overrides)
    if memo not in _validated:
        _validated[memo] = _validate(plain, list(overrides or []))
    return _validated[memo]


def _validate(cfg: DictConfig, overrides: list[str]) -> DictConfig:
    typed = _check_types(cfg)
    check = _Checker(typed, overrides)
    check.one_of("method", METHODS)
    if typed.method in ("grpo", "dpo", "sft") and typed[typed.method] is None:
        raise UserError(f"{typed.method}: settings missing; select the method with method={typed.method}")
    for key, allowed in (("device", DEVICES), ("model.backend", BACKENDS), ("model.dtype", DTYPES),
                         ("rollout.engine", ROLLOUT_ENGINES), ("data.answer_format", ANSWER_FORMATS),
                         ("logger.mode", LOGGER_MODES), ("geometry.hold", GEOMETRY_HOLDS),
                         ("eval.sampled_evals", SAMPLED_EVALS)):
        check.one_of(key, allowed)
    for value in typed.eval.at_rollouts or ():
        _at_least("eval.at_rollouts", value, 1)
    if not str(typed.cache_dir).strip():
        raise UserError("cache_dir is empty (is MATHREASON_CACHE_DIR set to an empty string?); "
                        "unset it or name a directory")
    if typed.model.id is None and typed.model.tiny is None and typed.model.gguf_file is None:
        raise UserError("model.id: a hub id or local path is required (or a `tiny:` spec or model.gguf_file)")
    if typed.model.gguf_file is not None:
        if parse_gguf_source(typed.model.gguf_file)[0] == "file" and not Path(typed.model.gguf_file).expanduser().is_file():
            raise UserError(f"model.gguf_file: no such file: {typed.model.gguf_file}")
    if typed.model.id is not None and typed.model.tiny is not None:
        raise UserError(f"{check.shown('model.id', typed.model.id)}: model={typed.model.name} builds its own weights "
                        "(model.tiny); to load another model choose a model config that has none, "
                        "e.g. model=qwen2.5-0.5b-instruct model.id=...")
    _at_least("group_size", typed.group_size, 2)
    check.finite()
    check.ranges()
    check.no_effect()
    if typed.method == "grpo":
        from mathreason.config.geometry import plan_geometry

        for key in typed.grpo.extra:
            if key in GRPO_DERIVED:
                raise UserError(f"grpo.extra.{key}: set by {GRPO_DERIVED[key]}; change it there")

        plan_geometry(typed, n_train_prompts=None)  # raises on batch/group mismatches
    if typed.method in ("grpo", "dpo", "sft"):
        section = typed[typed.method]
        # transformers' get_scheduler drops num_warmup_steps for these two schedules
        if section.warmup_steps and section.lr_scheduler_type in ("constant", "reduce_lr_on_plateau"):
            key = f"{typed.method}.warmup_steps"
            raise UserError(f"{check.shown(key, section.warmup_steps)} has no effect: "
                            f"{typed.method}.lr_scheduler_type={section.lr_scheduler_type} has no warmup; "
                            f"add {typed.method}.lr_scheduler_type=constant_with_warmup (or another schedule)")
    conflicts(typed, check)
    if typed.method == "dpo":
        _at_least("dpo.mining.samples_per_question", typed.dpo.mining.samples_per_question, 2)
    if not typed.reward.functions:
        raise UserError("reward.functions: at least one reward function with a weight is required")
    from mathreason.scoring.rewards import REWARD_FUNCS, load_plugins

    load_plugins(typed.reward.plugins)
    for name in typed.reward.functions:
        if name not in REWARD_FUNCS:
            raise UserError(
                f"reward.functions.{name}: unknown reward function; known: {', '.join(sorted(REWARD_FUNCS))}"
            )
    for key in ("path", "train_path"):
        value = typed.data[key]
        if value is not None and not Path(value).is_file():
            raise UserError(f"data.{key}: no such file: {value}")
    if typed.model.adapter_path is not None:
        check_adapter_dir(typed.model.adapter_path)
    check_dir("cache_dir", typed.cache_dir)
    return typed


def parse_gguf_source(source: str) -> tuple[str, str | None, str]:
    """``model.gguf_file``: ``("pip", requirement, member)`` for ``pip:<requirement>#<member>``, else
    ``("file", None, path)``."""
    if source.startswith("pip:"):
        requirement, sep, member = source[4:].partition("#")
        if not sep or not requirement.strip() or not member.strip():
            raise UserError(f"model.gguf_file: {source!r}: expected pip:<requirement>#<path of the .gguf inside the wheel>")
        return "pip", requirement.strip(), member.strip()
    return "file", None, source


def file_in_path(path: str | Path) -> Path | None:
    """The first part of directory ``path`` that exists as a file (so the directory cannot be made), else None."""
    path = Path(path).expanduser()
    for part in (*reversed(path.parents), path):
        if part.exists() and not part.is_dir():
            return part
    return None


def check_dir(key: str, path: str | Path) -> None:
    """A directory mathreason will create (run dir, sweep dir, cache dir) must not lie below a file."""
    blocked = file_in_path(path)
    if blocked is not None:
        raise UserError(f"{key}={path}: {blocked} is a file, not a directory; choose a path under a directory")


def check_adapter_dir(adapter_path: str) -> None:
    """``model.adapter_path`` must hold a PEFT adapter (adapter_config.json) or a whole
    fine-tuned model (config.json), as a run's ``final/`` does."""
    path = Path(adapter_path).expanduser()
    if not path.exists():
        raise UserError(f"model.adapter_path: no such directory: {adapter_path}")
    if not path.is_dir() or not ((path / "adapter_config.json").exists() or (path / "config.json").exists()):
        raise UserError(f"model.adapter_path={adapter_path}: no adapter_config.json (a LoRA adapter) or config.json "
                        "(a fine-tuned model) in it; point it at a run's final/ directory")


def conflicts(typed: DictConfig, check: _Checker) -> None:
    """Settings that each pass alone but fail (or do nothing) together, refused before any
    machine check or download."""
    if typed.rollout.engine == "vllm" and typed.model.load_in_4bit:
        raise UserError("rollout.engine=vllm with model.load_in_4bit=true: TRL pushes the merged 4-bit weights into "
                        "vLLM before each generation, which fails (open upstream: huggingface/trl#4973); use "
                        "model.load_in_4bit=false, or rollout.engine=transformers")
    if typed.model.fast_inference:
        why = ("TRL's GRPOTrainer never uses the vLLM engine Unsloth builds (rollouts come from rollout.engine: "
               "rollout.engine=vllm for TRL's own vLLM)" if typed.model.backend == "unsloth"
               else f"only the unsloth backend has it (model.backend={typed.model.backend})")
        raise UserError(f"{check.shown('model.fast_inference', True)} has no effect: {why}")


# --------------------------------------------------------------------------
# Mistyped keys


def known_keys() -> list[str]:
    """Every key of the config schema (``grpo.learning_rate``, ...) and every config group."""
    import dataclasses

    def walk(cls, prefix: str) -> list[str]:
        out = []
        for f in dataclasses.fields(cls):
            out.append(prefix + f.name)
            sub = globals().get(str(f.type).split("|")[0].strip())  # the field's schema class, by name
            if dataclasses.is_dataclass(sub):
                out += walk(sub, f"{prefix}{f.name}.")
        return out

    return walk(RootCfg, "") + ["experiment"]


def suggest_key(key: str) -> str:
    """'; did you mean X?' for a mistyped key, else ''."""
    import difflib

    section, _, rest = key.partition(".extra.")
    if rest and section in ("grpo", "dpo", "sft"):  # a TRL field not in the YAML: Hydra adds new keys only with +
        return f"; {section}.extra takes any other TRL field with a leading +: +{key}=..."
    keys = known_keys()
    if key in keys:  # a real key whose section this composition lacks (grpo.* under method=eval)
        section = key.split(".")[0]
        return f"; the {section} section comes with method={section}" if section in ("grpo", "dpo", "sft") else ""
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.75)
    return f"; did you mean {close[0]}?" if close else ""
