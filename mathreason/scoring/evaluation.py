"""Held-out evaluation: batched decoding, strict and lenient accuracy side by side.

*Strict* accuracy counts an answer only inside the required
``<answer>…</answer>`` tags; *lenient* accuracy takes the last boxed answer or
number anywhere in the completion. The gap between them separates format
learning from reasoning gains.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Sequence

from mathreason.processes import is_main
from mathreason.records import ERROR_KINDS, eval_file, item_id
from mathreason.scoring.answers import answers_match, extract_lenient_answer, extract_xml_answer
from mathreason.scoring.rewards import REWARD_FUNCS


def generate_completions(
    model,
    tokenizer,
    prompts: Sequence[list[dict]],
    *,
    max_new_tokens: int,
    batch_size: int,
    num_samples: int = 1,
    temperature: float = 1.0,
    top_p: float = 1.0,
    greedy: bool = True,
    desc: str = "generate",
    seed: tuple | None = None,
) -> list[list[str]]:
    """``num_samples`` completions per chat prompt, batched, longest prompts first.

    Sampling with a ``seed`` (any tuple naming the stream, e.g. ``(run seed,
    "eval", step)``) draws each batch from its own generator, seeded by the
    stream and the batch's place, inside ``torch.random.fork_rng`` (the
    training's random stream is left as it was). In a job on several processes
    the batches are dealt out to the ranks and the completions gathered, so each
    rank returns all of them and the results are the same for any number of
    processes (same ``batch_size``). Shared by evaluation and DPO pair mining."""
    import torch

    from mathreason import processes
    from mathreason.console import progress_bar
    from mathreason.scoring.lora_merge import merged_for_generation

    texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    mine = list(enumerate(batches))[processes.rank() :: processes.world_size()]
    results: dict[int, list[str]] = {}
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        with torch.no_grad(), merged_for_generation(model), \
                progress_bar(total=sum(len(b) for _, b in mine), desc=desc, unit="prompt", leave=False) as bar:
            for batch_no, idx in mine:
                enc = tokenizer([texts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
                enc = {k: v.to(device) for k, v in enc.items()}
                with torch.random.fork_rng(devices=[device] if device.type == "cuda" else [],
                                           enabled=not greedy and seed is not None):
                    if not greedy and seed is not None:
                        torch.manual_seed(stream_seed(*seed, batch_no))
                    out = model.generate(
                        **enc,
                        max_new_tokens=max_new_tokens,
                        do_sample=not greedy,
                        temperature=temperature if not greedy else None,
                        top_p=top_p if not greedy else None,
                        top_k=0 if not greedy else None,
                        num_return_sequences=num_samples,
                        pad_token_id=tokenizer.pad_token_id,
                        eos_token_id=tokenizer.eos_token_id,
                    )
                decoded = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
                for j, i in enumerate(idx):
                    results[i] = decoded[j * num_samples : (j + 1) * num_samples]
                bar.update(len(idx))
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    for part in processes.all_gather(results):  # one process: its own results
        results.update(part)
    return [results[i] for i in range(len(texts))]


def stream_seed(*parts: Any) -> int:
    """A 63-bit seed from the parts that name a random stream (stable across runs and machines)."""
    import hashlib

    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "big") >> 1


# --------------------------------------------------------------------------
# Error taxonomy: what kind of mistake each greedy answer is

# "a op b = c" in a worked solution or completion ("23 + 15 = 38", GSM8K's "<<48/2=24>>")
_EQUATION = re.compile(r"(-?\d+(?:\.\d+)?)\s*([-+*/×x])\s*(-?\d+(?:\.\d+)?)\s*=\s*(-?\d+(?:\.\d+)?)")
_OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b, "×": lambda a, b: a * b,
        "x": lambda a, b: a * b, "/": lambda a, b: a / b if b else float("nan")}


def equations(text: str) -> list[tuple[float, str, float, float]]:
    """The ``a op b = c`` equations in a text, in order."""
    return [(float(a), op, float(b), float(c)) for a, op, b, c in _EQUATION.findall(text)]


def has_false_equation(text: str) -> bool:
    """Whether an ``a op b = c`` equation in the text is false (``7 + 5 = 13``)."""
    return any(abs(_OPS[op](a, b) - c) > 1e-9 for a, op, b, c in equations(text))


def error_kind(score: dict[str, Any], completion: str, solution: str | None) -> str:
    """One of ``records.ERROR_KINDS`` for a scored completion (first that applies):

    - correct: the strict answer is right;
    - format: no answer inside ``<answer>`` tags;
    - arithmetic: an equation in the completion is false (``7 + 5 = 13``);
    - stop_short: every equation is true, the answer is an intermediate value of
      the gold solution and the completion has fewer equations than it;
    - other: wrong operands or operations, i.e. a reasoning error.
    """
    if score["correct"]:
        return "correct"
    if score["extracted"] is None:
        return "format"
    if has_false_equation(completion):
        return "arithmetic"
    steps = equations(completion)
    gold_steps = equations(solution or "")
    intermediate = {c for *_, c in gold_steps[:-1]}
    try:
        answer = float(score["extracted"].replace(",", ""))
    except ValueError:
        answer = None
    if answer in intermediate and len(steps) < len(gold_steps):
        return "stop_short"
    return "other"


def score_completion(completion: str, gold: str, fmt: str) -> dict[str, Any]:
    strict_pred = extract_xml_answer(completion)
    lenient_pred = extract_lenient_answer(completion)
    return {
        "extracted": strict_pred,
        "extracted_lenient": lenient_pred,
        "correct": answers_match(strict_pred, gold, fmt),
        "correct_lenient": answers_match(lenient_pred, gold, fmt),
        "format": REWARD_FUNCS["strict_format"](None, [completion])[0] == 1.0,
    }


def evaluate(model, tokenizer, rows: Sequence[dict], eval_cfg: Any, *, step: int, out_dir: Path | None,
             sampled: bool = True, seed: int = 0) -> dict[str, float]:
    """Greedy pass@1 (strict, lenient, format rate, error taxonomy) and, with
    ``eval.num_samples`` = k > 1 and ``sampled``, sampled pass@k and mean@k
    (drawn from the stream of ``seed`` and ``step``, whatever came before).
    Per-sample records go to ``<out_dir>/eval/step_XXXXXX.jsonl`` (rank 0 writes
    them in a job on several processes; every rank evaluates its share)."""
    prompts = [r["prompt"] for r in rows]
    greedy = generate_completions(
        model,
        tokenizer,
        prompts,
        max_new_tokens=eval_cfg.max_new_tokens,
        batch_size=eval_cfg.batch_size,
        desc=f"eval@{step}",
    )
    records = []
    for row, (completion,) in zip(rows, greedy):
        score = score_completion(completion, row["answer"], row["answer_format"])
        records.append(
            {
                "item_id": row.get("id") or item_id(row["question"]),
                "chain_id": row.get("chain_id") or item_id(row["question"]),
                "question": row["question"],
                "gold": row["answer"],
                "completion": completion,
                **score,
                "error": error_kind(score, completion, row.get("solution")),
                "false_equation": has_false_equation(completion),
            }
        )
    n = max(1, len(records))
    metrics = {
        "eval_accuracy_strict": sum(r["correct"] for r in records) / n,
        "eval_accuracy_lenient": sum(r["correct_lenient"] for r in records) / n,
        "eval_format_rate": sum(r["format"] for r in records) / n,
        "eval_samples": len(records),
        # the error taxonomy of the greedy answers (fractions of the items; they sum to 1)
        **{f"eval_errors/{kind}": sum(r["error"] == kind for r in records) / n for kind in ERROR_KINDS},
        # right by luck: the answer is right, an equation in the working is false
        "eval_correct_with_false_equation": sum(r["correct"] and r["false_equation"] for r in records) / n,
    }
    k = int(eval_cfg.num_samples)
    if k > 1 and sampled:
        samples = generate_completions(
            model,
            tokenizer,
            prompts,
            max_new_tokens=eval_cfg.max_new_tokens,
            batch_size=max(1, eval_cfg.batch_size // k),
            num_samples=k,
            temperature=eval_cfg.temperature,
            top_p=eval_cfg.top_p,
            greedy=False,
            desc=f"eval@{step} k={k}",
            seed=(int(seed), "eval", int(step)),
        )
        hits = []
        for row, rec, completions in zip(rows, records, samples):
            ok = [answers_match(extract_xml_answer(c), row["answer"], row["answer_format"]) for c in completions]
            rec["samples_correct"] = ok
            hits.append(ok)
        metrics[f"eval_pass@{k}"] = sum(any(h) for h in hits) / n
        metrics[f"eval_mean@{k}"] = sum(sum(h) / k for h in hits) / n
    if out_dir is not None and eval_cfg.save_samples and is_main():
        path = eval_file(out_dir, step)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w") as fh:
            for rec in records:
                fh.write(json.dumps(rec) + "\n")
    return metrics
