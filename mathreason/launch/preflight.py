"""Checks of the machine a run runs on, done before anything heavy loads (the
config alone is mathreason.config's job): a GPU where the config needs one,
the weights the backend will actually load, no billion-parameter model
falling back to the CPU, and the ``*.extra`` fields against TRL's own config
classes. Each refusal is one line naming the key (a UserError, exit 2)."""

from __future__ import annotations

import os
import typing
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mathreason.errors import UserError
from mathreason.models.load import cuda_available, why_no_cuda

# A model of this many billion parameters (model.size_b) runs where a GPU is: on the
# CPU, in float32, it would take days and tens of GB (device=cpu insists).
GPU_MODEL_SIZE_B = 1.0


def gpu_requirements(typed: DictConfig) -> list[str]:
    """The settings (as ``key=value``) that need a CUDA GPU, first the most specific."""
    wants = []
    if typed.model.backend == "unsloth":
        wants.append("model.backend=unsloth")
    if typed.model.load_in_4bit:
        wants.append("model.load_in_4bit=true")
    if typed.rollout.engine == "vllm":
        wants.append("rollout.engine=vllm")
    if typed.device == "cuda":
        wants.append("device=cuda")
    return wants


def is_gpu_model(typed: DictConfig) -> bool:
    return typed.model.size_b is not None and typed.model.size_b >= GPU_MODEL_SIZE_B


def check_accelerator(typed: DictConfig) -> None:
    """GPU-only options stop here, before any training, on a machine without CUDA
    (where the job runs: a SLURM sweep may be started from a login node without one;
    local sweeps check it up front). ``device=auto`` does not put a model of
    ``GPU_MODEL_SIZE_B`` or more on the CPU; ``device=cpu`` insists."""
    wants_gpu = gpu_requirements(typed)
    small_or_cpu = not (typed.device == "auto" and is_gpu_model(typed))
    if cuda_available():
        if typed.device != "cpu":
            check_gpus_per_process()
        return
    if not wants_gpu and small_or_cpu:
        return
    if wants_gpu:
        raise UserError(
            f"{wants_gpu[0]} needs a CUDA GPU and none is available here; "
            "use the transformers backend on CPU (model.backend=transformers model.load_in_4bit=false rollout.engine=transformers)"
        )
    raise UserError(f"model={typed.model.name} ({typed.model.size_b}B parameters, model.size_b) would run on the "
                    f"CPU in float32 with device=auto ({why_no_cuda() or 'no usable GPU'}); run it where a GPU "
                    "is, or pass device=cpu to insist")


def check_gpus_per_process() -> None:
    """A job on several processes puts one process on each GPU of a node (LOCAL_RANK):
    more processes than GPUs would share one and run out of memory or deadlock NCCL."""
    import os

    from mathreason.processes import distributed

    if not distributed():
        return
    import torch

    local = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))
    count = torch.cuda.device_count()
    if local > count:
        raise UserError(f"{local} processes on this node but {count} GPU(s) visible: one process per GPU "
                        f"(torchrun --nproc_per_node {count}, or hydra.launcher.tasks_per_node={count})")


def looks_like_path(name: str) -> bool:
    """A local path rather than a hub id (``org/name``)."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or name.endswith(".gguf")


def hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "True"):
        return False
    import socket

    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def check_weights(typed: DictConfig) -> None:
    """The repo the backend will load is a local directory, in the Hugging Face cache, or
    downloadable from here (Unsloth with 4-bit loads its own pre-quantized repo, not model.id)."""
    from mathreason.models.load import repo_to_load

    model = typed.model
    if model.id is None or model.tiny is not None or model.get("gguf_file"):
        return
    if Path(model.id).expanduser().exists():
        return
    if looks_like_path(model.id):
        raise UserError(f"model.id={model.id}: no such directory")
    repo = repo_to_load(model)
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(repo, "config.json"), str):
        return  # in the local Hugging Face cache
    if not hub_reachable():
        what = "" if repo == model.id else f" (model.backend={model.backend} with 4-bit loads {repo})"
        raise UserError(f"model.id={model.id}{what}: not in the local Hugging Face cache and the hub cannot be "
                        f"reached (offline); download it where there is network (huggingface-cli download {repo}), "
                        "or point model.id at a local directory")


# Sampling and generation fields a TRL config accepts but that fail at the first step (or run
# to the end doing something else) when out of range: field -> (allowed, test).
EXTRA_RANGES: dict[str, tuple[str, typing.Callable[[Any], bool]]] = {
    "temperature": ("> 0", lambda v: v > 0),
    "top_p": ("in (0, 1]", lambda v: 0 < v <= 1),
    "top_k": (">= 0", lambda v: v >= 0),
    "min_p": ("in [0, 1]", lambda v: 0 <= v <= 1),
    "repetition_penalty": ("> 0", lambda v: v > 0),
    "num_iterations": (">= 1", lambda v: v >= 1),
    "epsilon": (">= 0", lambda v: v >= 0),
    "epsilon_high": (">= 0", lambda v: v >= 0),
    "beta": (">= 0", lambda v: v >= 0),
    "learning_rate": ("> 0", lambda v: v > 0),
    "weight_decay": (">= 0", lambda v: v >= 0),
    "max_completion_length": (">= 1", lambda v: v >= 1),
    "max_length": (">= 1", lambda v: v >= 1),
    "num_train_epochs": ("> 0", lambda v: v > 0),
}


def trl_config_class(method: str):
    import trl

    return {"grpo": trl.GRPOConfig, "dpo": trl.DPOConfig, "sft": trl.SFTConfig}[method]


def fits(value: Any, hint: Any) -> bool:
    """Whether ``value`` (as YAML gives it) has the type a config dataclass field declares;
    types this cannot judge (classes, enums) pass and are left to TRL."""
    import types

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(fits(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    if origin is typing.Literal:
        return value in args
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint is list or origin in (list, tuple):
        return isinstance(value, (list, tuple))
    if hint is dict or origin is dict:
        return isinstance(value, dict)
    return True


def type_name(hint: Any) -> str:
    return str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")


def check_extras(typed: DictConfig) -> None:
    """Every ``<method>.extra.<field>`` names a field of TRL's config class for the method, has
    its declared type and, for the sampling and generation fields, a value in range."""
    import dataclasses
    import difflib

    method = typed.method
    if method not in ("grpo", "dpo", "sft") or not typed[method].extra:
        return
    cls = trl_config_class(method)
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for name, value in OmegaConf.to_container(typed[method].extra, resolve=True).items():
        key = f"{method}.extra.{name}"
        if name not in hints:
            close = difflib.get_close_matches(name, names, n=1, cutoff=0.75)
            raise UserError(f"{key}: {cls.__name__} has no such field" + (f"; did you mean {close[0]}?" if close else ""))
        if not fits(value, hints[name]):
            raise UserError(f"{key}={value!r}: {cls.__name__}.{name} takes {type_name(hints[name])}")
        if name in EXTRA_RANGES and isinstance(value, (int, float)) and not isinstance(value, bool):
            allowed, ok = EXTRA_RANGES[name]
            if not ok(value):
                raise UserError(f"{key}={value} is out of range; it must be {allowed}")


def preflight(typed: DictConfig) -> None:
    """Checks that depend on where the run runs (not on the config alone), before anything heavy
    loads. With the unsloth backend, Unsloth is imported here, right after the accelerator check
    and before anything of ours imports transformers, TRL or PEFT (it patches them on import)."""
    check_accelerator(typed)
    if typed.model.backend == "unsloth":
        from mathreason.models.load import import_unsloth

        import_unsloth()
    check_weights(typed)
    check_extras(typed)
