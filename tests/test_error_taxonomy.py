"""The error taxonomy of greedy eval answers (scoring.evaluation.error_kind)."""

import pytest

from mathreason.data.arith import generate_problems
from mathreason.data.prompts import format_completion
from mathreason.records import ERROR_KINDS
from mathreason.scoring.evaluation import equations, error_kind, has_false_equation, score_completion
from tests.helpers import yaml_value

GOLD = "Tom has 23 apples.\n23 + 15 = 38\n38 - 7 = 31"


def kind(reasoning: str, answer: str | None, gold: str = "31", solution: str = GOLD) -> str:
    text = format_completion(reasoning, answer) if answer is not None else reasoning
    return error_kind(score_completion(text, gold, "number"), text, solution)


@pytest.mark.parametrize("reasoning, answer, expected", [
    ("Tom has 23 apples.\n23 + 15 = 38\n38 - 7 = 31", "31", "correct"),
    ("23 + 15 = 38\n38 - 7 = 31 so 31", None, "format"),            # right number, no <answer> tags
    ("Tom has 23 apples.\n23 + 15 = 38\n38 - 7 = 30", "30", "arithmetic"),
    ("Tom has 23 apples.\n23 + 15 = 37\n37 - 7 = 30", "30", "arithmetic"),
    ("Tom has 23 apples.\n23 + 15 = 38", "38", "stop_short"),        # true so far, stops one step early
    ("Tom has 23 apples.\n23 + 15 = 38\n38 + 7 = 45", "45", "other"),  # wrong operation, true arithmetic
    ("Tom has 23 apples.\n23 - 15 = 8", "8", "other"),
    ("Tom has 23 apples.", "12", "other"),
])
def test_each_kind(reasoning, answer, expected):
    assert kind(reasoning, answer) == expected


def test_a_right_answer_after_a_false_equation_is_correct_but_flagged():
    """The tiny model's "4 + 5 = 11" for 4 + 7 answers 11: correct for the reward, false in its working."""
    lucky = "Ruby has 4 rocks.\n4 + 5 = 11"
    assert kind(lucky, "11", gold="11") == "correct"
    assert has_false_equation(lucky)
    assert not has_false_equation("Ruby has 4 rocks.\n4 + 7 = 11")
    assert not has_false_equation("no working at all")
    assert has_false_equation(GOLD.replace("= 31", "= 30")) and not has_false_equation(GOLD)


def test_kinds_are_the_record_format_and_gsm8k_annotations_parse():
    assert kind("x", "31") in ERROR_KINDS
    # GSM8K solutions annotate each step as <<a op b = c>>
    assert equations("She sold 48/2 = <<48/2=24>>24 clips. 48+24 = <<48+24=72>>72") == [
        (48.0, "/", 2.0, 24.0), (48.0, "+", 24.0, 72.0)]
    # stop-short against a GSM8K-style gold solution: the intermediate 24 after one true step
    gold = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72"
    assert kind("48 / 2 = 24", "24", gold="72", solution=gold + " 48+24 = <<48+24=72>>72") == "stop_short"


def test_the_generators_own_solutions_are_correct_and_their_prefixes_stop_short():
    rows = generate_problems(200, 5, partition="eval", **{**yaml_value("data/arith.yaml", "generator"), "max_steps": 3})
    seen = set()
    for r in rows:
        assert kind(r["solution"], r["answer"], r["answer"], r["solution"]) == "correct"
        lines = r["solution"].split("\n")
        if len(lines) > 2:  # cut after the first equation: its result is an intermediate value
            value = equations(lines[1])[0][3]
            short = kind("\n".join(lines[:2]), str(int(value)), r["answer"], r["solution"])
            if str(int(value)) != r["answer"]:
                assert short == "stop_short"
                seen.add(short)
    assert seen == {"stop_short"}
