r"""Answer extraction from completions and comparison with gold answers.

Formats: ``gsm8k`` (worked solution ending in ``#### N``), ``number`` (a plain
number), ``latex`` (MATH-style LaTeX, compared with math-verify) and ``boxed``
(the last ``\boxed{}`` of a worked solution, then as latex). Numbers are
compared exactly (``Fraction``), never with float tolerance.
math-verify (sympy) is imported lazily so that importing this module is fast.

Hedged answers score 0. A policy under RL learns to state several values
(``7 or 9``, ``\boxed{3} \boxed{4}``) when the scorer credits any of them, so a
prediction is correct only if *every* value it states equals the gold.
``answer_candidates`` reads the values an answer states:

- each ``\boxed{}`` (else each ``$…$``, ``\(…\)``, ``\[…\]`` span) is a
  value; the text around them is commentary (``x = \boxed{5}.``) unless it holds a
  separator, then its pieces are values too (``\boxed{3} or 4``);
- a span (or the whole answer) splits into values at ``,`` ``;`` newlines ``\\``
  ``\quad`` ``\lor`` outside brackets, so tuples and intervals (``(3, \pi)``,
  ``[2, 5)``) and thousands separators (``1,000``, ``32,\!348``) stay whole, and
  at the words ``or``/``and`` anywhere (``\text{4 or 5}``);
- the same text twice is one value (``18 or 18``, two identical ``<answer>`` blocks).

A gold of several values (``1, 2``, ``\text{Ann and Bo}``, or
``1 \pm \sqrt{19}``, which math-verify reads as a set) is compared with all
the values stated, as a set.
Where the values come from: the strict answer is the ``<answer>`` block
content, several differing blocks all counting. The lenient answer is the same
when the completion has an ``<answer>`` block (so lenient >= strict), else
every ``\boxed{}`` of the completion (reference solutions box one value in
several forms), else the last number in the text: a worked solution is full
of numbers, so only that extracted span is checked for hedging.

Extraction and comparison are linear-time, with caps that mean "no answer":
an answer span longer than MAX_ANSWER_CHARS scores 0, a ``\boxed{`` not
closed within MAX_ANSWER_CHARS is ignored like an unclosed one, and a text
with more than MAX_SPANS ``\boxed{}`` (or ``<answer>`` blocks) has no boxed
(or tagged) answer. math-verify itself can still spend up to
MATH_VERIFY_TIMEOUT on a short answer (nested parentheses, power towers).
"""

from __future__ import annotations

import re
import threading
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from functools import lru_cache

FORMATS = ("gsm8k", "number", "latex", "boxed")

# Seconds math-verify may spend on one parse / one comparison (main thread only:
# its timeout uses signal.alarm, which raises in other threads).
MATH_VERIFY_TIMEOUT = 5
# A longer answer span scores 0: a final answer is short, and sympy needs
# seconds on long garbage. Also the most a \boxed{} may hold.
MAX_ANSWER_CHARS = 512
# A text with more \boxed{} (or more <answer> blocks) than this has no boxed
# (or tagged) answer: this bounds the brace scans.
MAX_SPANS = 64


class GoldParseError(ValueError):
    """A gold answer that cannot be turned into something scorable."""


# --------------------------------------------------------------------------
# extraction

_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BRACE = re.compile(r"[{}]")


def _join(spans) -> str:
    """Distinct answer spans, one a line (``answer_candidates`` reads each line as a value)."""
    return "\n".join(dict.fromkeys(s.strip() for s in spans if s.strip()))


def _too_many_spans(text: str) -> bool:
    """More than MAX_SPANS boxes or answer blocks: a degenerate text with no answer."""
    return max(text.count("\\boxed") + text.count("\\fbox"), text.count("</answer>")) > MAX_SPANS


def extract_xml_answer(text: str | None) -> str | None:
    """Content of the complete ``<answer>...</answer>`` block, stripped.

    Several blocks that differ are all returned, one a line, so that
    ``answers_match`` sees each as a candidate. An unclosed ``<answer>`` is ignored.
    """
    if not text or _too_many_spans(text):
        return None
    blocks, pos = [], 0
    while (end := text.find("</answer>", pos)) >= 0:
        start = text.rfind("<answer>", pos, end)
        if start >= 0:
            blocks.append(text[start + len("<answer>") : end])
        pos = end + len("</answer>")
    return _join(blocks) if blocks else None


def _boxes(text: str) -> list[tuple[int, int, int]]:
    """``(start, content start, content end)`` of each outermost ``\\boxed{...}``
    (or ``\\fbox{...}``) whose braces close within MAX_ANSWER_CHARS."""
    spans: list[tuple[int, int, int]] = []
    for box in _BOX.finditer(text):
        if spans and box.start() < spans[-1][2]:
            continue  # inside the previous box
        depth = 1
        for brace in _BRACE.finditer(text, box.end(), box.end() + MAX_ANSWER_CHARS + 1):
            depth += 1 if brace.group() == "{" else -1
            if depth == 0:
                spans.append((box.start(), box.end(), brace.start()))
                break
    return spans


def extract_boxed(text: str | None) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) with balanced braces."""
    spans = _boxes(text) if text and not _too_many_spans(text) else None
    return text[spans[-1][1] : spans[-1][2]].strip() if spans else None


# A number as written in text: optional sign and `$`, thousands commas, decimals.
# A minus sign counts only when it is not a hyphen (``pages 3-4`` -> ``4``).
_NUMBER_IN_TEXT = re.compile(r"(?:(?<![\w)\]])-)?\$?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)")


def extract_last_number(text: str | None) -> str | None:
    """The last number in the text as written (``1,080``, ``-3``, ``2.5``, ``$18``);
    None if it is longer than MAX_ANSWER_CHARS."""
    end = max(text.rfind(digit) for digit in "0123456789") + 1 if text else 0
    if not end:
        return None
    # Only a window before the last digit: the last number lies in it, or is too long.
    *_, last = _NUMBER_IN_TEXT.finditer(text, max(0, end - 2 * MAX_ANSWER_CHARS), end)
    return last.group().strip() if len(last.group()) <= MAX_ANSWER_CHARS else None


def extract_lenient_answer(text: str | None) -> str | None:
    """The XML answer when there is one (as strict), else every ``\\boxed{}`` (one
    a line when they differ), else the last number in the text."""
    if not text or _too_many_spans(text):
        return None
    boxes = (text[start:end] for _, start, end in _boxes(text))
    return extract_xml_answer(text) or _join(boxes) or extract_last_number(text)


# --------------------------------------------------------------------------
# candidate values

# A \text{} holding a lone "or"/"and": the word itself.
_TEXT_WORD = re.compile(r"\\(?:text|textrm|textnormal|mbox|mathrm)\s*\{\s*(or|and)\s*\}")
# Brackets nest; separators outside brackets, and "or"/"and" anywhere, split an answer into values.
_TOKEN = re.compile(
    r"(?P<open>\\left(?![a-zA-Z])\s*\\?.|\\begin\s*\{[^{}]*\}|[([{])"
    r"|(?P<close>\\right(?![a-zA-Z])\s*\\?.|\\end\s*\{[^{}]*\}|[)\]}])"
    r"|(?P<thousands>(?<=\d),(?=(?:\\!\s*)?\d{3}(?!\d)))"
    r"|(?P<sep>[,;\n]|\\\\|\\q?quad(?![a-zA-Z])|\\(?:lor|vee)(?![a-zA-Z]))"
    r"|(?P<word>\b(?i:or|and)\b)"
)
# $...$ (not "$18 or $19": a closing $ is not followed by a digit), \(...\), \[...\].
_MATH_SPAN = re.compile(r"(?<!\\)\$\$?(.+?)(?<!\\)\$\$?(?!\d)|\\\((.+?)\\\)|\\\[(.+?)\\\]", re.DOTALL)


def _split(text: str) -> list[str]:
    """``text`` cut at its separators (pieces unstripped, possibly empty)."""
    text = _TEXT_WORD.sub(r" \1 ", text)
    pieces, depth, start = [], 0, 0
    for token in _TOKEN.finditer(text):
        kind = token.lastgroup
        depth += {"open": 1, "close": -1}.get(kind, 0)
        if kind == "word" or (kind == "sep" and depth <= 0):
            pieces.append(text[start : token.start()])
            start = token.end()
    return pieces + [text[start:]]


def answer_candidates(answer: str) -> list[str]:
    """The distinct values an answer states, in order (see the module docstring):
    ``7 or 9`` -> ``["7", "9"]``, ``x = \\boxed{5}`` -> ``["5"]``, ``(3, 4)`` -> ``["(3, 4)"]``.
    None stated (``[]``) by an answer longer than MAX_ANSWER_CHARS."""
    if len(answer) > MAX_ANSWER_CHARS:
        return []
    boxes = [(start, end + 1, answer[inner:end]) for start, inner, end in _boxes(answer)]
    spans = boxes or [(m.start(), m.end(), m[1] or m[2] or m[3]) for m in _MATH_SPAN.finditer(answer)]
    pieces = [content for _, _, content in spans] or [answer]
    if spans:
        cuts = [0, *(i for start, end, _ in spans for i in (start, end)), len(answer)]
        outside = " ".join(answer[a:b] for a, b in zip(cuts[::2], cuts[1::2]))
        if len(_split(outside)) > 1:  # "\boxed{3} or 4": the commentary states values too
            pieces.append(outside)
    values = (" ".join(v.split()) for piece in pieces for v in _split(piece))
    return list(dict.fromkeys(v for v in values if v))


# --------------------------------------------------------------------------
# numbers

_LATEX_NOISE = re.compile(r"\\[,!;: ]|\\(?:left|right|displaystyle)\b")
_TEXT_CMD = re.compile(r"\\(?:text|textbf|mathbf|mathrm|mbox)\s*\{([^{}]*)\}")
_FRAC = re.compile(r"^\\[dt]?frac\s*\{([^{}]+)\}\s*\{([^{}]+)\}$")
_VAR_EQUALS = re.compile(r"^[a-zA-Z]\s*=\s*")
# sign, digits (with thousands commas) and decimals, then an optional unit or %.
_NUMBER_WITH_UNIT = re.compile(
    r"^((?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|\.\d+)\s*(%|[a-zA-Z][a-zA-Z ./]*(?:\^\{?\d\}?)?)?$"
)
# Words after a number that change its value: "2 and a half", "5 million".
_NOT_UNITS = {
    "and",
    "or",
    "plus",
    "minus",
    "times",
    "point",
    "half",
    "quarter",
    "hundred",
    "thousand",
    "million",
    "billion",
}


def parse_number(text: str | None) -> Fraction | None:
    """Exact value of a number written as an answer, or None if it is not one.

    Accepts ``1,080``, ``$18``, ``-5.0``, ``50%`` (= 50), ``18 dollars``,
    ``x = 5``, ``3/4``, ``\\frac{3}{4}``, ``\\boxed{7}``, ``{,}`` separators.
    Rejects text stating more than one value (``3 or 4``, ``\\boxed{3} \\boxed{4}``,
    ``5 apples and 3``), with words before the number, with value-changing words
    after it (``2 and a half``, ``5 million``), or longer than MAX_ANSWER_CHARS.
    """
    values = answer_candidates(text) if text is not None else []
    if len(values) != 1:
        return None
    s = values[0]
    s = _TEXT_CMD.sub(r" \1", s)
    s = _LATEX_NOISE.sub("", s).replace("{,}", ",").replace("\\$", "").replace("\\%", "%")
    s = s.replace("$", "").strip().rstrip(".").strip()
    s = _VAR_EQUALS.sub("", s)
    s = re.sub(r"^\(([^(),]*)\)$", r"\1", s).strip()  # "(113)", as in AIME solutions
    sign = -1 if s.startswith("-") else 1
    s = s[1:].strip() if s[:1] in ("-", "+") else s
    frac = _FRAC.match(s) or re.match(r"^(\d+)\s*/\s*(\d+)$", s)
    if frac:
        num, den = (parse_number(part) for part in frac.groups())
        if num is None or not den:
            return None
        return sign * num / den
    match = _NUMBER_WITH_UNIT.match(s)
    if not match or _NOT_UNITS.intersection((match.group(2) or "").lower().split()):
        return None
    try:
        return sign * Fraction(Decimal(match.group(1).replace(",", "").rstrip(".")))
    except (InvalidOperation, ValueError):
        return None


def _canonical_number(value: Fraction, written: str) -> str:
    """``27.0`` -> ``27``, ``025`` -> ``25``; non-integers keep their decimal form."""
    if value.denominator == 1:
        return str(value.numerator)
    return written


# --------------------------------------------------------------------------
# gold answers


def parse_gold(raw: str, fmt: str) -> str:
    """The gold answer string that ``answers_match`` compares against.

    gsm8k: the number after the last ``####`` (commas, ``$``, spaces removed).
    number: a plain number string (``27.0`` -> ``27``, ``025`` -> ``25``).
    latex: the LaTeX as given (stripped), checked to be parseable by math-verify.
    boxed: the last ``\\boxed{…}`` of a worked solution (MATH train), then as latex.
    Raises GoldParseError if the gold cannot be scored.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown answer format {fmt!r}; allowed: {', '.join(FORMATS)}")
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
        raise GoldParseError(f"gold answer must be a string, got {type(raw).__name__}")
    raw = str(raw)
    if fmt == "boxed":
        boxed = extract_boxed(raw)
        if boxed is None:
            raise GoldParseError("no \\boxed{} answer in the solution")
        raw = boxed
    if fmt == "gsm8k":
        if "####" not in raw:
            raise GoldParseError("no '####' marker in the gsm8k answer")
        raw = raw.rsplit("####", 1)[1]
    if fmt in ("gsm8k", "number"):
        written = re.sub(r"[\s,$]", "", raw)
        value = parse_number(written)
        if value is None or not re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)", written):
            raise GoldParseError(f"gold answer {raw.strip()!r} is not a plain number")
        return _canonical_number(value, written.lstrip("+"))
    gold = raw.strip()
    if not gold:
        raise GoldParseError("empty LaTeX gold answer")
    # math-verify falls back to the raw string when sympy fails: not scorable.
    if all(isinstance(x, str) for x in _parsed_gold(gold)):
        raise GoldParseError(f"math-verify cannot parse the gold answer {gold!r}")
    return gold


# --------------------------------------------------------------------------
# comparison


def answers_match(pred: str | None, gold: str, fmt: str) -> bool:
    """True if every value the prediction states (``answer_candidates``) equals
    the (parsed) gold answer; a hedge such as ``7 or 9`` is never correct.

    gsm8k/number: exact numeric equality via ``parse_number``.
    latex/boxed: math-verify equivalence (``\\dfrac{14}{3}`` == ``28/6``, tuples,
    intervals); a gold of several values (``1, 2``, ``1 \\pm \\sqrt{19}``) is
    compared with all the values stated, as a set.
    Predictions over MAX_ANSWER_CHARS score False.
    Never raises on a garbage prediction: it scores False.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown answer format {fmt!r}; allowed: {', '.join(FORMATS)}")
    values = answer_candidates(pred) if pred is not None else []
    if not values:
        return False
    if fmt in ("gsm8k", "number"):
        gold_value = parse_number(gold)
        return gold_value is not None and all(parse_number(v) == gold_value for v in values)
    gold = gold.strip()
    if len(answer_candidates(gold)) > 1 or _is_set(_parsed_gold(gold)):  # "1, 2", "\text{Ann and Bo}"
        return _latex_match(", ".join(values), gold)
    return all(_latex_match(v, gold) for v in values)


def _dollars(latex: str) -> str:
    """Wrap bare LaTeX in ``$...$`` so math-verify treats it as math."""
    if re.search(r"(?<!\\)\$|\\boxed|\\\(|\\\[", latex):
        return latex
    return f"${latex}$"


def _timeout() -> int | None:
    return MATH_VERIFY_TIMEOUT if threading.current_thread() is threading.main_thread() else None


# A single-letter \mathrm{e} (\operatorname{i}, ...) is the constant or variable itself; math-verify's
# normalisation drops it as if it were a unit and parses only what came before it.
_UPRIGHT_LETTER = re.compile(r"\\(?:mathrm|mathit|operatorname|textrm|rm)\s*\{\s*([A-Za-z])\s*\}")
# What a cut-off parse leaves at its end: an open brace, an operator, or a command still waiting for its argument.
_CUT_OFF = re.compile(r"(?:[{+\-*/^_=]|\\(?:d?t?frac|sqrt|binom|mathrm|mathit|operatorname|text|mbox|left))\s*$")


def _whole(parsed: list) -> bool:
    """Whether math-verify's parse covers the whole text: its matched string (after its own
    normalisation, which drops units, ``\\text{}``, ``$`` and spacing macros on purpose) has balanced
    braces and does not stop inside an expression. ``1 + \\frac{1}{\\mathrm{x}}`` read as ``1``
    (matched ``1 + \\frac{1}{``) is a cut-off parse: it would make any ``1 ± ...`` equal."""
    if len(parsed) < 2 or not isinstance(parsed[-1], str):
        return bool(parsed)
    matched = parsed[-1]
    return matched.count("{") == matched.count("}") and not _CUT_OFF.search(matched)


def _math_verify_parse(text: str) -> list:
    """math-verify's parse of ``text``, or [] when it covers only part of it (:func:`_whole`)."""
    try:
        from math_verify import parse

        parsed = parse(_UPRIGHT_LETTER.sub(r"\1", text), parsing_timeout=_timeout())
    except Exception:  # math-verify/sympy can throw anything on garbage
        return []
    return parsed if _whole(parsed) else []


@lru_cache(maxsize=4096)
def _parsed_gold(gold: str) -> tuple:
    return tuple(_math_verify_parse(_dollars(gold)))


def _is_set(parsed) -> bool:
    """Whether math-verify read several values (``1, 2``, ``1 \\pm \\sqrt{19}``)."""
    from sympy import FiniteSet

    return bool(parsed) and isinstance(parsed[0], FiniteSet) and len(parsed[0]) > 1


def _verify(gold_parsed, pred_parsed) -> bool:
    from math_verify import verify

    try:
        return bool(pred_parsed) and verify(gold_parsed, pred_parsed, timeout_seconds=_timeout())
    except Exception:
        return False


MAX_NESTING = 8  # brackets inside brackets: deeper is no final answer, and costs sympy seconds
_TOWER = re.compile(r"\^\s*(?:\{[^{}]*\^|[\w.]+\s*\^)")  # a power of a power (9^{9^{9}})


def _costly(value: str) -> bool:
    """A value sympy would spend seconds on: nesting deeper than MAX_NESTING,
    or a power tower. Such a value is not scored (0), never sent to math-verify."""
    depth = deepest = 0
    for char in value:
        if char in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in ")]}":
            depth -= 1
    return deepest > MAX_NESTING or bool(_TOWER.search(value))


@lru_cache(maxsize=4096)  # a group of rollouts repeats answers; eval scores strict and lenient
def _latex_match(value: str, gold: str) -> bool:
    """math-verify equivalence of one stated value (or a set of them) with the gold."""
    gold_parsed = list(_parsed_gold(gold))
    if not gold_parsed:
        return False
    value = re.sub(r"(?<!\\)\$", "", value)  # a currency sign ("$18"): math delimiters are gone
    if _costly(value):
        return False
    pred_parsed = _math_verify_parse(f"${value}$")
    if _verify(gold_parsed, pred_parsed):
        return True
    # Else math-verify's extraction from raw text (``18 dollars``, ``the answer is 5``),
    # which takes the last value it finds: only for a value with one number, not a set (``\pm 3``).
    if _is_set(pred_parsed) or len(_NUMBER_IN_TEXT.findall(value)) != 1:
        return False
    return _verify(gold_parsed, _math_verify_parse(value))
