"""A LoRA adapter while its model only generates: merged into the base weights.

Unmerged, every adapted layer runs its base product, two small ones (A, then B),
a scaling and an add on each forward. At one new token per sequence (decoding)
the small products cost little arithmetic but as many calls as the base layer,
which is overhead on a CPU. Merged (PEFT's ``merge_adapter``: W + s * B A), each
layer is one product and computes the same function, so the sampling distribution
does not change (outputs agree to float32 rounding). TRL does the same before it
hands the weights to vLLM. Unmerging subtracts the same delta, so the base weights
come back to within float32 rounding: exactly, when the same adapter is merged again;
after 320 steps of a changing adapter (a whole miniature run) the largest change is
1.4e-6 of a tensor's largest weight (tests/test_adapters.py), far below a training step's.

Only float32 weights are merged: in bfloat16 or float16 the rounding of
merge-then-unmerge is no longer negligible, and quantized (4-bit) layers cannot be
merged in place. Unsloth models are left alone (Unsloth has its own fast path).
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator


def mergeable(model: Any) -> Any | None:
    """The PEFT model inside ``model`` (a DDP wrapper's ``module`` too) when its LoRA
    adapter can be merged for generation, else None."""
    model = getattr(model, "module", model)
    try:
        from peft import PeftModel
    except ImportError:
        return None
    if not isinstance(model, PeftModel) or getattr(model, "is_loaded_in_4bit", False) \
            or getattr(model.get_base_model(), "is_loaded_in_4bit", False):
        return None
    import torch
    from peft.tuners.lora import LoraLayer

    layers = [m for m in model.modules() if isinstance(m, LoraLayer)]
    if not layers or any(m.merged for m in layers):
        return None
    if any(m.get_base_layer().weight.dtype != torch.float32 for m in layers):
        return None
    return model


@contextlib.contextmanager
def merged_for_generation(model: Any) -> Iterator[None]:
    """Within the block, ``model``'s LoRA adapter is merged (where :func:`mergeable`);
    it is unmerged after, whatever happens in the block."""
    peft_model = mergeable(model)
    if peft_model is None:
        yield
        return
    peft_model.merge_adapter()
    try:
        yield
    finally:
        peft_model.unmerge_adapter()
