"""Load model + tokenizer (+ LoRA) for a backend.

``model.backend=transformers`` (CPU or GPU) uses transformers' real
``from_pretrained`` — on a hub id, a local path, or the embedded tiny model's
cache dir — and hands TRL a PEFT ``LoraConfig``. ``model.backend=unsloth``
(GPU only) uses Unsloth's FastLanguageModel with 4-bit weights and LoRA.
GPU-only libraries are imported here, lazily, never at module import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mathreason.errors import UserError

NVIDIA_VERSION = Path("/proc/driver/nvidia/version")


def cuda_available() -> bool:
    """Whether a CUDA device is usable, without importing torch when there is
    plainly none (no NVIDIA driver on the machine)."""
    import os

    if not NVIDIA_VERSION.parent.exists() and not os.environ.get("CUDA_VISIBLE_DEVICES"):
        return False
    import torch

    return torch.cuda.is_available()


def repo_to_load(model_cfg: Any) -> str:
    """The hub repo the backend reads for ``model.id``: Unsloth with 4-bit maps a model to its own
    pre-quantized repo (``Qwen/Qwen2.5-3B-Instruct`` -> ``unsloth/Qwen2.5-3B-Instruct-unsloth-bnb-4bit``,
    unsloth/models/mapper.py), which is what an offline node needs in its cache."""
    import sys

    if model_cfg.backend != "unsloth" or not model_cfg.load_in_4bit:
        return model_cfg.id
    if "unsloth" not in sys.modules:
        import_unsloth()
    from unsloth.models.mapper import FLOAT_TO_INT_MAPPER

    return FLOAT_TO_INT_MAPPER.get(model_cfg.id) or FLOAT_TO_INT_MAPPER.get(model_cfg.id.lower()) or model_cfg.id


def why_no_cuda() -> str | None:
    """Why torch cannot use a CUDA GPU here (None when it can): no GPU driver, a CPU build of
    torch, or a driver that this torch's CUDA does not run on (PyPI torch 2.13/2.14 are CUDA 13
    builds: driver >= 580)."""
    import os
    import re

    if not NVIDIA_VERSION.exists() and not os.environ.get("CUDA_VISIBLE_DEVICES"):
        return "no NVIDIA GPU driver on this machine"
    import torch

    if torch.cuda.is_available():
        return None
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is a CPU build"
    try:
        found = re.search(r"Kernel Module\s+(?:for \S+\s+)?([\d.]+)", NVIDIA_VERSION.read_text())
    except OSError:
        found = None
    driver = found.group(1) if found else "of unknown version"
    return (f"an NVIDIA driver ({driver}) is here but torch {torch.__version__} (CUDA {torch.version.cuda}) "
            "cannot use it: the driver is likely too old for this CUDA (CUDA 13 needs >= 580); install a torch "
            "built for your driver's CUDA (make install-gpu)")


def resolve_device(device: str) -> str:
    """``auto``: cuda when torch can use it, else cpu, saying why when a GPU driver is present."""
    if device != "auto":
        return device
    reason = why_no_cuda()
    if reason and reason != "no NVIDIA GPU driver on this machine":
        import logging

        logging.getLogger("mathreason").warning("device=auto runs on the CPU: %s", reason)
    return "cpu" if reason else "cuda"


def model_source(model_cfg: Any, cache_dir: str | Path) -> str:
    """Where from_pretrained reads: the hub id/path, the tiny model built on
    first use, or a GGUF file (``model.gguf_file``) converted once to safetensors."""
    if model_cfg.tiny is not None:
        from mathreason.models.tiny import ensure_tiny_model

        return str(ensure_tiny_model(model_cfg.tiny, Path(cache_dir) / "tiny"))
    if model_cfg.get("gguf_file"):
        from mathreason.models.gguf import ensure_gguf_model

        return str(ensure_gguf_model(model_cfg.gguf_file, Path(cache_dir) / "gguf"))
    return model_cfg.id


def lora_config(model_cfg: Any):
    """PEFT LoraConfig from ``model.lora`` (None when LoRA is off)."""
    if not model_cfg.lora.enabled:
        return None
    from omegaconf import OmegaConf
    from peft import LoraConfig

    targets = model_cfg.lora.target_modules
    if not isinstance(targets, str):
        targets = list(OmegaConf.to_container(targets)) if hasattr(targets, "_content") else list(targets)
    return LoraConfig(
        r=model_cfg.lora.r,
        lora_alpha=model_cfg.lora.alpha,
        lora_dropout=model_cfg.lora.dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
    )


def _torch_dtype(name: str, device: str):
    import torch

    if name == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    if device == "cpu" and name != "float32":
        return torch.float32  # half precision on CPU is slow and unsupported by some ops
    return getattr(torch, name)


def trained_weights(adapter_path: str | None) -> Path | None:
    """``adapter_path`` when it holds a whole fine-tuned model (a full fine-tuning run's
    ``final/``: config.json and weights, no adapter_config.json), loaded in place of the base."""
    if adapter_path is None:
        return None
    path = Path(adapter_path)
    if (path / "adapter_config.json").exists() or not (path / "config.json").exists():
        return None
    return path


def load_model_and_tokenizer(model_cfg: Any, cache_dir: str | Path, device: str, seed: int = 0):
    """Returns ``(model, tokenizer, peft_config)``; ``peft_config`` is for TRL to
    apply (None when the backend already attached the adapter, or LoRA is off)."""
    if model_cfg.backend == "unsloth":
        return _load_unsloth(model_cfg, seed)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    trained = trained_weights(model_cfg.adapter_path)
    source = str(trained) if trained else model_source(model_cfg, cache_dir)
    kwargs: dict[str, Any] = {"dtype": _torch_dtype(model_cfg.dtype, device)}
    if model_cfg.load_in_4bit:
        try:
            import bitsandbytes  # noqa: F401
            from transformers import BitsAndBytesConfig
        except ImportError as err:
            raise UserError(
                "model.load_in_4bit=true needs bitsandbytes: pip install 'mathreason[gpu]'"
            ) from err
        import torch

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16
        )
    tokenizer = AutoTokenizer.from_pretrained(source)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    if not model_cfg.load_in_4bit:
        model.to(device)
    peft_config = lora_config(model_cfg)
    check_lora_targets(model, peft_config)
    if model_cfg.adapter_path is not None and trained is None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, model_cfg.adapter_path, is_trainable=True)
        peft_config = None  # the loaded adapter is trained further
    return model, tokenizer, peft_config


def check_lora_targets(model, peft_config) -> None:
    """Named LoRA target modules must exist in the model (PEFT would fail
    later, inside the trainer, with a traceback)."""
    targets = getattr(peft_config, "target_modules", None)
    if not targets or isinstance(targets, str):
        return  # "all-linear" or a regex: PEFT resolves it
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = sorted(set(targets) - names)
    if missing:
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if type(m).__name__ == "Linear"})
        raise UserError(f"model.lora.target_modules: {', '.join(missing)} not in this model; "
                        f"its linear layers: {', '.join(linear)} (or use all-linear)")


# Modules Unsloth patches when it is imported (unsloth/_gpu_init.py: critical_modules): a name bound
# from them before (``from trl import GRPOTrainer``) keeps the unpatched object.
UNSLOTH_PATCHES = ("trl", "transformers", "peft")


def import_unsloth():
    """Import Unsloth before anything of ours imports transformers, TRL or PEFT (the job calls it right
    after the config is checked), so the trainer classes the methods look up are the ones it patched."""
    import sys

    early = [name for name in UNSLOTH_PATCHES if name in sys.modules]
    try:
        import unsloth
    except ImportError as err:
        raise UserError(
            "model.backend=unsloth needs Unsloth and a CUDA GPU: pip install 'mathreason[unsloth]'"
        ) from err
    if early:  # a bug of ours, not the user's: say so rather than train with unpatched classes
        raise RuntimeError(f"{', '.join(early)} imported before unsloth; Unsloth's patches would not apply")
    return unsloth


def _load_unsloth(model_cfg: Any, seed: int):
    import sys

    FastLanguageModel = (sys.modules.get("unsloth") or import_unsloth()).FastLanguageModel
    kwargs = {}
    if model_cfg.fast_inference:  # Unsloth's vLLM engine for rollouts
        kwargs = {"max_lora_rank": model_cfg.lora.r, "gpu_memory_utilization": model_cfg.gpu_memory_utilization}
    # a trained adapter dir: Unsloth reads its base model from adapter_config.json and attaches it
    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=model_cfg.adapter_path or model_cfg.id,
        max_seq_length=model_cfg.max_seq_length,
        load_in_4bit=model_cfg.load_in_4bit,
        fast_inference=model_cfg.fast_inference,
        **kwargs,
    )
    if model_cfg.lora.enabled and not model_cfg.adapter_path:
        targets = model_cfg.lora.target_modules
        model = FastLanguageModel.get_peft_model(
            model,
            r=model_cfg.lora.r,
            target_modules=list(targets) if not isinstance(targets, str) else targets,
            lora_alpha=model_cfg.lora.alpha,
            lora_dropout=model_cfg.lora.dropout,
            use_gradient_checkpointing="unsloth",
            random_state=seed,
        )
    return model, tokenizer, None


def count_parameters(model) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"model/parameters": total, "model/trainable_parameters": trainable}
