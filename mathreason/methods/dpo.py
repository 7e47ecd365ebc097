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
import logging
import math
from pathlib import Path
from typing import Any

from mathreason.console import phase, quiet_trainer
from mathreason.errors import UserError
from mathreason.methods.common import (
    RunContext,
    common_training_args,
    per_device_batch,
    run_summary,
    score_completions_only,
    train_with_evals,
    trl_config,
    with_telemetry,
)
from mathreason.records.dpo_rounds import PAIR_FIELDS, DpoRounds, load_pairs

__all__ = ["build_pairs", "load_pairs", "mine_pairs", "run"]
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
        seed=(int(ctx.cfg.seed), f"mine round {round_no}"),
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
        output_dir=str(DpoRounds(ctx.run_dir, cfg.rounds).dir(round_no)),
        num_train_epochs=float(cfg.epochs),
        per_device_train_batch_size=per_device_batch(cfg.batch_size, "dpo.batch_size"),
        gradient_accumulation_steps=int(cfg.grad_accum),
    )
    return args


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


def run(ctx: RunContext) -> dict[str, Any]:
    """Round after round: mine, train, save. A re-run after an interruption
    resumes at the round it was in: completed rounds' pairs and trained model
    are reused, the round in progress reuses its mined pairs and resumes from
    its last complete checkpoint (``checkpoint.every_n_steps``) or restarts."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from mathreason.models.load import load_model_and_tokenizer
    from mathreason.records.checkpoints import checkpoint_step
    from mathreason.records.telemetry import Telemetry

    cfg = ctx.cfg
    rounds = int(cfg.dpo.rounds)
    score_completions_only(ctx.device)
    store = DpoRounds(ctx.run_dir, rounds)
    telemetry = Telemetry(ctx.run_dir, ctx.device)
    # where an earlier attempt stopped: completed rounds, the current round's mined pairs and checkpoint
    done, reused, checkpoint = store.resume_point() if ctx.resume else ([], None, None)
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
            store.restore_rng(done[-1]["round"])
    ckpt_step = checkpoint_step(checkpoint) if checkpoint else 0
    kept = telemetry.resume_at(telemetry.step_offset + ckpt_step if (done or checkpoint) else -1, ctx.wandb)
    if ctx.resume:
        where = f"from {checkpoint} (step {ckpt_step} of round {first})" if checkpoint else f"at the start of round {first}"
        log.info("dpo resume: %d of %d rounds complete, resuming %s%s; %d metrics records kept",
                 len(done), rounds, where, " with its mined pairs" if reused else "", len(kept))
    for round_no in range(first, rounds + 1):
        if round_no == first and reused:
            pairs, stats = reused
        elif round_no == 1 and cfg.dpo.pairs_path:
            pairs = load_pairs(cfg.dpo.pairs_path)
            stats = {"questions": None, "samples": 0, "pairs": len(pairs), "reused": str(cfg.dpo.pairs_path)}
            store.save_pairs(round_no, pairs, stats)
        else:
            phase(f"round {round_no}/{rounds}: mining pairs", f"{cfg.dpo.mining.samples_per_question} samples per question")
            pairs, stats = mine_pairs(model, tokenizer, mining_rows(ctx, round_no), ctx, round_no)
            store.save_pairs(round_no, pairs, stats)
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
        store.finish(round_no, trainer.save_model, {
            "steps": trainer.state.global_step, "step_offset": telemetry.step_offset, "sampled": sampled,
            "stats": stats, "train_totals": telemetry.train_totals})
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
