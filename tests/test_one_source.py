"""Each default is stated once: the YAML under mathreason/conf/ holds every
value, the schema none, and a group option states only what it changes."""

from __future__ import annotations

import dataclasses

import pytest
import yaml
from helpers import CONF, compose
from omegaconf import MISSING

from mathreason.config import schema
from mathreason.data.arith import KNOBS, generate_problems
from mathreason.errors import UserError
from mathreason.models.tiny import resolve_spec


def schema_classes():
    seen, todo = [], [schema.RootCfg]
    while todo:
        cls = todo.pop()
        seen.append(cls)
        for f in dataclasses.fields(cls):
            if f.default_factory is not dataclasses.MISSING:
                todo.append(f.default_factory)
    return seen


def test_the_schema_holds_no_values():
    """A dataclass default would compete with the YAML: only MISSING, a nested
    section, or None for a method section that other methods leave out."""
    stated = []
    for cls in schema_classes():
        for f in dataclasses.fields(cls):
            if f.default_factory is not dataclasses.MISSING:
                assert dataclasses.is_dataclass(f.default_factory), f"{cls.__name__}.{f.name}"
            elif f.default is None:
                assert f.name in ("grpo", "dpo", "sft") and cls is schema.RootCfg, f"{cls.__name__}.{f.name}"
            elif f.default != MISSING:
                stated.append(f"{cls.__name__}.{f.name} = {f.default!r}")
    assert not stated, "values stated in schema.py (they belong in the YAML): " + ", ".join(stated)


def leaves(node, prefix=""):
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from leaves(value, f"{prefix}{key}.")
    else:
        yield prefix[:-1], node


ROOT_YAML = yaml.safe_load((CONF / "config.yaml").read_text())
GROUPS_WITH_BASE = [g for g in ROOT_YAML if (CONF / g).is_dir() and g != "hydra"]


@pytest.mark.parametrize("group", GROUPS_WITH_BASE)
def test_group_options_state_only_what_differs_from_the_root(group):
    """config.yaml's `model:`/`data:`/`logger:` hold the shared values; an option
    repeating one of them with the same value is a second copy of that default."""
    base = dict(leaves(ROOT_YAML[group]))
    repeated = []
    for path in sorted((CONF / group).glob("*.yaml")):
        for key, value in leaves(yaml.safe_load(path.read_text())):
            if key in base and base[key] == value:
                repeated.append(f"{path.name}: {key}")
    assert not repeated, f"restated from config.yaml's `{group}:` with the same value: {repeated}"


def test_groups_with_a_base_section_exist():
    assert {"model", "data", "logger"} <= set(GROUPS_WITH_BASE)


def test_a_key_without_a_value_names_itself():
    with pytest.raises(UserError, match=r"^eval\.batch_size: no value"):
        schema.validate(compose(["~eval.batch_size"]))


def test_the_tiny_spec_and_generator_take_every_value_from_the_yaml():
    """No module-level defaults fill in a partial spec or generator."""
    spec = yaml.safe_load((CONF / "model" / "tiny.yaml").read_text())["tiny"]
    assert resolve_spec(spec) == spec
    partial = {**spec, "sft": {k: v for k, v in spec["sft"].items() if k != "warmup_ratio"}}
    with pytest.raises(UserError, match=r"^model\.tiny\.sft\.warmup_ratio: no value"):
        resolve_spec(partial)
    knobs = yaml.safe_load((CONF / "data" / "arith.yaml").read_text())["generator"]
    assert set(knobs) == set(KNOBS)
    assert len(generate_problems(3, 0, **knobs)) == 3
    with pytest.raises(UserError, match=r"^data\.generator\.max_factor: no value"):
        generate_problems(3, 0, **{k: v for k, v in knobs.items() if k != "max_factor"})
