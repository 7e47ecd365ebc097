"""Worst-case scoring time of adversarial ~1 MB completions (issue 16).

Each completion goes through the public scoring entry points: the reward
functions as training calls them (``rewards.score_completions`` with all five
seed rewards, correctness included) and evaluation's ``score_completion``
(strict, lenient, format), once per answer format. Target: every 1 MB
completion under 0.1 s. A second table shows short answers inside the caps,
where math-verify's own parser is the cost (bounded by MATH_VERIFY_TIMEOUT).

    python benchmarks/adversarial_scoring.py [--repeats 3] [--mb 1]
"""

from __future__ import annotations

import argparse
import time

from mathreason.scoring.answers import MAX_ANSWER_CHARS, answers_match
from mathreason.scoring.evaluation import score_completion
from mathreason.scoring.rewards import build_reward_funcs, score_completions

SEED = {"correctness": 2.0, "strict_format": 0.5, "soft_format": 0.5, "integer": 0.5, "xmlcount": 1.0}
GOLDS = {"gsm8k": "5", "number": "5", "latex": r"\frac{1}{2}", "boxed": r"\frac{1}{2}"}


def repeat(unit: str, size: int) -> str:
    return unit * (size // len(unit))


def adversarial(size: int) -> dict[str, str]:
    half = size // 2
    return {
        "unclosed \\boxed{": repeat("\\boxed{", size),
        "unclosed \\boxed{ in <answer>": "<answer>" + repeat("\\boxed{", size) + "</answer>",
        "digits": "1" * size,
        "digits in <answer>": "<answer>" + "1" * size + "</answer>",
        "digits in \\boxed{}": "\\boxed{" + "1" * size + "}",
        "thousands groups": "1" + repeat(",000", size),
        "nested braces": "\\boxed{" + "{" * half + "}" * half + "}",
        "nested braces in <answer>": "<answer>" + "{" * half + "}" * half + "</answer>",
        "unclosed <answer>": repeat("<answer>", size) + "5</answer>",
        "many <answer> blocks": repeat("<answer>5</answer>", size),
        "many differing <answer> blocks": "".join(f"<answer>{i}</answer>" for i in range(size // 24)),
        "many \\boxed{}": repeat("\\boxed{5}", size),
        "long LaTeX in <answer>": "<answer>" + repeat("\\frac{1}{2}+", size) + "</answer>",
        "long LaTeX in \\boxed{}": "\\boxed{" + repeat("\\frac{1}{2}+", size) + "}",
        "many numbers": repeat("1 ", size),
        "repeated tags": repeat("<reasoning></reasoning><answer>", size),
        "repeated layout": "<reasoning>\n" + repeat("\n</reasoning>\n<answer>\n", size),
    }


def within_caps() -> dict[str, str]:
    depth = 20
    return {
        "nested parentheses": "(" * depth + "5" + ")" * depth,
        "nested \\frac": "\\frac{1}{" * depth + "2" + "}" * depth,
        "power tower": "9^{9^{9}}",
        f"{MAX_ANSWER_CHARS}-char sum": repeat("1+", MAX_ANSWER_CHARS),
        "many equivalent values": ", ".join("0.5" + "0" * k for k in range(40))[:MAX_ANSWER_CHARS],
    }


def timed(func, repeats: int) -> float:
    worst = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        worst = max(worst, time.perf_counter() - start)
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--mb", type=float, default=1.0)
    args = parser.parse_args()
    funcs, weights = build_reward_funcs(SEED)
    answers_match(r"\frac{1}{2}", r"\frac{1}{2}", "latex")  # import sympy/math-verify once

    def rewards(text, gold, fmt):
        return score_completions(funcs, weights, ["q"], [text], answer=[gold], answer_format=[fmt])

    size = int(args.mb * 1_000_000)
    print(f"{size:,}-character completions, worst of {args.repeats} runs, milliseconds")
    print(f"{'case':34} {'format':7} {'rewards':>9} {'eval':>9}")
    worst = (0.0, "")
    for name, text in adversarial(size).items():
        for fmt, gold in GOLDS.items():
            r = timed(lambda t=text, g=gold, f=fmt: rewards(t, g, f), args.repeats)
            e = timed(lambda t=text, g=gold, f=fmt: score_completion(t, g, f), args.repeats)
            print(f"{name:34} {fmt:7} {1000 * r:9.2f} {1000 * e:9.2f}")
            worst = max(worst, (max(r, e), f"{name} ({fmt})"))
    print(f"worst 1 MB case: {1000 * worst[0]:.1f} ms, {worst[1]}")

    print(f"\nshort answers inside the caps, in <answer> tags, latex gold {GOLDS['latex']}")
    for name, answer in within_caps().items():
        text = f"<answer>{answer}</answer>"
        e = timed(lambda t=text: score_completion(t, GOLDS["latex"], "latex"), 1)
        print(f"{name:34} {len(answer):5} chars {1000 * e:9.1f} ms")


if __name__ == "__main__":
    main()
