"""DPO from on-policy correct/incorrect pairs, around TRL's DPOTrainer.

Each round: (1) **mine** — sample K completions per training question from the
current policy, score them with the configured reward set, and pair the best
correct completion (chosen) with the worst incorrect one (rejected);
questions whose K samples are all right or all wrong give no pair and are
counted; (2) **train** with DPOTrainer on those pairs. ``dpo.rounds=N``
repeats mine -> train with the updated policy (iterative/online DPO);
``dpo.pairs_path`` reuses a mined pair file for the first round.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import shutil
from pathlib import Path
from typing import Any

from mathreason.console import phase, quiet_trainer
from mathreason.errors import UserError
from mathreason.methods.common import (
    RunContext,
    common_training_args,
    run_summary,
    train_with_evals,
    trl_config,
    with_telemetry,
)
from mathreason.records.files import numbered_jsonl, write_atomic

PAIR_FIELDS = ("prompt", "chosen", "rejected")
log = logging.getLogger("mathreason")


def build_pairs(rows: list[dict], samples: list[list[str]], totals: list[list[float]],
                correct: list[list[bool]]) -> tuple[list[dict], dict[str, Any]]:
    """Pair a correct completion (highest total reward) with an incorrect one
    (lowest total reward) per question; count the questions that give none."""
    pairs, all_right, all_wrong = [], 0, 0
    for row, texts, scores, oks in zip(rows, samples, totals, correct):
        right = [i for i, ok in enumerate(oks) if ok]
        wrong = [i for i, ok in enumerate(oks) if not ok]
        if not wrong:
            all_right += 1
            continue
        if not right:
            all_wrong += 1
            continue
        c = max(right, key=lambda i: scores[i])
        r = min(wrong, key=lambda i: scores[i])
        pairs.append({
            "prompt": row["prompt"],
            "chosen": [{"role": "assistant", "content": texts[c]}],
            "rejected": [{"role": "assistant", "content": texts[r]}],
            "chosen_reward": scores[c],
            "rejected_reward": scores[r],
            "question": row["question"],
            "answer": row["answer"],
        })
    n = len(rows)
    stats = {
        "questions": n,
        "samples": sum(len(s) for s in samples),
        "pairs": len(pairs),
        "yield": len(pairs) / n if n else 0.0,
        "all_correct": all_right,
        "all_wrong": all_wrong,
        "mean_reward_gap": (sum(p["chosen_reward"] - p["rejected_reward"] for p in pairs) / len(pairs)) if pairs else 0.0,
        "sample_accuracy": sum(sum(c) for c in correct) / max(1, sum(len(c) for c in correct)),
    }
    return pairs, stats


def mine_pairs(model, tokenizer, rows: list[dict], ctx: RunContext, round_no: int) -> tuple[list[dict], dict]:
    """Sample K completions per question with the current policy and pair them."""
    from mathreason.scoring.answers import answers_match, extract_xml_answer
    from mathreason.scoring.evaluation import generate_completions
    from mathreason.scoring.rewards import build_reward_funcs, score_completions

    mining = ctx.cfg.dpo.mining
    k = int(mining.samples_per_question)
    samples = generate_completions(
        model, tokenizer, [r["prompt"] for r in rows],
        max_new_tokens=mining.max_new_tokens, batch_size=max(1, mining.batch_size // k),
        num_samples=k, temperature=mining.temperature, greedy=False, desc=f"mine pairs (round {round_no})",
    )
    funcs, weights = build_reward_funcs(ctx.cfg.reward.functions)
    totals, correct = [], []
    for row, texts in zip(rows, samples):
        scores, _ = score_completions(
            funcs, weights, [row["prompt"]] * k, texts,
            answer=[row["answer"]] * k, answer_format=[row["answer_format"]] * k,
        )
        totals.append(scores)
        correct.append([answers_match(extract_xml_answer(t), row["answer"], row["answer_format"]) for t in texts])
    pairs, stats = build_pairs(rows, samples, totals, correct)
    # the sampling budget in tokens, as GRPO's train/cumulative_generated_tokens counts it (+1: the end token)
    stats["generated_tokens"] = sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) + 1
                                    for texts in samples for t in texts)
    return pairs, stats


def save_pairs(path: Path, pairs: list[dict], stats: dict) -> None:
    """The stats, then the pairs, each written whole or not at all (a re-run
    reuses a round's pairs only when both are there)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path.with_suffix(".stats.json"), json.dumps(stats, indent=2))
    write_atomic(path, "".join(json.dumps(p) + "\n" for p in pairs))


def load_pairs(path: str | Path) -> list[dict]:
    """Read a pair file; a bad line stops with file:line."""
    pairs = []
    for number, pair in numbered_jsonl(path, error=UserError):
        missing = [f for f in PAIR_FIELDS if f not in pair]
        if missing:
            raise UserError(f"{path}:{number}: missing field(s) {', '.join(missing)} (expected: {', '.join(PAIR_FIELDS)})")
        pairs.append(pair)
    if not pairs:
        raise UserError(f"dpo.pairs_path: {path} holds no pairs")
    return pairs


def mining_rows(ctx: RunContext, round_no: int) -> list[dict]:
    """The questions mined in a round: all training questions, or a fresh
    slice of ``dpo.mining.max_questions`` per round."""
    rows = ctx.train_rows
    cap = ctx.cfg.dpo.mining.max_questions
    if cap is None or cap >= len(rows):
        return rows
    start = ((round_no - 1) * cap) % len(rows)
    return (rows + rows)[start : start + cap]


def dpo_args(ctx: RunContext, round_no: int) -> dict[str, Any]:
    cfg = ctx.cfg.dpo
    args = common_training_args(ctx, cfg, skip=("rounds", "pairs_path", "mining", "epochs", "batch_size", "grad_accum"))
    args.update(
        output_dir=str(ctx.run_dir / "checkpoints" / f"round_{round_no}"),
        num_train_epochs=float(cfg.epochs),
        per_device_train_batch_size=int(cfg.batch_size),
        gradient_accumulation_steps=int(cfg.grad_accum),
    )
    return args


ROUND_DONE = "done.json"


def round_dir(ctx: RunContext, round_no: int) -> Path:
    """A round's DPOTrainer output dir (its checkpoints) and its completion record."""
    return ctx.run_dir / "checkpoints" / f"round_{round_no}"


def _save_rng(path: Path) -> None:
    """Python, NumPy and torch RNG states, so a resumed run mines the next
    round's pairs from the same random stream as an uninterrupted one."""
    import random

    import numpy as np
    import torch

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    torch.save(state, path)


def _load_rng(path: Path) -> None:
    import random

    import numpy as np
    import torch

    state = torch.load(path, weights_only=False)
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _read_done(ctx: RunContext, round_no: int) -> dict | None:
    try:
        record = json.loads((round_dir(ctx, round_no) / ROUND_DONE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("round") == round_no else None


def completed_rounds(ctx: RunContext) -> list[dict]:
    """Completion records of the rounds an earlier attempt of this run
    finished (a prefix: round 1, 2, …), the last one with its trained model
    intact. When that model is lost or damaged, the rounds after round 1's
    mining are set aside (one warning) and the run starts over at round 1."""
    from mathreason.records.checkpoints import weights_problem

    done = []
    for round_no in range(1, int(ctx.cfg.dpo.rounds) + 1):
        record = _read_done(ctx, round_no)
        if record is None:
            break
        done.append(record)
    if done:
        last = done[-1]
        model_dir = ctx.run_dir / last["model"]
        problem = weights_problem(model_dir) if model_dir.is_dir() else f"{last['model']}/ missing"
        if not problem and last["round"] < int(ctx.cfg.dpo.rounds):
            if not (round_dir(ctx, last["round"]) / "rng_state.pth").exists():
                problem = "rng_state.pth missing"
        if not problem:
            return done
        log.warning("dpo resume: round %d's trained model is incomplete (%s); rounds 2+ are set aside and the "
                    "run starts over at round 1", last["round"], problem)
        _set_aside_rounds(ctx, first=1)
    return []


def _set_aside_rounds(ctx: RunContext, first: int) -> None:
    """Rename the records of rounds >= ``first`` (round dirs; pair files from
    round 2 on, mined by a policy that is to be retrained) to ``stale-*``."""
    for round_no in range(first, int(ctx.cfg.dpo.rounds) + 1):
        paths = [round_dir(ctx, round_no)]
        if round_no > 1:
            pair_file = ctx.run_dir / "pairs" / f"round_{round_no}.jsonl"
            paths += [pair_file, pair_file.with_suffix(".stats.json")]
        for path in paths:
            if path.exists():
                target = path.with_name(f"stale-{path.name}")
                if target.exists():
                    shutil.rmtree(target) if target.is_dir() else target.unlink()
                path.rename(target)


def _load_round_model(model, path: Path, device: str):
    """The policy a completed round left (its adapter or full model), on top
    of the freshly loaded base ``model``."""
    from peft import PeftModel

    if (path / "adapter_config.json").exists():
        if isinstance(model, PeftModel):  # the backend attached the adapter already
            from peft import set_peft_model_state_dict
            from peft.utils import load_peft_weights

            set_peft_model_state_dict(model, load_peft_weights(str(path), device=device))
            return model
        return PeftModel.from_pretrained(model, str(path), is_trainable=True)
    from transformers import AutoModelForCausalLM

    dtype = next(model.parameters()).dtype
    del model
    return AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype).to(device)


def _reuse_pairs(pair_file: Path) -> tuple[list[dict], dict] | None:
    """A round's pairs as an earlier attempt mined them (the pair file is
    written whole or not at all, after its stats)."""
    stats_file = pair_file.with_suffix(".stats.json")
    if not (pair_file.exists() and stats_file.exists()):
        return None
    try:
        stats = json.loads(stats_file.read_text())
        pairs = load_pairs(pair_file)
    except (OSError, ValueError, UserError):
        return None
    return pairs, stats


def run(ctx: RunContext) -> dict[str, Any]:
    """Round after round: mine, train, save. A re-run after an interruption
    resumes at the round it was in: completed rounds' pairs and trained model
    are reused, the round in progress reuses its mined pairs and resumes from
    its last complete checkpoint (``checkpoint.every_n_steps``) or restarts."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from mathreason.models.load import load_model_and_tokenizer
    from mathreason.records.checkpoints import checkpoint_step, find_checkpoint
    from mathreason.records.telemetry import Telemetry

    cfg = ctx.cfg
    rounds = int(cfg.dpo.rounds)
    telemetry = Telemetry(ctx.run_dir, ctx.device)
    done = completed_rounds(ctx) if ctx.resume else []
    sampled = done[-1]["sampled"] if done else 0
    generated_tokens = sum(d["stats"].get("generated_tokens", 0) for d in done)
    telemetry.step_offset = done[-1]["step_offset"] if done else 0
    telemetry.train_totals = done[-1].get("train_totals", {}) if done else {}
    all_stats = [d["stats"] for d in done]
    first = len(done) + 1
    if first <= rounds:
        trl_config(DPOConfig, dpo_args(ctx, first), "dpo")  # TRL's own checks, before the model loads
        phase("loading model", cfg.model.name)
        model, tokenizer, peft_config = load_model_and_tokenizer(cfg.model, cfg.cache_dir, ctx.device, cfg.seed)
        reference = frozen_reference(model, peft_config)
        if done:
            model = _load_round_model(model, ctx.run_dir / done[-1]["model"], ctx.device)
            _load_rng(round_dir(ctx, done[-1]["round"]) / "rng_state.pth")
    # the round in progress: its mined pairs and its last complete checkpoint
    reused = _reuse_pairs(ctx.run_dir / "pairs" / f"round_{first}.jsonl") if ctx.resume and first <= rounds else None
    checkpoint = find_checkpoint(round_dir(ctx, first)) if reused else None
    if ctx.resume and first <= rounds and not reused and round_dir(ctx, first).is_dir():
        _set_aside_rounds(ctx, first)  # checkpoints without their pairs: not resumable
    ckpt_step = checkpoint_step(checkpoint) if checkpoint else 0
    keep = telemetry.step_offset + ckpt_step if (done or checkpoint) else -1
    kept = telemetry.metrics.truncate_after(keep) if telemetry.metrics.path.exists() else []
    telemetry.restore(kept)
    ctx.wandb.replay(kept)
    if ctx.resume:
        where = f"from {checkpoint} (step {ckpt_step} of round {first})" if checkpoint else f"at the start of round {first}"
        log.info("dpo resume: %d of %d rounds complete, resuming %s%s; %d metrics records kept",
                 len(done), rounds, where, " with its mined pairs" if reused else "", len(kept))
    for round_no in range(first, rounds + 1):
        pair_file = ctx.run_dir / "pairs" / f"round_{round_no}.jsonl"
        if round_no == first and reused:
            pairs, stats = reused
        elif round_no == 1 and cfg.dpo.pairs_path:
            pairs = load_pairs(cfg.dpo.pairs_path)
            stats = {"questions": None, "samples": 0, "pairs": len(pairs), "reused": str(cfg.dpo.pairs_path)}
            save_pairs(pair_file, pairs, stats)
        else:
            phase(f"round {round_no}/{rounds}: mining pairs", f"{cfg.dpo.mining.samples_per_question} samples per question")
            pairs, stats = mine_pairs(model, tokenizer, mining_rows(ctx, round_no), ctx, round_no)
            save_pairs(pair_file, pairs, stats)
        all_stats.append(stats)
        sampled += stats["samples"]
        generated_tokens += stats.get("generated_tokens", 0)
        if not pairs:
            raise UserError(
                f"dpo round {round_no}: no question gave a correct/incorrect pair "
                f"({stats['all_correct']} all correct, {stats['all_wrong']} all wrong); "
                "raise dpo.mining.samples_per_question or dpo.mining.temperature"
            )
        resume_from = checkpoint if round_no == first else None
        if resume_from is None:  # the mining stats ride on the round's first record (kept when resuming mid-round)
            telemetry.pending.update({f"mining/{k}": v for k, v in stats.items() if isinstance(v, (int, float))})
            telemetry.pending["mining/round"] = round_no
        telemetry.constant["cumulative_rollouts"] = sampled
        telemetry.constant["cumulative_generated_tokens"] = generated_tokens
        trainer = with_telemetry(DPOTrainer)(
            model=model,
            ref_model=reference,
            args=trl_config(DPOConfig, dpo_args(ctx, round_no), "dpo"),
            train_dataset=Dataset.from_list([{k: p[k] for k in PAIR_FIELDS} for p in pairs]),
            processing_class=tokenizer,
            peft_config=peft_config if round_no == 1 else None,
        )
        trainer.telemetry = telemetry
        quiet_trainer(trainer, f"DPO round {round_no}/{rounds}", cfg.verbose)
        phase(f"round {round_no}/{rounds}: training", f"{len(pairs)} pairs, {cfg.dpo.epochs:g} epochs")
        train_with_evals(trainer, ctx, str(resume_from) if resume_from else None, last=round_no == rounds)
        model = trainer.model
        telemetry.step_offset += trainer.state.global_step
        _finish_round(ctx, trainer, round_no, sampled, telemetry, stats)
    mined = [s for s in all_stats if s.get("questions")]
    extra = {"dpo/rounds": len(all_stats), "dpo/pairs": sum(s["pairs"] for s in all_stats)}
    if mined:
        extra["dpo/mean_yield"] = sum(s["yield"] for s in mined) / len(mined)
    extra["dpo/steps_per_round"] = math.ceil(telemetry.step_offset / max(1, len(all_stats)))
    return run_summary(ctx, {**extra, **telemetry.train_totals})


def frozen_reference(model, peft_config):
    """The reference of every DPO round: the frozen starting policy, for full
    fine-tuning and LoRA alike. A new LoRA adapter needs no copy (TRL disables
    the adapter, which gives the starting policy); a run that starts from a
    saved adapter or trains the full model keeps a frozen copy."""
    from peft import PeftModel

    if isinstance(model, PeftModel):  # disabling a loaded adapter would give the base model, not the start
        return copy.deepcopy(model).merge_and_unload().eval()
    if peft_config is None:
        return copy.deepcopy(model).eval()
    return None


def _finish_round(ctx: RunContext, trainer, round_no: int, sampled: int, telemetry, stats: dict) -> None:
    """Save what the next round (or a re-run) needs, then mark the round done:
    the RNG state, the trained model (``final/`` after the last round), and
    ``checkpoints/round_N/done.json`` last. The previous round's model goes."""
    rounds = int(ctx.cfg.dpo.rounds)
    out = round_dir(ctx, round_no)
    out.mkdir(parents=True, exist_ok=True)
    _save_rng(out / "rng_state.pth")
    model_dir = ctx.run_dir / "final" if round_no == rounds else out / "model"
    trainer.save_model(str(model_dir))
    record = {
        "round": round_no,
        "steps": trainer.state.global_step,
        "step_offset": telemetry.step_offset,
        "sampled": sampled,
        "stats": stats,
        "model": str(model_dir.relative_to(ctx.run_dir)),
        "train_totals": telemetry.train_totals,
    }
    write_atomic(out / ROUND_DONE, json.dumps(record, indent=2, default=str))
    if round_no > 1:
        shutil.rmtree(round_dir(ctx, round_no - 1) / "model", ignore_errors=True)
