"""Pair-mining rules (no model): which questions give a pair, and which pair."""

from __future__ import annotations

import json

import pytest

from mathreason.errors import UserError
from mathreason.methods.dpo import build_pairs, load_pairs

ROWS = [{"prompt": [{"role": "user", "content": f"q{i}"}], "question": f"q{i}", "answer": str(i)} for i in range(4)]


def test_all_correct_and_all_wrong_groups_give_no_pair():
    samples = [["a", "b"], ["c", "d"], ["e", "f", "g"], ["h", "i"]]
    totals = [[2.5, 3.0], [0.1, 0.5], [3.0, 0.2, 0.7], [0.0, 2.9]]
    correct = [[True, True], [False, False], [True, False, False], [False, True]]
    pairs, stats = build_pairs(ROWS, samples, totals, correct)
    assert (stats["all_correct"], stats["all_wrong"], stats["pairs"]) == (1, 1, 2)
    assert stats["yield"] == 0.5 and stats["samples"] == 9
    first, second = pairs
    assert first["chosen"][0]["content"] == "e" and first["rejected"][0]["content"] == "f"  # best right, worst wrong
    assert second["chosen"][0]["content"] == "i" and second["rejected"][0]["content"] == "h"
    assert all(p["chosen_reward"] > p["rejected_reward"] for p in pairs)
    assert stats["mean_reward_gap"] == pytest.approx(((3.0 - 0.2) + (2.9 - 0.0)) / 2)


def test_pair_file_errors_name_file_and_line(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"prompt": "p", "chosen": "c", "rejected": "r"}) + "\n{oops\n")
    with pytest.raises(UserError, match=rf"{path}:2: not a JSON record"):
        load_pairs(path)
    path.write_text(json.dumps({"prompt": "p", "chosen": "c"}) + "\n")
    with pytest.raises(UserError, match=rf"{path}:1: missing field\(s\) rejected"):
        load_pairs(path)
