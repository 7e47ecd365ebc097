"""Dataset loading: the row contract on the real files, file errors, hub arguments."""

import json
import sys
import types
from pathlib import Path

import pytest
from helpers import compose, yaml_value
from omegaconf import OmegaConf

import mathreason.data
from mathreason.data.loaders import LoadedSplit, hub_load_kwargs, load_split
from mathreason.data.prompts import build_prompt
from mathreason.errors import UserError

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
ROW_KEYS = {"prompt", "question", "answer", "answer_format", "solution", "chain_id"}
CFG_KEYS = {
    "name", "hub_id", "hub_config", "train_split", "eval_split", "path", "train_path",
    "question_field", "answer_field", "answer_format", "solution_field", "max_train", "max_eval",
    "n_train", "n_eval", "seed", "generator", "train_size",
}  # fmt: skip


def real(rel: str) -> Path:
    path = DATA / rel
    if not path.is_file():
        pytest.skip(f"real data not available: {path} (expected ../shared/data beside the repo)")
    return path


def conf(name: str, **overrides):
    """The data section as composed for data=<name> (config.yaml's base + the option)."""
    return OmegaConf.merge(compose([f"data={name}"]).data, overrides)


def local_cfg(path, /, **overrides) -> dict:
    cfg = {
        "name": "local", "hub_id": None, "hub_config": None, "train_split": "train", "eval_split": "test",
        "path": str(path), "train_path": None, "question_field": "question", "answer_field": "answer",
        "answer_format": "gsm8k", "solution_field": None, "max_train": None, "max_eval": None,
    }  # fmt: skip
    cfg.update(overrides)
    return cfg


def write_jsonl(tmp_path, lines, name="data.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def row(q="What is 2+2?", a="2+2=4\n#### 4") -> str:
    return json.dumps({"question": q, "answer": a})


# --------------------------------------------------------------------------
# config files


@pytest.mark.parametrize("name", ["gsm8k", "math500", "aime24", "amc23"])
def test_data_configs_have_every_key(name):
    cfg = conf(name)
    assert set(cfg.keys()) == CFG_KEYS
    assert cfg.name == name
    assert cfg.answer_format in ("gsm8k", "number", "latex")


@pytest.mark.parametrize(
    "name, split, expected",
    [
        ("gsm8k", "train", {"path": "openai/gsm8k", "name": "main", "split": "train"}),
        ("gsm8k", "eval", {"path": "openai/gsm8k", "name": "main", "split": "test"}),
        ("math500", "eval", {"path": "HuggingFaceH4/MATH-500", "name": None, "split": "test"}),
        ("aime24", "eval", {"path": "HuggingFaceH4/aime_2024", "name": None, "split": "train"}),
        ("amc23", "eval", {"path": "math-ai/amc23", "name": None, "split": "test"}),
    ],
)
def test_hub_load_kwargs(name, split, expected):
    assert hub_load_kwargs(conf(name), split) == expected


# --------------------------------------------------------------------------
# real files


def test_gsm8k_test_via_path():
    path = real("gsm8k/test.jsonl")
    loaded = load_split(conf("gsm8k", path=str(path)), "eval")
    assert isinstance(loaded, LoadedSplit)
    assert loaded.source == str(path)
    assert len(loaded.rows) == 1319 and loaded.skipped == []
    assert all(set(r) == ROW_KEYS for r in loaded.rows)
    first = loaded.rows[0]
    assert first["question"].startswith("Janet\u2019s ducks lay 16 eggs")
    assert first["prompt"] == build_prompt(first["question"])
    assert first["answer"] == "18" and first["answer_format"] == "gsm8k"
    assert first["solution"].endswith("#### 18")
    assert loaded.rows[146]["answer"] == "2125"  # "#### 2,125"
    assert all(r["answer"].lstrip("-").isdigit() for r in loaded.rows)


def test_gsm8k_train_via_train_path_and_max_train():
    path = real("gsm8k/train.jsonl")
    cfg = conf("gsm8k", train_path=str(path))
    assert len(load_split(cfg, "train").rows) == 7473
    limited = load_split(OmegaConf.merge(cfg, {"max_train": 100}), "train")
    assert len(limited.rows) == 100 and limited.source == str(path)


@pytest.mark.parametrize(
    "name, rel, n_rows, first_answer",
    [
        ("math500", "math500/test.jsonl", 500, r"\left( 3, \frac{\pi}{2} \right)"),
        ("aime24", "aime24/test.jsonl", 30, "204"),
        ("amc23", "amc23/test.jsonl", 40, "27"),  # stored as the float 27.0
    ],
)
def test_benchmarks_via_path(name, rel, n_rows, first_answer):
    loaded = load_split(conf(name, path=str(real(rel))), "eval")
    assert len(loaded.rows) == n_rows and loaded.skipped == []
    assert loaded.rows[0]["answer"] == first_answer
    assert all(set(r) == ROW_KEYS and r["answer_format"] == conf(name).answer_format for r in loaded.rows)
    has_solutions = name != "amc23"
    assert all(bool(r["solution"]) is has_solutions for r in loaded.rows)


def test_max_eval_takes_the_first_rows():
    path = real("aime24/test.jsonl")
    loaded = load_split(conf("aime24", path=str(path), max_eval=3), "eval")
    assert [r["answer"] for r in loaded.rows] == ["204", "113", "371"]


# --------------------------------------------------------------------------
# local file errors


def test_bad_json_line_names_file_and_line(tmp_path):
    path = write_jsonl(tmp_path, [row(), "", '{"question": "q", "answer": ', row()])
    with pytest.raises(UserError) as e:
        load_split(local_cfg(path), "eval")
    msg = str(e.value)
    assert msg.startswith(f"{path}:3: invalid JSON")
    assert "(expected fields: question, answer)" in msg and "\n" not in msg


def test_missing_field(tmp_path):
    path = write_jsonl(tmp_path, [row(), json.dumps({"question": "q", "solution": "s"})])
    with pytest.raises(UserError, match=rf"^{path}:2: missing field 'answer' \(expected fields: question, answer\)$"):
        load_split(local_cfg(path), "eval")


def test_missing_solution_field_when_configured(tmp_path):
    path = write_jsonl(tmp_path, [row()])
    with pytest.raises(UserError, match=r":1: missing field 'worked' \(expected fields: question, answer, worked\)"):
        load_split(local_cfg(path, solution_field="worked"), "eval")


def test_non_object_line(tmp_path):
    path = write_jsonl(tmp_path, ["[1, 2]"])
    with pytest.raises(UserError, match=rf"^{path}:1: expected a JSON object"):
        load_split(local_cfg(path), "eval")


def test_question_must_be_a_string(tmp_path):
    path = write_jsonl(tmp_path, [row(), json.dumps({"question": None, "answer": "#### 1"})])
    with pytest.raises(UserError, match=rf"^{path}:2: field 'question' must be a non-empty string"):
        load_split(local_cfg(path), "eval")


@pytest.mark.parametrize("split, key", [("eval", "path"), ("train", "train_path")])
def test_missing_file(tmp_path, split, key):
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(UserError, match=rf"^data\.{key}: file not found: {missing}"):
        load_split(local_cfg(None, **{key: str(missing)}), split)


def test_empty_file(tmp_path):
    path = write_jsonl(tmp_path, ["", "  "])
    with pytest.raises(UserError, match=rf"^{path}: no usable rows for the eval split"):
        load_split(local_cfg(path), "eval")


def test_unparseable_golds_are_skipped_and_listed(tmp_path):
    path = write_jsonl(tmp_path, [row(), row(a="no marker"), row(a="#### many"), row(a="#### 1,080")])
    loaded = load_split(local_cfg(path), "eval")
    assert [r["answer"] for r in loaded.rows] == ["4", "1080"]
    assert [s["where"] for s in loaded.skipped] == [f"{path}:2", f"{path}:3"]
    assert loaded.skipped[0]["raw"] == "no marker" and "####" in loaded.skipped[0]["reason"]


def test_all_golds_unparseable_is_an_error(tmp_path):
    path = write_jsonl(tmp_path, [row(a="x"), row(a="y")])
    with pytest.raises(UserError, match=r"no usable rows for the eval split \(2 skipped"):
        load_split(local_cfg(path), "eval")


def test_latex_and_number_golds(tmp_path):
    lines = [
        json.dumps({"problem": "p1", "answer": r"\frac{1}{2}", "solution": r"so \boxed{\frac{1}{2}}"}),
        json.dumps({"problem": "p2", "answer": "}{", "solution": "bad gold"}),
    ]
    path = write_jsonl(tmp_path, lines)
    loaded = load_split(
        local_cfg(path, question_field="problem", answer_format="latex", solution_field="solution"), "eval"
    )
    assert [(r["question"], r["answer"], r["solution"]) for r in loaded.rows] == [
        ("p1", r"\frac{1}{2}", r"so \boxed{\frac{1}{2}}")
    ]
    assert len(loaded.skipped) == 1

    path = write_jsonl(
        tmp_path,
        [json.dumps({"question": "q", "answer": 7.0}), json.dumps({"question": "q", "answer": "007"})],
        "n.jsonl",
    )
    assert [r["answer"] for r in load_split(local_cfg(path, answer_format="number"), "eval").rows] == ["7", "7"]


# --------------------------------------------------------------------------
# config errors


@pytest.mark.parametrize(
    "override, pattern",
    [
        ({"answer_format": "roman"}, r"^data\.answer_format: 'roman' is not one of gsm8k, number, latex, boxed$"),
        ({"question_field": None}, r"^data\.question_field: must be set$"),
        ({"max_eval": -1}, r"^data\.max_eval: must be a non-negative integer"),
        ({"max_eval": "ten"}, r"^data\.max_eval: must be a non-negative integer"),
        ({"path": None}, r"^data\.hub_id: must be set \(or set data\.path"),
    ],
)
def test_config_errors(tmp_path, override, pattern):
    path = write_jsonl(tmp_path, [row()])
    with pytest.raises(UserError, match=pattern):
        load_split(local_cfg(path, **override), "eval")


def test_unknown_split(tmp_path):
    with pytest.raises(ValueError, match="split must be one of"):
        load_split(local_cfg(write_jsonl(tmp_path, [row()])), "validation")


# --------------------------------------------------------------------------
# hub path (no network: datasets.load_dataset is replaced)


def test_hub_path_with_fake_load_dataset(monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(**kwargs):
        calls.append(kwargs)
        return [json.loads(row(q=f"q{i}", a=f"#### {i}")) for i in range(5)] + [{"question": "bad", "answer": "none"}]

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    loaded = load_split(conf("gsm8k"), "eval")
    assert calls == [{"path": "openai/gsm8k", "name": "main", "split": "test"}]
    assert loaded.source == "openai/gsm8k:test"
    assert [r["answer"] for r in loaded.rows] == ["0", "1", "2", "3", "4"]
    assert loaded.skipped[0]["where"] == "openai/gsm8k:test[5]"
    assert len(load_split(conf("gsm8k", max_train=2), "train").rows) == 2
    assert calls[-1]["split"] == "train"


def test_hub_failure_is_one_line_user_error(monkeypatch):
    import datasets

    def offline(**kwargs):
        raise ConnectionError("Couldn't reach 'openai/gsm8k' on the Hub (LocalEntryNotFoundError)\nmore detail")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(UserError) as e:
        load_split(conf("gsm8k"), "train")
    msg = str(e.value)
    assert msg.startswith("data.hub_id: cannot load 'openai/gsm8k' (config 'main', split 'train'): Couldn't reach")
    assert "data.path" in msg and "\n" not in msg


# --------------------------------------------------------------------------
# arith dispatch


def test_arith_dispatches_to_the_generator_module(monkeypatch):
    seen = []

    def make_split(cfg, split):
        seen.append((cfg["name"], split))
        return [{"question": "Tom has 2 apples and buys 3. How many?", "answer": "5", "solution": "2 + 3 = 5",
                 "chain_id": "c0ffee"}]

    fake = types.ModuleType("mathreason.data.arith")
    fake.make_split = make_split
    monkeypatch.setitem(sys.modules, "mathreason.data.arith", fake)
    monkeypatch.setattr(mathreason.data, "arith", fake, raising=False)
    loaded = load_split({"name": "arith"}, "train")
    assert seen == [("arith", "train")]
    assert loaded.source == "arith (embedded generator)" and loaded.skipped == []
    assert loaded.rows == [
        {
            "prompt": build_prompt("Tom has 2 apples and buys 3. How many?"),
            "question": "Tom has 2 apples and buys 3. How many?",
            "answer": "5",
            "answer_format": "number",
            "solution": "2 + 3 = 5",
            "chain_id": "c0ffee",  # the generator's cluster id passes through
        }
    ]


def test_arith_with_the_real_generator():
    cfg = {"name": "arith", "n_train": 6, "n_eval": 4, "seed": 0, "max_eval": 3,
           "generator": yaml_value("data/arith.yaml", "generator")}
    train, evaluation = load_split(cfg, "train"), load_split(cfg, "eval")
    assert len(train.rows) == 6 and len(evaluation.rows) == 3
    assert all(set(r) == ROW_KEYS and r["answer_format"] == "number" for r in train.rows + evaluation.rows)
    assert not {r["question"] for r in train.rows} & {r["question"] for r in evaluation.rows}
