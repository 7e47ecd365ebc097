"""Answer extraction, gold parsing and comparison, on hand cases and the real benchmark files."""

import json
from pathlib import Path

import pytest

from mathreason.data.prompts import format_completion
from mathreason.scoring.answers import (
    MAX_ANSWER_CHARS,
    MAX_SPANS,
    GoldParseError,
    answer_candidates,
    answers_match,
    extract_boxed,
    extract_last_number,
    extract_lenient_answer,
    extract_xml_answer,
    parse_gold,
    parse_number,
)
from mathreason.scoring.evaluation import score_completion

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def read_jsonl(rel: str) -> list[dict]:
    path = DATA / rel
    if not path.is_file():
        pytest.skip(f"real data not available: {path} (expected ../shared/data beside the repo)")
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


# --------------------------------------------------------------------------
# extract_xml_answer


@pytest.mark.parametrize(
    "text, expected",
    [
        ("<reasoning>\n2+2\n</reasoning>\n<answer>\n4\n</answer>", "4"),
        ("<answer>  -7 </answer>", "-7"),
        ("<reasoning>\nstep 1\nstep 2\n\nstep 3\n</reasoning>\n<answer>\nline a\nline b\n</answer>", "line a\nline b"),
        ("<answer>1</answer> then <answer>2</answer>", "1\n2"),  # differing blocks: all, one a line
        ("<answer>2</answer> then <answer> 2 </answer>", "2"),  # the same block twice
        ("<answer>1</answer> then <answer>2", "1"),  # last complete block
        ("<answer>a <answer>b</answer>", "b"),
        ("<answer>\n18\n</answer>\nSo the answer is 18. Thanks!", "18"),  # trailing text
        ("<answer></answer>", ""),
        ("no tags at all, 42", None),
        ("<answer>42", None),
        ("42</answer>", None),
        ("", None),
        (None, None),
    ],
)
def test_extract_xml_answer(text, expected):
    assert extract_xml_answer(text) == expected


# --------------------------------------------------------------------------
# extract_lenient_answer


@pytest.mark.parametrize(
    "text, expected",
    [
        (r"so $x = \boxed{\frac{1}{2}}$.", r"\frac{1}{2}"),
        (r"\boxed{3} first, then \boxed{5}", "3\n5"),  # differing boxes: all, one a line
        (r"\boxed{5} first, then \boxed{5}", "5"),
        (r"\boxed{\left( 3, \frac{\pi}{2} \right)}", r"\left( 3, \frac{\pi}{2} \right)"),
        (r"\boxed{7} and a truncated \boxed{\frac{1", "7"),  # unbalanced last box is ignored
        (r"<answer>\boxed{12}</answer>", r"\boxed{12}"),  # the tagged answer first, as strict
        (r"\boxed{3} in the reasoning, <answer>4</answer>", "4"),
        ("<reasoning>\n3 + 4\n</reasoning>\n<answer>\nseven\n</answer>", "seven"),
        ("She pays $1,080 in total.", "$1,080"),
        ("The temperature drops to -3 degrees.", "-3"),
        ("It takes 2.5 hours.", "2.5"),
        ("Each costs $18.", "$18"),
        ("pages 3-4", "4"),  # a hyphen is not a minus sign
        ("12 apples, 5 pears, then 7", "7"),
        ("no numbers here", None),
        ("", None),
        (None, None),
    ],
)
def test_extract_lenient_answer(text, expected):
    assert extract_lenient_answer(text) == expected


# --------------------------------------------------------------------------
# numbers


@pytest.mark.parametrize(
    "text, value",
    [
        ("1,080", 1080),
        ("1080.0", 1080),
        ("$18", 18),
        ("\\$18.00", 18),
        ("-5", -5),
        ("-5.0", -5),
        ("-$5", -5),
        ("50%", 50),
        ("50\\%", 50),
        ("18 dollars", 18),
        ("5 m^2", 5),
        ("x = 5", 5),
        ("3/4", 0.75),
        ("-\\frac{3}{4}", -0.75),
        ("\\boxed{7}", 7),
        ("1{,}080", 1080),
        ("\\textbf{(113) }", 113),
        ("12.", 12),
        (".5", 0.5),
    ],
)
def test_parse_number(text, value):
    assert parse_number(text) == value


@pytest.mark.parametrize(
    "text",
    ["", "abc", "1,08", "5 apples and 3", "the answer is 5", "1/0", "--5", "2 and a half", "5 million", "1e3", None],
)
def test_parse_number_rejects(text):
    assert parse_number(text) is None


def test_numbers_compare_exactly_not_with_float_tolerance():
    assert not answers_match("0.30000000000000004", "0.3", "number")
    assert answers_match("0.1", "1/10", "number")
    assert not answers_match("1080.0001", "1080", "gsm8k")


# --------------------------------------------------------------------------
# parse_gold


@pytest.mark.parametrize(
    "raw, fmt, gold",
    [
        ("He pays 9 * 2 = $<<9*2=18>>18.\n#### 18", "gsm8k", "18"),
        ("...\n#### 1,080", "gsm8k", "1080"),
        ("...\n#### $18", "gsm8k", "18"),
        ("#### 3 #### -3", "gsm8k", "-3"),  # text after the LAST ####
        ("27.0", "number", "27"),
        (27.0, "number", "27"),  # AMC23 stores floats
        ("025", "number", "25"),  # AIME keeps leading zeros
        ("-1.0", "number", "-1"),
        ("2.5", "number", "2.5"),
        (r" \frac{14}{3} ", "latex", r"\frac{14}{3}"),
        (r"\$32,\!348", "latex", r"\$32,\!348"),
        (r"\text{Evelyn}", "latex", r"\text{Evelyn}"),
    ],
)
def test_parse_gold(raw, fmt, gold):
    assert parse_gold(raw, fmt) == gold


@pytest.mark.parametrize(
    "raw, fmt",
    [
        ("The answer is 18", "gsm8k"),  # no ####
        ("#### eighteen", "gsm8k"),
        ("#### ", "gsm8k"),
        ("1/2", "number"),
        ("abc", "number"),
        (None, "number"),
        ([1], "number"),
        (True, "number"),
        ("", "latex"),
        ("}{", "latex"),  # math-verify only falls back to the raw string
        (r"\frac{", "latex"),
    ],
)
def test_parse_gold_raises(raw, fmt):
    with pytest.raises(GoldParseError):
        parse_gold(raw, fmt)


def test_parse_gold_unknown_format():
    with pytest.raises(ValueError, match="unknown answer format"):
        parse_gold("1", "roman")


# --------------------------------------------------------------------------
# answers_match


@pytest.mark.parametrize(
    "pred, gold, fmt, expected",
    [
        ("1,080", "1080", "gsm8k", True),
        ("1080.0", "1080", "gsm8k", True),
        ("$18", "18", "gsm8k", True),
        ("-5", "-5", "number", True),
        ("-5.0", "-5", "number", True),
        ("5", "-5", "number", False),
        ("18 dollars", "18", "gsm8k", True),
        ("18", "180", "gsm8k", False),
        ("eighteen", "18", "gsm8k", False),
        ("", "18", "gsm8k", False),
        (None, "18", "gsm8k", False),
        (r"\dfrac{14}{3}", r"\frac{14}{3}", "latex", True),
        ("28/6", r"\frac{14}{3}", "latex", True),
        (r"$\frac{14}{3}$", r"\frac{14}{3}", "latex", True),
        (r"\boxed{\frac{14}{3}}", r"\frac{14}{3}", "latex", True),
        ("4.67", r"\frac{14}{3}", "latex", False),
        (r"(3, \frac{\pi}{2})", r"\left( 3, \frac{\pi}{2} \right)", "latex", True),
        (r"(3, \pi/2)", r"\left( 3, \frac{\pi}{2} \right)", "latex", True),
        (r"(\frac{\pi}{2}, 3)", r"\left( 3, \frac{\pi}{2} \right)", "latex", False),
        ("[2, 5)", "[2,5)", "latex", True),
        ("[2, 5]", "[2,5)", "latex", False),
        ("(2, 5)", "[2,5)", "latex", False),
        (None, r"\frac{14}{3}", "latex", False),
    ],
)
def test_answers_match(pred, gold, fmt, expected):
    assert answers_match(pred, gold, fmt) is expected


@pytest.mark.parametrize("garbage", ["}}}{{{", r"\frac{", "((((((", r"\sqrt" * 50, "x^^^2", "word " * 200, "\x00\x01"])
def test_garbage_scores_false_without_raising(garbage):
    assert answers_match(garbage, r"\frac{14}{3}", "latex") is False
    assert answers_match(garbage, "5", "number") is False


# --------------------------------------------------------------------------
# hedged answers (issue 16): every value an answer states must equal the gold

# (prediction, gold, format, the right value alone: it scores correct, the hedge does not)
HEDGED = [
    ("7 or 9", "9", "latex", "9"),
    ("2, 3", "3", "latex", "3"),
    ("x = 5 or x = 6", "6", "latex", "x = 6"),
    ("3; 4", "4", "latex", "4"),
    ("3 and 4", "4", "latex", "4"),
    ("3\n4", "4", "latex", "4"),
    (r"3 \\ 4", "4", "latex", "4"),
    (r"3 \quad 4", "4", "latex", "4"),
    (r"3 \vee 4", "4", "latex", "4"),
    (r"3 \text{ or } 4", "4", "latex", "4"),
    (r"\text{4 or 5}", "5", "latex", "5"),
    (r"4 \text{ (or 5)}", "4", "latex", "4"),
    (r"\pm 3", "3", "latex", "3"),
    (r"\{3, 4\}", "4", "latex", "4"),
    ("$3$ $4$", "4", "latex", "$4$"),
    ("$3$ or $4$", "4", "latex", "$4$"),
    (r"\(3\) \(4\)", "4", "latex", r"\(4\)"),
    (r"\boxed{3} \boxed{4}", "4", "latex", r"\boxed{4}"),
    (r"\boxed{3} or 4", "3", "latex", r"\boxed{3}"),
    (r"\frac{1}{2}, \frac{1}{3}", r"\frac{1}{2}", "latex", r"\frac{1}{2}"),
    (r"(1, 2) \text{ or } (3, 4)", "(3, 4)", "latex", "(3, 4)"),
    (r"[2, 5) \text{ or } [2, 5]", "[2,5)", "latex", "[2, 5)"),
    ("1, 2, 3", "1, 2", "latex", "2, 1"),  # a set gold: the same set, no extra value
    (r"\text{Devon and Ana and Bo}", r"\text{Devon and Ana}", "latex", r"\text{Devon and Ana}"),
    (r"\text{Tuesday or Wednesday}", r"\text{Tuesday}", "latex", r"\text{Tuesday}"),
    (r"\boxed{3}, \boxed{4}", "3", "boxed", r"\boxed{3}"),
    (r"\boxed{3 \text{ or } 4}", "3", "boxed", r"\boxed{3}"),
    (r"\boxed{3} \boxed{4}", "4", "number", r"\boxed{4}"),
    (r"\boxed{3} or 4", "3", "number", r"\boxed{3}"),
    ("3 or 4", "4", "number", "4"),
    ("3, 4", "4", "number", "4"),
    ("x = 5 or x = 6", "6", "number", "x = 6"),
    ("18 or 19", "18", "gsm8k", "18"),
    ("$18 or $19", "18", "gsm8k", "$18"),
    ("18; 19", "19", "gsm8k", "19"),
    ("18\n19", "19", "gsm8k", "19"),
    ("5 apples and 3", "3", "gsm8k", "3"),
    ("\\boxed{18}\n19", "18", "gsm8k", r"\boxed{18}"),
    ("1,2", "2", "gsm8k", "2"),  # not a thousands separator
]


@pytest.mark.parametrize("pred, gold, fmt, right", HEDGED)
def test_hedged_answers_score_zero(pred, gold, fmt, right):
    assert answers_match(right, gold, fmt) is True
    assert answers_match(pred, gold, fmt) is False
    # and through evaluation, strict and lenient, as the model would write it
    scored = score_completion(format_completion("work", pred), gold, fmt)
    assert not scored["correct"] and not scored["correct_lenient"]


# (prediction, gold, format): equivalent forms of one value keep their credit
EQUIVALENT = [
    ("1,000", "1000", "gsm8k"),
    ("3.0", "3", "number"),
    ("$18", "18", "gsm8k"),
    (r"\$1,080.00", "1080", "gsm8k"),
    ("18 dollars", "18", "gsm8k"),
    ("x = 5", "5", "number"),
    (r"\frac{1}{2}", "0.5", "number"),
    ("18 or 18", "18", "gsm8k"),  # one value, twice
    (r"\boxed{7} \boxed{7.0}", "7", "number"),
    (r"\textbf{(113) }", "113", "number"),
    ("0.5", r"\frac{1}{2}", "latex"),
    ("x = 5", "5", "latex"),
    ("18 dollars", "18", "latex"),
    (r"\$18", "18", "latex"),
    ("the answer is 5", "5", "latex"),
    (r"5 \text{ cm}", "5", "latex"),
    (r"x = \boxed{5}", "5", "latex"),
    (r"The answer is $\frac{14}{3}$.", r"\frac{14}{3}", "latex"),
    ("32,348", r"\$32,\!348", "latex"),
    ("11,111,111,100", r"11,\! 111,\! 111,\! 100", "latex"),
    ("10{,}080", r"10,\!080", "latex"),
    ("C", r"\text{(C)}", "latex"),
    (r"\left( 3, \frac{\pi}{2} \right)", r"\left( 3, \frac{\pi}{2} \right)", "latex"),
    (r"(3, \pi/2)", r"\left( 3, \frac{\pi}{2} \right)", "latex"),
    ("[2, 5)", "[2,5)", "latex"),
    (r"(-\infty, 2) \cup (3, \infty)", r"(-\infty, 2) \cup (3, \infty)", "latex"),
    (r"x \in [-2, 7]", r"x \in [-2,7]", "latex"),
    (r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", "latex"),
    ("y = 2x + 3", "y = 2x+3", "latex"),
    ("2, 1", "1,2", "latex"),  # a set gold (MATH-500 "1,-2", "3, 5, 7")
    (r"\{1, 2\}", "1, 2", "latex"),
    ("1 or 2", "1, 2", "latex"),
    (r"1 + \sqrt{19}, 1 - \sqrt{19}", r"1 \pm \sqrt{19}", "latex"),
    (r"\boxed{1 \pm \sqrt{19}}", r"1 \pm \sqrt{19}", "boxed"),
    (r"\text{Devon and Ana}", r"\text{Devon and Ana}", "latex"),  # a text gold listing names
    ("15\\frac{39}{40}\n\\frac{639}{40}", r"\frac{639}{40}", "latex"),  # a mixed number, then the fraction
]


@pytest.mark.parametrize("pred, gold, fmt", EQUIVALENT)
def test_equivalent_forms_keep_credit(pred, gold, fmt):
    assert answers_match(pred, gold, fmt) is True


@pytest.mark.parametrize(
    "answer, values",
    [
        ("7 or 9", ["7", "9"]),
        (r"x = \boxed{5}.", ["5"]),
        (r"\boxed{3} or 4", ["3", "4"]),
        (r"\boxed{3}, which is \boxed{3}", ["3", "which is"]),  # commentary with a separator counts
        (r"\left( 3, \frac{\pi}{2} \right)", [r"\left( 3, \frac{\pi}{2} \right)"]),
        (r"\$32,\!348", [r"\$32,\!348"]),
        ("18 or 18", ["18"]),
        ("  18  ,  18 ", ["18"]),
        (r"3 \text{ and } 4", ["3", "4"]),
        ("$18 or $19", ["$18", "$19"]),  # currency, not math delimiters
        ("The answer is $5$.", ["5"]),
        (r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", [r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}"]),
        (", ;", []),
    ],
)
def test_answer_candidates(answer, values):
    assert answer_candidates(answer) == values


def test_several_answer_blocks_and_boxes_are_candidates():
    two = "<answer>\n5\n</answer> hmm <answer>\n18\n</answer>"
    assert extract_xml_answer(two) == "5\n18"
    assert not answers_match(extract_xml_answer(two), "18", "gsm8k")
    assert answers_match(extract_xml_answer("<answer>18</answer><answer>18.0</answer>"), "18", "gsm8k")
    # lenient without tags: every box of the completion
    assert extract_lenient_answer(r"\boxed{3} ... \boxed{4}") == "3\n4"
    assert not answers_match(extract_lenient_answer(r"\boxed{3} ... \boxed{4}"), "4", "number")
    # AIME reference solutions box one value in several forms: still correct
    assert answers_match(extract_lenient_answer(r"\boxed{113} ... \boxed{\textbf{(113) }}"), "113", "number")


# --------------------------------------------------------------------------
# size caps: adversarial completions are "no answer", in linear time
# (timings: benchmarks/adversarial_scoring.py)

MB = 1_000_000


def test_caps_on_boxes():
    assert extract_boxed("\\boxed{" * (MB // 7)) is None  # more than MAX_SPANS boxes
    assert extract_lenient_answer("\\boxed{5}" * (MAX_SPANS + 1) + " 5") is None  # no fallback either
    assert extract_lenient_answer("\\boxed{5}" * MAX_SPANS) == "5"
    assert extract_boxed(r"\boxed{" + "{" * (MB // 2) + "}" * (MB // 2) + "}") is None  # not closed within the cap
    assert extract_boxed(r"\boxed{" + "1" * MAX_ANSWER_CHARS + "}") == "1" * MAX_ANSWER_CHARS
    assert extract_boxed(r"\boxed{7} then \boxed{" + "1" * MB + "}") == "7"  # too long: ignored like an unclosed one


def test_caps_on_answer_tags_and_numbers():
    assert extract_xml_answer("<answer>5</answer>" * (MAX_SPANS + 1)) is None
    assert extract_xml_answer("<answer>" * (MB // 8) + "5</answer>") == "5"  # unclosed tags are ignored
    assert extract_last_number("1" * MB) is None
    assert extract_lenient_answer("x " * 600 + "1" * MAX_ANSWER_CHARS) == "1" * MAX_ANSWER_CHARS
    assert extract_lenient_answer("1" * (MAX_ANSWER_CHARS + 1)) is None
    assert extract_lenient_answer("12 " + "-" * MB) == "12"
    long = "<answer>" + "1" * MB + "</answer>"
    assert extract_xml_answer(long) == "1" * MB  # extracted, but over the cap it scores 0
    assert not answers_match(extract_xml_answer(long), "1" * MB, "number")
    assert not answers_match("1" * (MAX_ANSWER_CHARS + 1), "1" * (MAX_ANSWER_CHARS + 1), "number")
    assert parse_number("1" * (MAX_ANSWER_CHARS + 1)) is None


@pytest.mark.parametrize(
    "completion",
    [
        "\\boxed{" * (MB // 7),
        "<answer>" + "\\boxed{" * (MB // 7) + "</answer>",
        "<answer>" + "1" * MB + "</answer>",
        "<answer>" + "{" * (MB // 2) + "}" * (MB // 2) + "</answer>",
        "<answer>" + r"\frac{1}{2}+" * (MB // 12) + "</answer>",
        "<answer>5</answer>" * (MB // 18),
        "1" * MB,
    ],
    ids=[
        "unclosed boxes",
        "unclosed boxes in tags",
        "digits",
        "nested braces",
        "long latex",
        "many tags",
        "bare digits",
    ],
)
def test_adversarial_megabyte_completions_score_zero(completion):
    for fmt, gold in [("number", "5"), ("latex", r"\frac{1}{2}")]:
        scored = score_completion(completion, gold, fmt)
        assert not scored["correct"] and not scored["correct_lenient"]


# --------------------------------------------------------------------------
# the real benchmark files


@pytest.mark.parametrize("split, n_rows, n_commas", [("test", 1319, 14), ("train", 7473, 79)])
def test_all_gsm8k_golds_parse(split, n_rows, n_commas):
    rows = read_jsonl(f"gsm8k/{split}.jsonl")
    assert len(rows) == n_rows
    golds = [parse_gold(r["answer"], "gsm8k") for r in rows]  # raises on any unparseable gold
    assert all(g.lstrip("-").isdigit() for g in golds)  # all GSM8K golds are integers
    assert sum("," in r["answer"].rsplit("####", 1)[1] for r in rows) == n_commas
    assert all(answers_match(g, g, "gsm8k") for g in golds)
    written = [r["answer"].rsplit("####", 1)[1].strip() for r in rows]
    assert all(answers_match(w, g, "gsm8k") for w, g in zip(written, golds))  # "1,080" vs "1080"
    # The last number of the worked solution (before ####) is the answer in ~97% of rows.
    agree = sum(
        answers_match(extract_lenient_answer(r["answer"].rsplit("####", 1)[0]), g, "gsm8k") for r, g in zip(rows, golds)
    )
    assert agree / n_rows > 0.95


def test_gsm8k_known_rows():
    rows = read_jsonl("gsm8k/test.jsonl")
    assert parse_gold(rows[0]["answer"], "gsm8k") == "18"
    assert parse_gold(rows[146]["answer"], "gsm8k") == "2125"  # "#### 2,125" on line 147
    assert parse_gold(rows[1113]["answer"], "gsm8k") == "-3"  # line 1114, negative


def test_all_math500_golds_parse_and_match_their_solutions():
    rows = read_jsonl("math500/test.jsonl")
    assert len(rows) == 500
    unparseable, mismatched = [], []
    for r in rows:
        try:
            gold = parse_gold(r["answer"], "latex")
        except GoldParseError:
            unparseable.append(r["unique_id"])
            continue
        assert answers_match(gold, gold, "latex"), gold
        if not answers_match(extract_lenient_answer(r["solution"]), gold, "latex"):
            mismatched.append(r["unique_id"])
    assert unparseable == []  # math-verify parses all 500 golds
    assert mismatched == []  # and each matches the last \boxed{} of its reference solution


@pytest.mark.parametrize(
    "rel, fmt",
    [
        ("gsm8k/test.jsonl", "gsm8k"),
        ("math500/test.jsonl", "latex"),
        ("aime24/test.jsonl", "number"),
        ("amc23/test.jsonl", "number"),
    ],
)
def test_every_gold_scores_itself_correct(rel, fmt):
    """No gold is mistaken for a hedge: each, as the dataset writes it, in the
    answer tags (strict) and in a box in the reasoning (lenient), scores correct."""
    wrong = []
    for row in read_jsonl(rel):
        gold = parse_gold(row["answer"], fmt)
        written = str(row["answer"]).rsplit("####", 1)[-1].strip()
        completion = format_completion(f"so the answer is $\\boxed{{{written}}}$.", written)
        scored = score_completion(completion, gold, fmt)
        if not (scored["correct"] and scored["correct_lenient"]):
            wrong.append(written)
    assert wrong == []


@pytest.mark.parametrize("name", ["aime24", "amc23"])
def test_competition_golds_parse(name):
    rows = read_jsonl(f"{name}/test.jsonl")
    assert len(rows) == {"aime24": 30, "amc23": 40}[name]
    golds = [parse_gold(r["answer"], "number") for r in rows]
    assert all(g.lstrip("-").isdigit() for g in golds)
    assert all(answers_match(g, g, "number") for g in golds)
    assert all(answers_match(str(r["answer"]), g, "number") for r, g in zip(rows, golds))


def test_aime24_golds_match_their_solutions():
    rows = read_jsonl("aime24/test.jsonl")
    mismatched = [
        r["id"]
        for r in rows
        if not answers_match(extract_lenient_answer(r["solution"]), parse_gold(r["answer"], "number"), "number")
    ]
    # id 60's solution has no \boxed{} and ends with the signature "-sepehr2010".
    assert mismatched == [60]
    assert parse_gold(next(r for r in rows if r["id"] == 75)["answer"], "number") == "73"  # stored as "073"


@pytest.mark.parametrize("answer", ["(" * 20 + "5" + ")" * 20, "\\frac{1}{" * 20 + "2" + "}" * 20, "9^{9^{9}}",
                                    "2^2^2"])
def test_answers_sympy_would_take_seconds_on_are_not_sent_to_math_verify(answer, monkeypatch):
    """Deep nesting and power towers are no final answer: scored 0 without
    calling math-verify (which would spend its whole timeout on them)."""
    import mathreason.scoring.answers as answers

    parse, parsed = answers._math_verify_parse, []
    monkeypatch.setattr(answers, "_math_verify_parse", lambda text: parsed.append(text) or parse(text))
    answers._latex_match.cache_clear()
    assert answers.answers_match(answer, "5", "latex") is False
    assert not [text for text in parsed if answer in text], parsed


@pytest.mark.parametrize(("answer", "gold"), [("2^{10}", "1024"), ("x^2 + 1", "x^2+1"), ("((3))", "3")])
def test_ordinary_powers_and_brackets_still_score(answer, gold):
    from mathreason.scoring.answers import answers_match

    assert answers_match(answer, gold, "latex")


@pytest.mark.parametrize(("pred", "gold", "right"), [
    # a peer's equivalence cases: math-verify stops at \mathrm{e} and reads both sides as "1"
    (r"1 + \frac{1}{\mathrm{e}}", r"1 - \frac{1}{\mathrm{e}}", False),
    (r"1 - \frac{1}{e}", r"1 - \frac{1}{\mathrm{e}}", True),
    (r"2", r"2\mathrm{e}", False),
    (r"2e", r"2\mathrm{e}", True),
    (r"\frac{\mathrm{i}}{2}", r"\frac{i}{2}", True),
    # what is meant to be dropped still is: units, degrees, text, dollars
    (r"30", r"30^\circ", True),
    (r"5.4", r"5.4 \text{ cents}", True),
    (r"18.90", r"\$18.90", True),
])
def test_only_whole_parses_are_credited(pred, gold, right):
    assert answers_match(pred, parse_gold(gold, "latex"), "latex") is right


def test_a_gold_that_parses_only_in_part_is_refused():
    with pytest.raises(GoldParseError):
        parse_gold(r"1 + \frac{1}{\mathrm{xy}}", "latex")
