"""Answer extraction from completions and comparison with gold answers.

Formats: ``gsm8k`` (worked solution ending in ``#### N``), ``number`` (a plain
number) and ``latex`` (MATH-style LaTeX, compared with math-verify). Numbers
are compared exactly (``Fraction``), never with float tolerance.
math-verify (sympy) is imported lazily so that importing this module is fast.
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
# Longer LaTeX predictions score False without calling math-verify: a final
# answer is short, and sympy needs seconds on long garbage.
MAX_LATEX_PRED_CHARS = 512


class GoldParseError(ValueError):
    """A gold answer that cannot be turned into something scorable."""


# --------------------------------------------------------------------------
# extraction


def extract_xml_answer(text: str | None) -> str | None:
    """Content of the last complete ``<answer>...</answer>`` block, stripped."""
    if not text:
        return None
    end = text.rfind("</answer>")
    if end < 0:
        return None
    start = text.rfind("<answer>", 0, end)
    if start < 0:
        return None
    return text[start + len("<answer>") : end].strip()


def extract_boxed(text: str | None) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) with balanced braces."""
    if not text:
        return None
    for match in reversed(list(re.finditer(r"\\(?:boxed|fbox)\s*\{", text))):
        depth, i = 1, match.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            return text[match.end() : i - 1].strip()
    return None


# A number as written in text: optional sign and `$`, thousands commas, decimals.
# A minus sign counts only when it is not a hyphen (``pages 3-4`` -> ``4``).
_NUMBER_IN_TEXT = re.compile(r"(?:(?<![\w)\]])-)?\$?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)")


def extract_last_number(text: str | None) -> str | None:
    """The last number in the text as written (``1,080``, ``-3``, ``2.5``, ``$18``)."""
    if not text:
        return None
    found = _NUMBER_IN_TEXT.findall(text)
    return found[-1].strip() if found else None


def extract_lenient_answer(text: str | None) -> str | None:
    """Last ``\\boxed{}``, else the XML answer, else the last number in the text."""
    for extract in (extract_boxed, extract_xml_answer, extract_last_number):
        answer = extract(text)
        if answer:
            return answer
    return None


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
    Rejects text with more than one number, with words before the number, or
    with value-changing words after it (``2 and a half``, ``5 million``).
    """
    if text is None:
        return None
    s = extract_boxed(text) or text
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
    """True if the predicted answer equals the (parsed) gold answer.

    gsm8k/number: exact numeric equality via ``parse_number``.
    latex: math-verify equivalence (``\\dfrac{14}{3}`` == ``28/6``, tuples,
    intervals); predictions over MAX_LATEX_PRED_CHARS score False.
    Never raises on a garbage prediction: it scores False.
    """
    if pred is None or not pred.strip():
        return False
    if fmt in ("gsm8k", "number"):
        value = parse_number(pred)
        return value is not None and value == parse_number(gold)
    if fmt in ("latex", "boxed"):
        return len(pred) <= MAX_LATEX_PRED_CHARS and _latex_match(pred.strip(), gold.strip())
    raise ValueError(f"unknown answer format {fmt!r}; allowed: {', '.join(FORMATS)}")


def _dollars(latex: str) -> str:
    """Wrap bare LaTeX in ``$...$`` so math-verify treats it as math."""
    if re.search(r"(?<!\\)\$|\\boxed|\\\(|\\\[", latex):
        return latex
    return f"${latex}$"


def _timeout() -> int | None:
    return MATH_VERIFY_TIMEOUT if threading.current_thread() is threading.main_thread() else None


def _math_verify_parse(text: str) -> list:
    try:
        from math_verify import parse

        return parse(text, parsing_timeout=_timeout())
    except Exception:  # math-verify/sympy can throw anything on garbage
        return []


@lru_cache(maxsize=4096)
def _parsed_gold(gold: str) -> tuple:
    return tuple(_math_verify_parse(_dollars(gold)))


def _latex_match(pred: str, gold: str) -> bool:
    gold_parsed = list(_parsed_gold(gold))
    if not gold_parsed:
        return False
    from math_verify import verify

    # First the prediction as math; then math-verify's own extraction from
    # the raw text (``x = 5``, ``the answer is 5``).
    for candidate in dict.fromkeys([_dollars(pred), pred]):
        pred_parsed = _math_verify_parse(candidate)
        if not pred_parsed:
            continue
        try:
            if verify(gold_parsed, pred_parsed, timeout_seconds=_timeout()):
                return True
        except Exception:
            continue
    return False
