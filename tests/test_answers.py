"""Answer extraction, gold parsing and comparison, on hand cases and the real benchmark files."""

import json
from pathlib import Path

import pytest

from mathreason.answers import (
    GoldParseError,
    answers_match,
    extract_lenient_answer,
    extract_xml_answer,
    parse_gold,
    parse_number,
)

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
        ("<answer>1</answer> then <answer>2</answer>", "2"),  # last block wins
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
        (r"\boxed{3} first, then \boxed{5}", "5"),
        (r"\boxed{\left( 3, \frac{\pi}{2} \right)}", r"\left( 3, \frac{\pi}{2} \right)"),
        (r"\boxed{7} and a truncated \boxed{\frac{1", "7"),  # unbalanced last box is ignored
        (r"<answer>\boxed{12}</answer>", "12"),
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
