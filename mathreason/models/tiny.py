"""The embedded default model: a tiny Qwen2 built locally, warm-started with SFT, cached.

``ensure_tiny_model(spec, cache_dir)`` returns a directory that loads with
``AutoModelForCausalLM.from_pretrained`` / ``AutoTokenizer.from_pretrained``,
exactly like a hub model. Nothing is downloaded:

1. a tokenizer built with the ``tokenizers`` library: whole words from the
   arith generator's vocabulary (with and without a leading space), every
   digit on its own, punctuation, newlines, and a character-level WordPiece
   fallback (``[UNK]`` for non-ASCII) so any text encodes; the four XML tags and
   the chat tokens are single tokens; a Qwen-style chat template;
2. a tiny ``Qwen2ForCausalLM`` (tied embeddings);
3. a short TRL ``SFTTrainer`` warm start on generated problems (completion-only
   loss) so the model knows the format and some arithmetic, leaving room for RL;
4. saved atomically under ``cache_dir/<hash of spec>`` behind a file lock.

``spec`` is the ``tiny:`` section of ``mathreason/conf/model/tiny.yaml``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mathreason.console import phase
from mathreason.errors import UserError
from mathreason.records import package_versions

log = logging.getLogger(__name__)

# Bump when the builder changes in a way that changes the artefact.
BUILDER_VERSION = 2  # 2: the arith train/eval partition is by equation chain
MARKER = "mathreason_tiny.json"

PAD, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
XML_TAGS = ("<reasoning>", "</reasoning>", "<answer>", "</answer>")

CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}"
)

# words beyond the generator's templates: the system prompt and a few common ones
_EXTRA_WORDS = (
    "Respond", "following", "format", "the", "in", "a", "an", "and", "of", "to", "is",
    "How", "many", "much", "what", "What", "total", "each", "per", "more", "less", "than",
    "dollars", "has", "have", "had", "does", "do", "did", "if", "If", "for", "with",
    "system", "user", "assistant",
)

# The keys of a tiny-model spec (model/tiny.yaml's `tiny:`, which holds the
# values): top-level keys, and the keys of its two nested sections.
SPEC_KEYS = (
    "hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size",
    "max_position_embeddings", "rope_theta", "init_seed", "warm_start", "sft",
)
SECTION_KEYS = {
    # shortcut_rate: fraction of warm-start solutions that stop one step early and
    # answer the intermediate value (an ablation knob: a habit RL can remove).
    "warm_start": ("n_problems", "seed", "generator", "shortcut_rate"),
    "sft": ("max_steps", "num_epochs", "learning_rate", "batch_size", "warmup_ratio", "lr_scheduler",
            "weight_decay", "max_length"),
}
# The BPE tokenizer's training text covers the generator's whole range (every
# operation and the comparison templates), whatever a config's difficulty: a
# fixed part of the builder (BUILDER_VERSION), not a config default.
_CORPUS_KNOBS = {"min_steps": 1, "max_steps": 3, "min_start": 2, "max_start": 50, "max_operand": 30,
                 "max_factor": 3, "max_result": 300, "ops": ["add", "sub", "mul"], "comparisons": True}


# --------------------------------------------------------------------------
# spec handling


def _plain(obj: Any) -> Any:
    """OmegaConf containers / Mappings -> plain dicts and lists (JSON-able)."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if hasattr(obj, "items") and callable(obj.items):  # DictConfig without Mapping registration
        return {str(k): _plain(v) for k, v in obj.items()}
    if hasattr(obj, "__iter__") and not isinstance(obj, (str, bytes)):
        return [_plain(v) for v in obj]
    return obj


def resolve_spec(spec: Mapping[str, Any] | None) -> dict[str, Any]:
    """``spec`` as plain dicts, checked: every key of ``SPEC_KEYS`` and
    ``SECTION_KEYS`` present (the values come from model/tiny.yaml), no others."""
    spec = _plain(spec or {})

    def exact(section: dict, keys: tuple, where: str) -> None:
        unknown = sorted(set(section) - set(keys))
        if unknown:
            raise UserError(f"{where}.{unknown[0]}: unknown key; allowed: {', '.join(keys)}")
        missing = [k for k in keys if k not in section]
        if missing:
            raise UserError(f"{where}.{missing[0]}: no value; model/tiny.yaml states the whole spec")

    exact(spec, SPEC_KEYS, "model.tiny")
    for name, keys in SECTION_KEYS.items():
        if not isinstance(spec[name], dict):
            raise UserError(f"model.tiny.{name}: must be a mapping, got {spec[name]!r}")
        exact(spec[name], keys, f"model.tiny.{name}")
    out = spec
    for key in ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size",
                "max_position_embeddings"):
        v = out[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise UserError(f"model.tiny.{key}: must be a positive integer, got {v!r}")
    if out["hidden_size"] % out["num_heads"] or out["num_heads"] % out["num_kv_heads"]:
        raise UserError(
            "model.tiny.num_heads: hidden_size must be divisible by num_heads and num_heads by "
            f"num_kv_heads, got {out['hidden_size']}/{out['num_heads']}/{out['num_kv_heads']}"
        )
    sft = out["sft"]
    if not sft.get("max_steps") and not sft.get("num_epochs"):
        raise UserError("model.tiny.sft.max_steps: set max_steps or num_epochs (> 0)")
    return out


def spec_hash(spec: Mapping[str, Any] | None) -> str:
    payload = json.dumps({"builder": BUILDER_VERSION, "spec": resolve_spec(spec)}, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


# --------------------------------------------------------------------------
# tokenizer


def _tokenizer_corpus(n_problems: int = 4000) -> list[str]:
    """Text the BPE merges are learnt from: generated problems in the chat format."""
    from mathreason.data.arith import generate_problems, vocabulary
    from mathreason.data.prompts import SYSTEM_PROMPT, format_completion

    texts = [SYSTEM_PROMPT, " ".join(_EXTRA_WORDS), "system\nuser\nassistant\n" * 2]
    texts += [w + " " + w + " " + w for w in vocabulary()]  # every template word, also after a space
    for r in generate_problems(n_problems, seed=12345, **_CORPUS_KNOBS):
        texts.append(r["question"])
        texts.append(format_completion(r["solution"], r["answer"]))
    return texts


def build_tokenizer(vocab_size: int = 1024):
    """A Qwen2-style byte-level BPE tokenizer learnt from generated problems.

    It uses exactly the pipeline ``Qwen2Tokenizer`` rebuilds when
    ``AutoTokenizer`` loads a ``qwen2`` checkpoint (NFC, Qwen's split regex --
    every digit its own piece --, byte-level), so the saved directory
    round-trips. Byte-level means any text encodes, and decode(encode(text))
    == text for any NFC text. Template words become single tokens; the chat
    tokens and the four XML tags are added tokens.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_tokenizer_corpus(), trainer=trainer)
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]

    tok = Qwen2Tokenizer(
        vocab=model["vocab"],
        merges=merges,
        unk_token=None,
        bos_token=None,
        eos_token=IM_END,
        pad_token=PAD,
        chat_template=CHAT_TEMPLATE,
        clean_up_tokenization_spaces=False,
        model_max_length=4096,
        split_special_tokens=False,
    )
    tok.add_special_tokens({"additional_special_tokens": [IM_START, IM_END]})
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in XML_TAGS])
    return tok


# --------------------------------------------------------------------------
# model + warm start


def _available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def limit_torch_threads() -> None:
    """Never use more intra-op threads than the cores this process may run on."""
    import torch

    cores = _available_cores()
    if torch.get_num_threads() > cores:
        torch.set_num_threads(cores)


def build_model(spec: Mapping[str, Any], tokenizer):
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    s = resolve_spec(spec)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=s["hidden_size"],
        intermediate_size=s["intermediate_size"],
        num_hidden_layers=s["num_layers"],
        num_attention_heads=s["num_heads"],
        num_key_value_heads=s["num_kv_heads"],
        max_position_embeddings=s["max_position_embeddings"],
        rope_theta=float(s["rope_theta"]),
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        use_sliding_window=False,
        attention_dropout=0.0,
    )
    torch.manual_seed(int(s["init_seed"]))
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
    )
    return model


def warm_start_dataset(spec: Mapping[str, Any]):
    """Conversational prompt-completion rows from the train partition of the generator."""
    from datasets import Dataset

    from mathreason.data.arith import generate_problems
    from mathreason.data.prompts import sft_example

    ws = resolve_spec(spec)["warm_start"]
    rows = generate_problems(int(ws["n_problems"]), int(ws["seed"]), partition="train",
                             where="model.tiny.warm_start.generator", **dict(ws["generator"] or {}))
    rng = random.Random(int(ws["seed"]))
    examples = []
    for r in rows:
        solution, answer = r["solution"], r["answer"]
        if rng.random() < float(ws["shortcut_rate"]):
            solution, answer = shortcut_solution(solution)
        examples.append(sft_example(r["question"], solution, answer))
    return Dataset.from_list(examples)


def shortcut_solution(solution: str) -> tuple[str, str]:
    """The worked solution cut one step short: drop the last line and answer
    the value reached before it (a plausible, wrong habit)."""
    lines = solution.split("\n")
    if len(lines) > 1:
        lines = lines[:-1]
    value = re.findall(r"-?\d+", lines[-1])[-1]
    return "\n".join(lines), value


def warm_start(model, tokenizer, spec: Mapping[str, Any], work_dir: str | Path):
    """SFT on generated problems (loss on the completion only). Returns the model."""
    from trl import SFTConfig, SFTTrainer

    from mathreason.console import quiet_trainer

    s = resolve_spec(spec)
    sft = s["sft"]
    args = SFTConfig(
        output_dir=str(work_dir),
        max_steps=int(sft["max_steps"] or -1),
        num_train_epochs=float(sft["num_epochs"] or 1),
        per_device_train_batch_size=int(sft["batch_size"]),
        learning_rate=float(sft["learning_rate"]),
        lr_scheduler_type=str(sft["lr_scheduler"]),
        warmup_steps=float(sft["warmup_ratio"]),
        weight_decay=float(sft["weight_decay"]),
        max_length=int(sft["max_length"]),
        completion_only_loss=True,
        packing=False,
        bf16=False,
        fp16=False,
        report_to="none",
        save_strategy="no",
        logging_steps=25,
        disable_tqdm=False,
        seed=int(s["init_seed"]),
        dataloader_num_workers=0,
        dataloader_pin_memory=False,  # CPU build
        gradient_checkpointing=False,
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=warm_start_dataset(s),
                         processing_class=tokenizer)
    quiet_trainer(trainer, "warm start (SFT)")
    trainer.train()
    return trainer.model


# --------------------------------------------------------------------------
# cache


def ensure_tiny_model(spec: Mapping[str, Any] | None, cache_dir: str | Path) -> Path:
    """Build (once) and return the directory of the warm-started tiny model.

    The directory is ``cache_dir/<hash of spec>``; concurrent callers wait on a
    lock and reuse the first build. Loads with ``AutoModelForCausalLM`` /
    ``AutoTokenizer.from_pretrained``.
    """
    from mathreason.models.cache import build_once

    s = resolve_spec(spec)
    key = spec_hash(s)
    final = Path(cache_dir).expanduser() / key

    def build(out: Path, work: Path) -> dict[str, Any]:
        limit_torch_threads()
        t0 = time.perf_counter()
        phase("building the embedded tiny model", f"first use only, about 8 minutes on 2 cores; cached in {final}")
        tokenizer = build_tokenizer()
        model = build_model(s, tokenizer)
        n_params = sum(p.numel() for p in model.parameters())
        model = warm_start(model, tokenizer, s, work / "sft")
        shutil.rmtree(work / "sft", ignore_errors=True)
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        log.info("tiny model %s built in %.0f s (%d params)", key, time.perf_counter() - t0, n_params)
        return {
            "spec": s, "hash": key, "builder_version": BUILDER_VERSION,
            "n_params": n_params, "build_seconds": round(time.perf_counter() - t0, 1),
            # the same spec can train to different weights under other library versions
            "versions": package_versions(),
            "weights_sha256": hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest(),
        }

    return build_once(cache_dir, key, MARKER, build)
