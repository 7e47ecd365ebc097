"""Fast checks of the embedded default: the arith generator and the tiny model's tokenizer.

The (minutes-long) SFT warm start is not run here; the training tests build it once.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import yaml_value

from mathreason.data.arith import generate_problems, make_split, vocabulary
from mathreason.data.prompts import SYSTEM_PROMPT, build_prompt, format_completion
from mathreason.errors import UserError

KNOBS = yaml_value("data/arith.yaml", "generator")  # the embedded default's difficulty
WIDE = {**KNOBS, "max_steps": 3, "max_start": 50, "max_operand": 30, "max_result": 300,
        "ops": ["add", "sub", "mul"], "comparisons": True}  # every operation and template
DATA_CFG = {"name": "arith", "n_train": 300, "n_eval": 100, "seed": 0, "generator": KNOBS}


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    """The tiny tokenizer saved and reloaded with AutoTokenizer (the path every run takes)."""
    from transformers import AutoTokenizer, Qwen2Config

    from mathreason.models.tiny import build_tokenizer

    path = tmp_path_factory.mktemp("tok")
    tok = build_tokenizer()
    tok.save_pretrained(path)
    Qwen2Config(vocab_size=len(tok)).save_pretrained(path)  # AutoTokenizer resolves via the model type
    return AutoTokenizer.from_pretrained(path)


# ---------------------------------------------------------------- generator


def test_generator_is_deterministic_and_rows_are_well_formed():
    a = generate_problems(50, seed=3, **KNOBS)
    assert a == generate_problems(50, seed=3, **KNOBS)
    assert a != generate_problems(50, seed=4, **KNOBS)
    assert len({r["question"] for r in a}) == 50
    for r in a:
        assert set(r) == {"question", "answer", "solution", "chain_id"}
        assert r["answer"].isdigit()
        lines = r["solution"].split("\n")
        assert 2 <= len(lines) <= 3  # restated start + 1-2 equations
        assert lines[-1].endswith(f"= {r['answer']}")


def test_solution_equations_are_correct():
    for r in generate_problems(200, seed=1, **WIDE):
        for line in r["solution"].split("\n")[1:]:
            lhs, rhs = line.split(" = ")
            assert eval(lhs) == int(rhs)  # noqa: S307 - our own "a op b" strings


def test_train_and_eval_splits_are_disjoint_and_deterministic():
    train, evaluation = make_split(DATA_CFG, "train"), make_split(DATA_CFG, "eval")
    assert len(train) == 300 and len(evaluation) == 100
    assert not {r["question"] for r in train} & {r["question"] for r in evaluation}
    assert make_split({**DATA_CFG, "eval_split": "eval"}, "eval") == evaluation  # eval: the whole partition
    assert make_split(DATA_CFG, "train") == train
    # disjoint even when the seeds coincide: the partition is by question hash
    other = make_split({**DATA_CFG, "seed": 7}, "train")
    assert not {r["question"] for r in other} & {r["question"] for r in evaluation}


def test_dev_test_and_ood_are_disjoint_by_equation_chain():
    """dev and test halve the eval partition by chain; ood is three-step items of it;
    each row names its chain, the cluster a bootstrap resamples."""
    from mathreason.data.arith import chain_id, equation_chain

    cfg = {**DATA_CFG, "n_eval": 400}
    splits = {name: make_split(cfg, name) for name in ("train", "dev", "test", "ood")}
    assert make_split({**cfg, "eval_split": "dev"}, "eval") == splits["dev"]
    chains = {name: {equation_chain(r["solution"]) for r in rows} for name, rows in splits.items()}
    for a, b in (("train", "dev"), ("train", "test"), ("dev", "test"), ("train", "ood"), ("dev", "ood"),
                 ("test", "ood")):
        assert not chains[a] & chains[b], (a, b)
    assert all(r["solution"].count(" = ") == 3 for r in splits["ood"])
    assert all(r["solution"].count(" = ") <= 2 for r in splits["dev"] + splits["test"])
    for rows in splits.values():
        assert all(r["chain_id"] == chain_id(equation_chain(r["solution"])) for r in rows)
    assert len({r["chain_id"] for r in splits["test"]}) < len(splits["test"])  # clustered: chains repeat
    with pytest.raises(UserError, match=r"^data\.eval_split: .*eval, dev, test, ood"):
        make_split({**cfg, "eval_split": "validation"}, "eval")


def test_no_eval_equation_chain_is_in_the_training_data():
    """Structural hold-out: the eval split (1000 items) shares no equation chain
    (operands, operators, results) with the RL training prompts or the tiny
    model's warm-start problems, as the default configs generate them."""
    from helpers import compose

    from mathreason.data.arith import equation_chain, shared_chains
    from mathreason.models.tiny import warm_start_dataset

    cfg = compose([])
    data = {**cfg.data, "n_eval": 1000}
    train, evaluation = make_split(data, "train"), make_split(data, "eval")
    assert len(evaluation) == 1000
    spec = yaml_value("model/tiny.yaml", "tiny")
    warm = [{"solution": ex["completion"][0]["content"].split("<reasoning>\n")[1].split("\n</reasoning>")[0]}
            for ex in warm_start_dataset({**spec, "warm_start": {**spec["warm_start"], "shortcut_rate": 0.0}})]
    assert len(warm) == spec["warm_start"]["n_problems"]
    assert shared_chains(train, evaluation) == set()
    assert shared_chains(warm, evaluation) == set()
    # the check itself can fail: the same problems in other words share their chains
    assert shared_chains(evaluation[:5], evaluation) == {equation_chain(r["solution"]) for r in evaluation[:5]}


def test_difficulty_knobs_and_errors():
    rows = generate_problems(100, seed=0, **{**KNOBS, "min_steps": 1, "max_steps": 1, "ops": ["add"],
                                             "max_start": 9, "max_operand": 9})
    assert all(len(r["solution"].split("\n")) == 2 and " + " in r["solution"] for r in rows)
    assert all(int(r["answer"]) <= 18 for r in rows)
    with pytest.raises(UserError, match="data.generator.bogus"):
        generate_problems(1, seed=0, bogus=1, **KNOBS)
    with pytest.raises(UserError, match="data.generator.max_steps"):
        generate_problems(1, seed=0, **{**KNOBS, "max_steps": 5})
    with pytest.raises(UserError, match="data.n_train"):
        make_split({**DATA_CFG, "n_train": None}, "train")


def test_generator_module_does_not_import_torch():
    code = "import sys, mathreason.data.arith; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------- tokenizer


def test_formatted_completion_round_trips_exactly(tokenizer):
    for r in generate_problems(50, seed=2, **WIDE):
        text = format_completion(r["solution"], r["answer"])
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(ids) == text
        assert tokenizer.decode(ids, skip_special_tokens=True) == text
        assert "\n" in text and text.count("\n") == tokenizer.decode(ids).count("\n")


def test_xml_tags_and_template_words_are_single_tokens(tokenizer):
    for tag in ("<reasoning>", "</reasoning>", "<answer>", "</answer>", "<|im_start|>", "<|im_end|>"):
        assert len(tokenizer(tag, add_special_tokens=False)["input_ids"]) == 1, tag
    for word in vocabulary():
        assert len(tokenizer(" " + word, add_special_tokens=False)["input_ids"]) == 1, word
    # every digit is its own token
    assert len(tokenizer("12345", add_special_tokens=False)["input_ids"]) == 5


def test_unknown_text_encodes_and_round_trips(tokenizer):
    text = "Janet’s ducks lay 16 eggs per day.  Ça coûte 2,50 € 😀\tfin\n\n"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids and tokenizer.decode(ids) == text
    assert tokenizer.unk_token is None or tokenizer.unk_token_id not in ids  # byte-level: no unknowns


def test_special_tokens(tokenizer):
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    assert tokenizer.eos_token_id != tokenizer.pad_token_id
    assert tokenizer.bos_token is None


def test_chat_template_renders_with_generation_prompt(tokenizer):
    messages = build_prompt("Tom has 3 apples. How many apples does Tom have?")
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert prompt == (
        f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n"
        "<|im_start|>user\nTom has 3 apples. How many apples does Tom have?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    no_gen = tokenizer.apply_chat_template(messages, add_generation_prompt=False, tokenize=False)
    assert prompt.startswith(no_gen) and not no_gen.endswith("assistant\n")
    completion = format_completion("Tom has 3 apples.", "3")
    full = tokenizer.apply_chat_template(
        messages + [{"role": "assistant", "content": completion}], tokenize=False
    )
    assert full == prompt + completion + "<|im_end|>\n"  # prompt is a prefix (TRL's prompt-completion check)


# ---------------------------------------------------------------- spec / cache


def test_spec_hash_and_validation():
    from mathreason.models.tiny import resolve_spec, spec_hash

    spec = yaml_value("model/tiny.yaml", "tiny")
    assert spec_hash(spec) == spec_hash(resolve_spec(spec))
    assert spec_hash({**spec, "sft": {**spec["sft"], "max_steps": 7}}) != spec_hash(spec)
    with pytest.raises(UserError, match="model.tiny.hidden"):
        resolve_spec({**spec, "hidden": 3})
    with pytest.raises(UserError, match="model.tiny.sft.steps"):
        resolve_spec({**spec, "sft": {**spec["sft"], "steps": 3}})


def test_cached_model_is_returned_without_building(tmp_path):
    from mathreason.models.tiny import MARKER, ensure_tiny_model, spec_hash

    spec = {**yaml_value("model/tiny.yaml", "tiny"), "hidden_size": 32, "num_heads": 2, "num_kv_heads": 2}
    ready = tmp_path / spec_hash(spec)
    ready.mkdir()
    (ready / MARKER).write_text(json.dumps({"spec": spec}))
    assert ensure_tiny_model(spec, tmp_path) == ready


def test_prebuild_command_names_the_model_a_sweep_will_load(tmp_path):
    """`python -m mathreason.prebuild --config-dir sweeps --config-name repro_cpu`
    (make repro-cpu's first step) resolves the sweep's own warm start: tiny.yaml
    with the sweep YAML's model.tiny keys, under <cache_dir>/tiny. A cached
    model is returned without building; a non-tiny model is one error line, exit 2."""
    import yaml
    from helpers import ROOT

    from mathreason.models.tiny import MARKER, spec_hash

    spec = yaml_value("model/tiny.yaml", "tiny")
    sweep = yaml.safe_load((ROOT / "sweeps" / "repro_cpu.yaml").read_text())["model"]["tiny"]
    for section, values in sweep.items():
        spec[section] = {**spec[section], **values}
    ready = tmp_path / "tiny" / spec_hash(spec)
    ready.mkdir(parents=True)
    (ready / MARKER).write_text(json.dumps({"spec": spec}))
    cmd = [sys.executable, "-m", "mathreason.prebuild", "--config-dir", str(ROOT / "sweeps"),
           "--config-name", "repro_cpu", f"cache_dir={tmp_path}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == str(ready)
    out = subprocess.run(cmd[:3] + ["model=smollm2-135m-instruct", f"cache_dir={tmp_path}"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 2 and out.stderr.strip() == "error: model=smollm2-135m-instruct: not the tiny model; nothing to build"
