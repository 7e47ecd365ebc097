"""The typed schema of the composed config, checked before anything heavy runs.

The YAML under ``conf/`` is primary; these dataclasses only say which keys
exist, their types and what values are allowed (verl-style). ``validate``
turns the first problem it finds into a one-line :class:`UserError` that names
the key. No torch import here: ``--help`` and ``--cfg job`` stay fast.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mathreason.errors import UserError

METHODS = ("grpo", "dpo", "eval")
BACKENDS = ("transformers", "unsloth")
ROLLOUT_ENGINES = ("transformers", "vllm")
ANSWER_FORMATS = ("gsm8k", "number", "latex", "boxed")
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("float32", "bfloat16", "float16", "auto")
LOGGER_MODES = ("auto", "online", "offline", "disabled")
GEOMETRY_HOLDS = ("rollouts", "prompts")
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
    enabled: bool = False
    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: Any = "all-linear"


@dataclass
class ModelCfg:
    name: str = MISSING
    id: str | None = None
    backend: str = "transformers"
    dtype: str = "float32"
    load_in_4bit: bool = False
    adapter_path: str | None = None
    max_seq_length: int = 2048
    fast_inference: bool = False  # unsloth: vLLM-backed generation
    gpu_memory_utilization: float = 0.5  # unsloth fast_inference only
    lora: LoraCfg = field(default_factory=LoraCfg)
    tiny: Dict[str, Any] | None = None


@dataclass
class DataCfg:
    name: str = MISSING
    hub_id: str | None = None
    hub_config: str | None = None
    train_split: str | None = "train"
    eval_split: str | None = "test"
    path: str | None = None
    train_path: str | None = None
    question_field: str = "question"
    answer_field: str = "answer"
    answer_format: str = "number"
    solution_field: str | None = None
    max_train: int | None = None
    max_eval: int | None = None
    # embedded generator only
    n_train: int | None = None
    n_eval: int | None = None
    seed: int | None = None
    generator: Dict[str, Any] | None = None


@dataclass
class RewardCfg:
    name: str = MISSING
    functions: Dict[str, float] = field(default_factory=dict)
    plugins: List[str] = field(default_factory=list)


@dataclass
class GroupSizeCfg:
    num_generations: int = MISSING


@dataclass
class LoggerCfg:
    name: str = "none"
    project: str | None = None
    entity: str | None = None
    group: str | None = None
    tags: List[str] = field(default_factory=list)
    mode: str = "disabled"


@dataclass
class GeometryCfg:
    hold: str = "rollouts"
    rollouts_per_step: int = 64
    prompts_per_step: int = 4
    epochs: float = 1.0
    max_steps: int | None = None
    scale_lr: bool = True
    lr_reference_group_size: int = 16
    grad_accum: int = 1


@dataclass
class EvalCfg:
    every_n_steps: int = 10
    max_samples: int | None = 200
    batch_size: int = 64
    max_new_tokens: int = 96
    num_samples: int = 1
    temperature: float = 0.8
    save_samples: bool = True


@dataclass
class CheckpointCfg:
    every_n_steps: int = 0
    keep: int = 2
    resume: bool = True


@dataclass
class RolloutCfg:
    engine: str = "transformers"
    vllm_mode: str = "colocate"
    vllm_gpu_memory_utilization: float = 0.3
    vllm_server_base_url: str | None = None


@dataclass
class GRPOCfg:
    learning_rate: float = 1e-5
    lr_scheduler_type: str = "constant"
    warmup_steps: Any = 0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    beta: float = 0.0
    loss_type: str = "dapo"
    scale_rewards: str = "group"
    epsilon: float = 0.2
    epsilon_high: float | None = None
    num_iterations: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_completion_length: int = 96
    mask_truncated_completions: bool = False
    logging_steps: int = 1
    log_completions: bool = True
    extra: Dict[str, Any] = field(default_factory=dict)


@dataclass
class MiningCfg:
    samples_per_question: int = 4
    temperature: float = 1.0
    max_new_tokens: int = 96
    batch_size: int = 64
    max_questions: int | None = None


@dataclass
class DPOCfg:
    rounds: int = 1
    pairs_path: str | None = None
    mining: MiningCfg = field(default_factory=MiningCfg)
    learning_rate: float = 5e-5
    lr_scheduler_type: str = "constant"
    warmup_steps: Any = 0
    beta: float = 0.1
    loss_type: str = "sigmoid"
    epochs: float = 1.0
    batch_size: int = 16
    grad_accum: int = 1
    max_length: int = 512
    precompute_ref_log_probs: bool = False
    logging_steps: int = 1
    extra: Dict[str, Any] = field(default_factory=dict)


@dataclass
class RootCfg:
    method: str = MISSING
    seed: int = 0
    cache_dir: str = MISSING
    device: str = "auto"
    threads: int | None = None
    experiment_name: str = "default"
    model: ModelCfg = field(default_factory=ModelCfg)
    data: DataCfg = field(default_factory=DataCfg)
    reward: RewardCfg = field(default_factory=RewardCfg)
    group_size: GroupSizeCfg = field(default_factory=GroupSizeCfg)
    logger: LoggerCfg = field(default_factory=LoggerCfg)
    geometry: GeometryCfg = field(default_factory=GeometryCfg)
    eval: EvalCfg = field(default_factory=EvalCfg)
    rollout: RolloutCfg = field(default_factory=RolloutCfg)
    checkpoint: CheckpointCfg = field(default_factory=CheckpointCfg)
    grpo: GRPOCfg | None = None
    dpo: DPOCfg | None = None


def _one_of(key: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise UserError(f"{key}={value!r} is not allowed; choose one of: {', '.join(map(str, allowed))}")


def _at_least(key: str, value: Any, low: float) -> None:
    if value is not None and value < low:
        raise UserError(f"{key}={value} is too small; it must be >= {low}")


def _check_types(cfg: DictConfig) -> DictConfig:
    """Merge into the structured schema: unknown keys and wrong types fail here."""
    plain = OmegaConf.masked_copy(cfg, [k for k in cfg.keys() if k != "hydra"])
    try:
        return OmegaConf.merge(OmegaConf.structured(RootCfg), plain)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "config"
        reason = str(err).splitlines()[0]
        if "not in struct" in reason or "Key '" in reason and "not in" in reason:
            reason = "unknown key"
        raise UserError(f"{key}: {reason}") from err


def cuda_available() -> bool:
    """Whether a CUDA device is usable, without importing torch when there is
    plainly none (no NVIDIA driver on the machine)."""
    if not Path("/proc/driver/nvidia").exists() and not os.environ.get("CUDA_VISIBLE_DEVICES"):
        return False
    import torch

    return torch.cuda.is_available()


def validate(cfg: DictConfig) -> DictConfig:
    """Check the composed config; return the schema-merged copy or raise UserError."""
    typed = _check_types(cfg)
    _one_of("method", typed.method, METHODS)
    if typed.method in ("grpo", "dpo") and typed[typed.method] is None:
        raise UserError(f"{typed.method}: settings missing; select the method with method={typed.method}")
    _one_of("device", typed.device, DEVICES)
    _one_of("model.backend", typed.model.backend, BACKENDS)
    _one_of("model.dtype", typed.model.dtype, DTYPES)
    _one_of("rollout.engine", typed.rollout.engine, ROLLOUT_ENGINES)
    _one_of("data.answer_format", typed.data.answer_format, ANSWER_FORMATS)
    _one_of("logger.mode", typed.logger.mode, LOGGER_MODES)
    _one_of("geometry.hold", typed.geometry.hold, GEOMETRY_HOLDS)
    if typed.model.id is None and typed.model.tiny is None:
        raise UserError("model.id: a hub id or local path is required (or a `tiny:` spec for the embedded model)")
    _at_least("group_size.num_generations", typed.group_size.num_generations, 2)
    _at_least("geometry.rollouts_per_step", typed.geometry.rollouts_per_step, 1)
    _at_least("geometry.prompts_per_step", typed.geometry.prompts_per_step, 1)
    _at_least("geometry.grad_accum", typed.geometry.grad_accum, 1)
    _at_least("geometry.max_steps", typed.geometry.max_steps, 1)
    if typed.geometry.epochs <= 0:
        raise UserError(f"geometry.epochs={typed.geometry.epochs} must be > 0")
    _at_least("eval.batch_size", typed.eval.batch_size, 1)
    _at_least("eval.num_samples", typed.eval.num_samples, 1)
    _at_least("eval.max_samples", typed.eval.max_samples, 1)
    _at_least("eval.every_n_steps", typed.eval.every_n_steps, 0)
    _at_least("threads", typed.threads, 1)
    if typed.method == "grpo":
        from mathreason.geometry import plan_geometry

        for key in typed.grpo.extra:
            if key in GRPO_DERIVED:
                raise UserError(f"grpo.extra.{key}: set by {GRPO_DERIVED[key]}; change it there")

        plan_geometry(typed, n_train_prompts=None)  # raises on batch/group mismatches
    if typed.method == "dpo":
        _at_least("dpo.rounds", typed.dpo.rounds, 1)
        _at_least("dpo.mining.samples_per_question", typed.dpo.mining.samples_per_question, 2)
    if not typed.reward.functions:
        raise UserError("reward.functions: at least one reward function with a weight is required")
    from mathreason.rewards import REWARD_FUNCS, load_plugins

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
    if typed.model.adapter_path is not None and not Path(typed.model.adapter_path).exists():
        raise UserError(f"model.adapter_path: no such directory: {typed.model.adapter_path}")
    _check_accelerator(typed)
    return typed


def _check_accelerator(typed: DictConfig) -> None:
    """GPU-only options stop here, before any training, on a machine without CUDA."""
    wants_gpu = []
    if typed.model.backend == "unsloth":
        wants_gpu.append("model.backend=unsloth")
    if typed.model.load_in_4bit:
        wants_gpu.append("model.load_in_4bit=true")
    if typed.rollout.engine == "vllm":
        wants_gpu.append("rollout.engine=vllm")
    if typed.device == "cuda":
        wants_gpu.append("device=cuda")
    if wants_gpu and not cuda_available():
        raise UserError(
            f"{wants_gpu[0]} needs a CUDA GPU and none is available here; "
            "use the transformers backend on CPU (model.backend=transformers model.load_in_4bit=false rollout.engine=transformers)"
        )
