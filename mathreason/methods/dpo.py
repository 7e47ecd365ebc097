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
import math
from pathlib import Path
from typing import Any

from mathreason.errors import UserError
from mathreason.methods.common import (
    RunContext,
    common_training_args,
    make_eval_callback,
    summarize,
    with_telemetry,
)

PAIR_FIELDS = ("prompt", "chosen", "rejected")


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
    from mathreason.answers import answers_match, extract_xml_answer
    from mathreason.evaluation import generate_completions
    from mathreason.rewards import build_reward_funcs, score_completions

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
    return build_pairs(rows, samples, totals, correct)


def save_pairs(path: Path, pairs: list[dict], stats: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        fh.writelines(json.dumps(p) + "\n" for p in pairs)
    path.with_suffix(".stats.json").write_text(json.dumps(stats, indent=2))


def load_pairs(path: str | Path) -> list[dict]:
    """Read a pair file; a bad line stops with file:line."""
    pairs = []
    with open(path) as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                pair = json.loads(line)
            except json.JSONDecodeError as err:
                raise UserError(f"{path}:{number}: not valid JSON ({err.msg})") from err
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


def run(ctx: RunContext) -> dict[str, Any]:
    from datasets import Dataset
    from peft import PeftModel
    from trl import DPOConfig, DPOTrainer

    from mathreason.models.load import load_model_and_tokenizer
    from mathreason.telemetry import Telemetry

    cfg = ctx.cfg
    telemetry = Telemetry(ctx.run_dir, ctx.device)
    telemetry.metrics.path.unlink(missing_ok=True)  # an interrupted DPO run starts over
    model, tokenizer, peft_config = load_model_and_tokenizer(cfg.model, cfg.cache_dir, ctx.device, cfg.seed)
    sampled = 0
    all_stats = []
    for round_no in range(1, int(cfg.dpo.rounds) + 1):
        pair_file = ctx.run_dir / "pairs" / f"round_{round_no}.jsonl"
        if round_no == 1 and cfg.dpo.pairs_path:
            pairs = load_pairs(cfg.dpo.pairs_path)
            stats = {"questions": None, "samples": 0, "pairs": len(pairs), "reused": str(cfg.dpo.pairs_path)}
        else:
            pairs, stats = mine_pairs(model, tokenizer, mining_rows(ctx, round_no), ctx, round_no)
        save_pairs(pair_file, pairs, stats)
        all_stats.append(stats)
        sampled += stats["samples"]
        if not pairs:
            raise UserError(
                f"dpo round {round_no}: no question gave a correct/incorrect pair "
                f"({stats['all_correct']} all correct, {stats['all_wrong']} all wrong); "
                "raise dpo.mining.samples_per_question or dpo.mining.temperature"
            )
        telemetry.pending.update({f"mining/{k}": v for k, v in stats.items() if isinstance(v, (int, float))})
        telemetry.pending["mining/round"] = round_no
        telemetry.constant["cumulative_rollouts"] = sampled
        is_peft = isinstance(model, PeftModel) or peft_config is not None
        ref_model = None if is_peft or cfg.dpo.precompute_ref_log_probs else copy.deepcopy(model).eval()
        trainer = with_telemetry(DPOTrainer)(
            model=model,
            ref_model=ref_model,
            args=DPOConfig(**dpo_args(ctx, round_no)),
            train_dataset=Dataset.from_list([{k: p[k] for k in PAIR_FIELDS} for p in pairs]),
            processing_class=tokenizer,
            peft_config=peft_config if round_no == 1 else None,
        )
        trainer.telemetry = telemetry
        trainer.add_callback(make_eval_callback(trainer, ctx))
        trainer.train()
        model = trainer.model
        telemetry.step_offset += trainer.state.global_step
        del ref_model
    trainer.save_model(str(ctx.run_dir / "final"))
    mined = [s for s in all_stats if s.get("questions")]
    extra = {"dpo/rounds": len(all_stats), "dpo/pairs": sum(s["pairs"] for s in all_stats)}
    if mined:
        extra["dpo/mean_yield"] = sum(s["yield"] for s in mined) / len(mined)
    extra["dpo/steps_per_round"] = math.ceil(telemetry.step_offset / max(1, len(all_stats)))
    return summarize(ctx, {**extra, **telemetry.train_totals})
