"""A LoRA adapter merged while the model generates (mathreason.scoring.lora_merge): the same
completions as unmerged, the base weights back after, and left unmerged where merging
would not be exact enough."""

from __future__ import annotations

import pytest
import torch
from helpers import compose

from mathreason.models.load import load_model_and_tokenizer
from mathreason.scoring.lora_merge import mergeable, merged_for_generation


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
    import mathreason.scoring.lora_merge as lora_merge

    real = lora_merge.mergeable
    lora_merge.mergeable = lambda m: None  # the same call with the adapter left unmerged
    try:
        unmerged = generate_completions(model, tokenizer, prompts, **kw)
    finally:
        lora_merge.mergeable = real
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


def test_scoring_only_the_completions_gives_trl_s_values_and_gradients(cache_dir, monkeypatch):
    """methods.common.score_completions_only: TRL's fused LM head on the valid positions only
    (as on a GPU) gives the per-token log-probs, entropies and gradients that scoring every
    position and masking gives (TRL's choice off Triton devices), on left-padded rows."""
    trl_utils = pytest.importorskip("trl.trainer.utils")
    if not callable(getattr(trl_utils, "_use_triton", None)):
        pytest.skip("this TRL has no fused LM head switch (TRL < 1.16 keeps only the completion's logits)")
    from mathreason.methods.common import score_completions_only

    cfg = compose([f"cache_dir={cache_dir}"])
    torch.manual_seed(0)
    ids = torch.randint(3, 100, (4, 30))
    mask = torch.ones_like(ids)
    mask[1, :6] = mask[3, :11] = 0  # left padding
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :-12] = -100  # the last 12 positions are the completion

    def score(compact: bool):
        model, _, _ = load_model_and_tokenizer(cfg.model, cfg.cache_dir, "cpu")
        trl_utils.add_fused_lm_head(model, outputs=("log_probs", "entropy"))
        if compact:
            score_completions_only("cpu")
        out = model(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True)
        (out.log_probs.sum() + out.entropy.sum()).backward()
        grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        return out.log_probs.detach(), out.entropy.detach(), grads

    monkeypatch.setattr(trl_utils, "_use_triton", lambda device: False)  # TRL's own CPU behaviour
    every = score(compact=False)
    compact = score(compact=True)
    assert trl_utils._use_triton(torch.device("cpu")) is True  # the switch took
    torch.testing.assert_close(compact[0], every[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(compact[1], every[1], rtol=1e-5, atol=1e-5)
    assert len(compact[2]) == len(every[2]) > 0
    for a, b in zip(compact[2], every[2]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
