"""A LoRA adapter merged while the model generates (mathreason.models.adapters): the same
completions as unmerged, the base weights back after, and left unmerged where merging
would not be exact enough."""

from __future__ import annotations

import pytest
import torch
from helpers import compose

from mathreason.models.adapters import mergeable, merged_for_generation
from mathreason.models.load import load_model_and_tokenizer


@pytest.fixture(scope="module")
def lora_model(cache_dir):
    from peft import get_peft_model

    cfg = compose(["model.lora.enabled=true", f"cache_dir={cache_dir}"])
    model, tokenizer, peft_config = load_model_and_tokenizer(cfg.model, cfg.cache_dir, "cpu")
    model = get_peft_model(model, peft_config)
    torch.manual_seed(0)
    with torch.no_grad():  # a trained adapter: B is zero at initialisation, which would make merging trivial
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    return model, tokenizer


def base_weights(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if "base_layer" in n}


def test_merged_generation_gives_the_same_completions_and_restores_the_weights(lora_model):
    from mathreason.data.prompts import build_prompt
    from mathreason.scoring.evaluation import generate_completions

    model, tokenizer = lora_model
    before = base_weights(model)
    prompts = [build_prompt(f"Ann has {n} apples and buys 3 more. How many apples does she have?") for n in range(2, 10)]
    kw = dict(max_new_tokens=24, batch_size=4, num_samples=2, temperature=1.0, greedy=False, seed=(0, "test"))
    merged = generate_completions(model, tokenizer, prompts, **kw)
    import mathreason.models.adapters as adapters

    real = adapters.mergeable
    adapters.mergeable = lambda m: None  # the same call with the adapter left unmerged
    try:
        unmerged = generate_completions(model, tokenizer, prompts, **kw)
    finally:
        adapters.mergeable = real
    assert merged == unmerged  # the same sampled tokens: the same function, the same random stream
    assert not any(m.merged for m in model.modules() if hasattr(m, "merged"))
    after = base_weights(model)
    worst = max(float(((after[n] - before[n]).abs() / before[n].abs().clamp_min(1e-3)).max()) for n in before)
    assert worst < 1e-5


def test_merge_cycles_leave_the_base_weights_within_float32_rounding(lora_model):
    """A GRPO run merges once per step (320 times in a miniature run), each time with the
    adapter its last step left. Merge-then-unmerge rounds the base weights in the last bits;
    the same adapter merged again returns exactly the same weights, and over 320 steps of a
    changing adapter the rounding stays far below what one training step changes."""
    model, _ = lora_model
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    start = base_weights(model)
    with merged_for_generation(model):
        pass
    once = base_weights(model)
    with merged_for_generation(model):
        pass
    assert all(torch.equal(base_weights(model)[n], once[n]) for n in once)  # the same adapter: no drift
    torch.manual_seed(1)
    for _ in range(320):
        with torch.no_grad():  # as a training step changes the adapter
            for p in lora_b:
                p.add_(torch.randn_like(p), alpha=1e-3)
        with merged_for_generation(model):
            pass
    after = base_weights(model)
    worst = max(float((after[n] - start[n]).abs().max() / start[n].abs().max()) for n in start)
    print(f"largest change of a base weight after 320 merge cycles, relative to the tensor's largest: {worst:.2e}")
    assert worst < 1e-5


def test_only_float32_lora_models_are_merged(lora_model):
    model, _ = lora_model
    assert mergeable(model) is model
    assert mergeable(model.get_base_model()) is None  # no adapter
    half = type("Wrapper", (), {"module": model})()
    assert mergeable(half) is model  # a DDP wrapper's module
    model.to(torch.bfloat16)
    try:
        assert mergeable(model) is None
    finally:
        model.to(torch.float32)
