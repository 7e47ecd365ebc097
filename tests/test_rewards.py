"""Reward values for crafted completions, the registry and weighted scoring."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from mathreason.data.prompts import build_prompt, format_completion
from mathreason.errors import UserError
from mathreason.scoring.rewards import (
    REWARD_FUNCS,
    build_reward_funcs,
    completion_text,
    correctness,
    integer,
    score_completions,
    soft_format,
    strict_format,
    xmlcount,
)

CONF = Path(__file__).resolve().parents[1] / "mathreason" / "conf" / "reward"
NAMES = ["correctness", "strict_format", "soft_format", "integer", "xmlcount"]
SEED = {"correctness": 2.0, "strict_format": 0.5, "soft_format": 0.5, "integer": 0.5, "xmlcount": 1.0}

PERFECT = format_completion("Step 1: 9 * 2 = 18\nStep 2: done", "18")

# (completion, gold, expected unweighted scores in NAMES order)
CASES = {
    "perfect": (PERFECT, "18", [1.0, 1.0, 1.0, 1.0, 0.5]),
    "trailing newline": (PERFECT + "\n", "18", [1.0, 1.0, 1.0, 1.0, 0.5]),
    "trailing text": (PERFECT + "\nThe answer is 18.", "18", [1.0, 0.0, 1.0, 1.0, 0.5 - 0.017]),
    "long trailing text": (PERFECT + "\n" + "x" * 600, "18", [1.0, 0.0, 1.0, 1.0, 0.5 - 0.6]),
    "wrong answer": (format_completion("guess", "17"), "18", [0.0, 1.0, 1.0, 1.0, 0.5]),
    "one line": ("<reasoning>2+2</reasoning><answer>4</answer>", "4", [1.0, 0.0, 1.0, 1.0, 0.0]),
    "spaced blocks": ("<reasoning>\nx\n</reasoning>\n\n<answer>\n4\n</answer>", "4", [1.0, 0.0, 1.0, 1.0, 0.5]),
    "no tags": ("The answer is 18", "18", [0.0, 0.0, 0.0, 0.0, 0.0]),
    "unclosed answer": ("<reasoning>\nabc\n</reasoning>\n<answer>\n18", "18", [0.0, 0.0, 0.0, 0.0, 0.375]),
    "commas": (format_completion("sum", "1,080"), "1080", [1.0, 1.0, 1.0, 1.0, 0.5]),
    "dollar": (format_completion("sum", "$18"), "18", [1.0, 1.0, 1.0, 0.0, 0.5]),
    "negative": (format_completion("sum", "-3"), "-3", [1.0, 1.0, 1.0, 1.0, 0.5]),
    "decimal integer": (format_completion("sum", "3.0"), "3", [1.0, 1.0, 1.0, 0.0, 0.5]),
    "two answers": (
        "<reasoning>\nx\n</reasoning>\n<answer>\n5\n</answer>\n<answer>\n18\n</answer>",
        "18",
        [0.0, 0.0, 1.0, 0.0, 0.25],  # a hedge: both blocks count; duplicate tags are not strict
    ),
    "same answer twice": (
        "<reasoning>\nx\n</reasoning>\n<answer>\n18\n</answer>\n<answer>\n18\n</answer>",
        "18",
        [1.0, 0.0, 1.0, 1.0, 0.25],
    ),
    "answer before reasoning": (
        "<answer>\n18\n</answer>\n<reasoning>\nx\n</reasoning>\n",
        "18",
        [1.0, 0.0, 0.0, 1.0, 0.375 - 0.027],
    ),
}


def call(func, completions, golds, fmt="gsm8k"):
    prompts = [build_prompt("q")] * len(completions)
    return func(prompts=prompts, completions=completions, answer=golds, answer_format=[fmt] * len(golds))


@pytest.mark.parametrize("case", list(CASES))
def test_reward_values(case):
    completion, gold, expected = CASES[case]
    got = [call(REWARD_FUNCS[name], [completion], [gold])[0] for name in NAMES]
    assert got == pytest.approx(expected, abs=1e-9)


def test_strict_format_requires_dotall_for_multiline_reasoning():
    multi = "<reasoning>\nline 1\nline 2\n\nline 4\n</reasoning>\n<answer>\nline a\nline b\n</answer>"
    assert call(strict_format, [multi], ["x"]) == [1.0]
    assert call(soft_format, [multi.replace("\n", " ")], ["x"]) == [1.0]
    assert call(strict_format, [" " + multi], ["x"]) == [0.0]  # must start at the beginning


def test_conversational_and_string_completions_score_the_same():
    texts = [c for c, _, _ in CASES.values()]
    golds = [g for _, g, _ in CASES.values()]
    conversational = [[{"role": "assistant", "content": t}] for t in texts]
    for name in NAMES:
        assert call(REWARD_FUNCS[name], conversational, golds) == call(REWARD_FUNCS[name], texts, golds), name
    assert completion_text([{"role": "assistant", "content": None}]) == ""
    assert completion_text([]) == ""


def test_answer_format_per_completion():
    completions = [
        format_completion("r", r"(3, \pi/2)"),
        format_completion("r", "28/6"),
        format_completion("r", "1,080"),
    ]
    golds = [r"\left( 3, \frac{\pi}{2} \right)", r"\dfrac{14}{3}", "1080"]
    prompts = [build_prompt("q")] * 3
    got = correctness(prompts=prompts, completions=completions, answer=golds, answer_format=["latex", "latex", "gsm8k"])
    assert got == [1.0, 1.0, 1.0]
    # as numbers, a tuple is not a number; 28/6 == 14/3 exactly
    assert correctness(prompts=prompts, completions=completions, answer=golds, answer_format=["gsm8k"] * 3) == [
        0.0,
        1.0,
        1.0,
    ]


def test_trl_call_signature_extra_kwargs():
    # TRL passes completion_ids, trainer_state, log_extra, log_metric and every other dataset column.
    extra = {
        "completion_ids": [[1, 2]],
        "trainer_state": None,
        "log_extra": None,
        "log_metric": None,
        "question": ["q"],
        "solution": [""],
    }
    for name, func in REWARD_FUNCS.items():
        assert func.__name__ == name
        out = func(
            prompts=[build_prompt("q")],
            completions=[[{"role": "assistant", "content": PERFECT}]],
            answer=["18"],
            answer_format=["gsm8k"],
            **extra,
        )
        assert out == [0.5 if name == "xmlcount" else 1.0]


def test_integer_reward_needs_the_answer_tag():
    assert call(integer, ["18"], ["18"]) == [0.0]
    assert call(integer, [format_completion("r", " 42 ")], ["42"]) == [1.0]
    assert call(integer, [format_completion("r", "1,08")], ["108"]) == [0.0]


def test_xmlcount_counts_each_tag_once():
    assert call(xmlcount, ["<reasoning>\n<reasoning>\n"], ["1"]) == [0.0]
    assert call(xmlcount, ["<reasoning>\nabc\n</reasoning>\n"], ["1"]) == [0.25]


# --------------------------------------------------------------------------
# registry


def test_build_reward_funcs_seed_yaml():
    cfg = OmegaConf.load(CONF / "seed.yaml")
    assert cfg.name == "seed"
    funcs, weights = build_reward_funcs(cfg.functions)
    assert [f.__name__ for f in funcs] == NAMES
    assert weights == [2.0, 0.5, 0.5, 0.5, 1.0]
    # a Hydra-style override of one weight
    cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(["functions.correctness=1.0"]))
    assert build_reward_funcs(cfg.functions)[1] == [1.0, 0.5, 0.5, 0.5, 1.0]
    funcs, weights = build_reward_funcs(OmegaConf.load(CONF / "correctness.yaml").functions)
    assert [f.__wrapped__ for f in funcs] == [correctness] and weights == [2.0]  # wrapped by the NaN check


def test_build_reward_funcs_accepts_ints_and_negative_weights():
    funcs, weights = build_reward_funcs({"xmlcount": -1, "correctness": 3})
    assert [f.__name__ for f in funcs] == ["xmlcount", "correctness"]
    assert weights == [-1.0, 3.0] and all(isinstance(w, float) for w in weights)


def test_build_reward_funcs_unknown_name():
    with pytest.raises(UserError) as e:
        build_reward_funcs({"correctness": 2.0, "bogus": 1.0})
    msg = str(e.value)
    assert "reward.functions.bogus" in msg
    assert all(name in msg for name in NAMES)
    assert "\n" not in msg


@pytest.mark.parametrize("weight", ["abc", "1.0", None, True, float("nan"), float("inf"), [1.0]])
def test_build_reward_funcs_non_numeric_weight(weight):
    with pytest.raises(UserError, match=r"^reward\.functions\.integer: weight must be a finite number"):
        build_reward_funcs({"integer": weight})


@pytest.mark.parametrize("functions", [{}, None, ["correctness"]])
def test_build_reward_funcs_empty(functions):
    with pytest.raises(UserError, match=r"^reward\.functions:"):
        build_reward_funcs(functions)


def test_score_completions_weighted_total():
    funcs, weights = build_reward_funcs(SEED)
    completions = [CASES["perfect"][0], CASES["wrong answer"][0], CASES["trailing text"][0], CASES["no tags"][0]]
    golds = ["18"] * 4
    totals, per_function = score_completions(
        funcs, weights, [build_prompt("q")] * 4, completions, answer=golds, answer_format=["gsm8k"] * 4
    )
    assert totals == pytest.approx([4.0, 2.0, 3.483, 0.0])
    assert list(per_function) == NAMES
    assert per_function["correctness"] == [1.0, 0.0, 1.0, 0.0]
    assert per_function["xmlcount"] == pytest.approx([0.5, 0.5, 0.483, 0.0])


def test_score_completions_none_adds_nothing():
    def maybe(prompts, completions, **kwargs):
        return [None, 1.0]

    totals, per_function = score_completions(
        [maybe, correctness],
        [10.0, 2.0],
        ["p", "p"],
        ["<answer>1</answer>", "x"],
        answer=["1", "1"],
        answer_format=["number"] * 2,
    )
    assert totals == [2.0, 10.0]
    assert per_function["maybe"] == [None, 1.0]


# --------------------------------------------------------------------------
# hedged answers and adversarial completions (issue 16; the full table is in test_answers.py)


@pytest.mark.parametrize(
    "answer, gold, fmt",
    [
        ("7 or 9", "9", "latex"),
        ("2, 3", "3", "latex"),
        ("x = 5 or x = 6", "6", "latex"),
        (r"\boxed{3} \boxed{4}", "4", "number"),
        (r"\boxed{3} or 4", "3", "number"),
        ("18 or 19", "18", "gsm8k"),
    ],
)
def test_correctness_never_credits_a_hedge(answer, gold, fmt):
    hedged, plain = format_completion("r", answer), format_completion("r", gold)
    assert call(correctness, [hedged, plain], [gold, gold], fmt) == [0.0, 1.0]


def test_two_differing_answer_blocks_are_a_hedge():
    two = "<reasoning>\nx\n</reasoning>\n<answer>\n18\n</answer>\n<answer>\n5\n</answer>"
    assert call(correctness, [two], ["18"]) == [0.0]  # whichever block comes last
    assert call(correctness, [two], ["5"]) == [0.0]


@pytest.mark.parametrize(
    "completion",
    [
        "\\boxed{" * 150_000,
        "<answer>" + "1" * 1_000_000 + "</answer>",
        "<reasoning></reasoning><answer>" * 33_000,  # cubic for the old soft_format regex
        "<reasoning>\n" + "\n</reasoning>\n<answer>\n" * 45_000,  # quadratic for the strict regex
    ],
    ids=["unclosed boxes", "digits", "repeated tags", "repeated layout"],
)
def test_score_completions_on_megabyte_completions(completion):
    funcs, weights = build_reward_funcs(SEED)
    _, per_function = score_completions(
        funcs, weights, [build_prompt("q")], [completion], answer=["5"], answer_format=["number"]
    )
    assert per_function["correctness"] == [0.0] and per_function["strict_format"] == [0.0]
