"""One GRPO step, part by part, against each part's floor (SmolLM2-135M on this CPU by default).

The step is the real one: ``mathreason.run method=grpo`` in this process, with
TRL's GRPOTrainer timed where its parts begin and end (no copy of the step):

- prefill / decode: the model's forward calls inside ``generate`` (the first
  call of each generate sees the prompts; every later call adds one token);
  "generate, other" is the rest of ``generate`` (sampling, stopping, the
  cache) and TRL's handling around it;
- log-probs without grad (old / reference policy; TRL skips them when
  ``num_iterations`` is 1 and ``beta`` 0, as here);
- the loss's forward (with grad), its backward, the optimizer step (with
  gradient clipping);
- rest: rewards, advantages, logging, callbacks, data (the step's wall-clock
  minus the parts above).

A part's floor is the time of its matrix products run alone: the first
(untimed) step records the shape of every ``nn.Linear`` call of each part (the
base layers, the LoRA A/B layers and the LM head); each shape is then timed
alone with ``torch.nn.functional.linear`` at the same thread count and the
floor is the sum over calls. The backward's floor is each forward product's
input gradient, plus the weight gradient where the weight trains (LoRA). Not
in any floor: attention's own products, norms, activations, sampling, Python.
The step's floor is the sum of the parts' floors.

    python benchmarks/grpo_step.py [--steps 4] [--threads 2] [--unmerged] [--all-positions] [--ops] [override ...]

Overrides are ``mathreason.run`` ones (the default job: SmolLM2, LoRA r=16,
G=8, 16 rollouts per step, completions up to 64 tokens, no evals). It prints
a table of parts (median seconds per timed step) and writes it as JSON with
``--json PATH``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

JOB = ["model=smollm2-135m-instruct", "method=grpo", "group_size=8", "geometry.hold=rollouts",
       "geometry.rollouts_per_step=16", "geometry.scale_lr=false", "grpo.max_completion_length=64",
       "reward=correctness", "eval.every_n_steps=0", "data.max_eval=1", "logger=none", "checkpoint.every_n_steps=0"]
PARTS = ("prefill", "decode", "generate, other", "log-probs, no grad", "loss forward", "backward", "optimizer",
         "rest")


class Profile:
    """Wall-clock per part and step; the linear layers' call shapes per part in the first step."""

    def __init__(self):
        self.step = 0
        self.part: str | None = None
        self.times: dict[int, Counter] = defaultdict(Counter)
        self.calls: dict[int, Counter] = defaultdict(Counter)
        self.shapes: dict[str, Counter] = defaultdict(Counter)
        self.recording = False
        self.hooks: list = []
        self.op_table = False  # --ops: the last step under torch.profiler (not timed with the others)
        self.torch_profiler = None
        self.ops = ""
        self._step_start = 0.0

    @contextlib.contextmanager
    def timed(self, part: str):
        outer, self.part = self.part, part
        start = time.perf_counter()
        try:
            yield
        finally:
            self.times[self.step][part] += time.perf_counter() - start
            self.calls[self.step][part] += 1
            self.part = outer

    # model forward hooks: prefill vs decode inside generate
    def before_forward(self, module, args, kwargs):
        if self.part != "generate":
            return
        ids = kwargs.get("input_ids", args[0] if args else None)
        module._profile_kind = "prefill" if ids is not None and ids.shape[1] > 1 else "decode"
        module._profile_start = time.perf_counter()
        self.part = module._profile_kind

    def after_forward(self, module, args, kwargs, output):
        kind = getattr(module, "_profile_kind", None)
        if kind is None:
            return
        self.times[self.step][kind] += time.perf_counter() - module._profile_start
        self.calls[self.step][kind] += 1
        self.times[self.step]["generate"] -= time.perf_counter() - module._profile_start
        module._profile_kind = None
        self.part = "generate"

    def linear_call(self, module, args):
        if self.recording and self.part:
            x = args[0]
            self.shapes[self.part][(x.numel() // x.shape[-1], module.in_features, module.out_features,
                                    module.weight.requires_grad)] += 1


PROFILE = Profile()


def profiled(base):
    """GRPOTrainer with its parts timed (TRL's own methods; nothing re-implemented)."""
    import torch
    from transformers import TrainerCallback

    class Steps(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            PROFILE.step = state.global_step + 1
            PROFILE.recording = PROFILE.step == 1
            if PROFILE.op_table and PROFILE.step == args.max_steps:  # the last step, op by op
                PROFILE.torch_profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
                PROFILE.torch_profiler.__enter__()
            PROFILE._step_start = time.perf_counter()

        def on_pre_optimizer_step(self, args, state, control, **kw):
            PROFILE._opt_start = time.perf_counter()

        def on_optimizer_step(self, args, state, control, **kw):
            PROFILE.times[PROFILE.step]["optimizer"] += time.perf_counter() - PROFILE._opt_start

        def on_step_end(self, args, state, control, **kw):
            PROFILE.times[PROFILE.step]["step"] = time.perf_counter() - PROFILE._step_start
            if PROFILE.torch_profiler is not None:
                PROFILE.torch_profiler.__exit__(None, None, None)
                PROFILE.ops = PROFILE.torch_profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=25)
                PROFILE.torch_profiler = None
            PROFILE.recording = False
            for hook in PROFILE.hooks:  # the shapes are known after the first step
                hook.remove()
            PROFILE.hooks = []

    class Profiled(base):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.add_callback(Steps())
            inner = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
            inner.register_forward_pre_hook(PROFILE.before_forward, with_kwargs=True)
            inner.register_forward_hook(PROFILE.after_forward, with_kwargs=True)
            PROFILE.hooks = [m.register_forward_pre_hook(PROFILE.linear_call)
                             for m in self.model.modules() if isinstance(m, torch.nn.Linear)]
            backward = self.accelerator.backward

            def timed_backward(loss, **kw):
                with PROFILE.timed("backward"):
                    return backward(loss, **kw)

            self.accelerator.backward = timed_backward

        def _generate_single_turn(self, *args, **kwargs):
            with PROFILE.timed("generate"):
                return super()._generate_single_turn(*args, **kwargs)

        def _get_per_token_logps_and_entropies(self, *args, **kwargs):
            with PROFILE.timed("loss forward" if torch.is_grad_enabled() else "log-probs, no grad"):
                return super()._get_per_token_logps_and_entropies(*args, **kwargs)

    return Profiled


def time_linear(m: int, k: int, n: int, grad: str | None = None) -> float:
    """Seconds for one product of the shape alone: forward y = x W^T (x: m x k, W: n x k),
    or its input gradient (m x n times n x k) or weight gradient (n x m times m x k)."""
    import torch

    x, w = torch.randn(m, k), torch.randn(n, k)
    g = torch.randn(m, n)
    op = {None: lambda: torch.nn.functional.linear(x, w), "input": lambda: g @ w,
          "weight": lambda: g.t() @ x}[grad]
    for _ in range(3):
        op()
    reps, samples = 1, []
    while True:
        start = time.perf_counter()
        for _ in range(reps):
            op()
        took = time.perf_counter() - start
        if took > 0.02 or reps > 4096:
            break
        reps *= 4
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(reps):
            op()
        samples.append((time.perf_counter() - start) / reps)
    return statistics.median(samples)


def floors(shapes: dict[str, Counter]) -> dict[str, float]:
    """Per part: the sum over its linear calls of each shape's time alone."""
    cache: dict[tuple, float] = {}

    def t(m, k, n, grad=None):
        if (m, k, n, grad) not in cache:
            cache[m, k, n, grad] = time_linear(m, k, n, grad)
        return cache[m, k, n, grad]

    out = {part: sum(c * t(m, k, n) for (m, k, n, _), c in counter.items()) for part, counter in shapes.items()}
    loss = shapes.get("loss forward", Counter())
    out["backward"] = sum(c * (t(m, k, n, "input") + (t(m, k, n, "weight") if trains else 0.0))
                          for (m, k, n, trains), c in loss.items())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=4, help="steps in all; the first is a warm-up (not timed)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--ops", action="store_true",
                        help="also run the last step under torch.profiler and print its top operators (that step is "
                             "left out of the timings)")
    parser.add_argument("--unmerged", action="store_true",
                        help="leave a LoRA adapter unmerged while generating (as before mathreason.scoring.lora_merge)")
    parser.add_argument("--all-positions", action="store_true",
                        help="let TRL's LM head score every position on a CPU (as before "
                             "mathreason.methods.common.score_completions_only)")
    args, overrides = parser.parse_known_args()
    import torch
    import trl

    PROFILE.op_table = args.ops
    if args.all_positions:
        import mathreason.methods.grpo as grpo

        grpo.score_completions_only = lambda device: None
    if args.unmerged:
        import mathreason.scoring.lora_merge as lora_merge

        lora_merge.mergeable = lambda model: None

    trl.GRPOTrainer = profiled(trl.GRPOTrainer)
    from mathreason import run

    with tempfile.TemporaryDirectory() as tmp:
        sys.argv = ["mathreason.run", *JOB, f"geometry.max_steps={args.steps}", f"threads={args.threads}",
                    *overrides, f"hydra.run.dir={tmp}/run"]
        try:
            run.cli()
        except SystemExit as err:
            if err.code:
                raise
    torch.set_num_threads(args.threads)
    timed = [s for s in sorted(PROFILE.times) if s > 1 and not (args.ops and s == args.steps)]
    if not timed:
        raise SystemExit("no timed step: --steps must be at least 2")
    median = {p: statistics.median(PROFILE.times[s][p] for s in timed) for p in (*PARTS, "step", "generate")}
    median["generate, other"] = median.pop("generate")
    median["rest"] = median["step"] - sum(median[p] for p in PARTS if p != "rest")
    floor = floors(PROFILE.shapes)
    decode_calls = statistics.median(PROFILE.calls[s]["decode"] for s in timed)
    rows = []
    for part in PARTS:
        f = floor.get(part)
        rows.append({"part": part, "seconds": median[part], "floor_s": f,
                     "ratio": median[part] / f if f else None})
    total_floor = sum(r["floor_s"] or 0.0 for r in rows)
    print(f"threads {args.threads}; LoRA {'unmerged' if args.unmerged else 'merged'} while generating; LM head on "
          f"{'every position' if args.all_positions else 'the completions'}; median of {len(timed)} timed steps; "
          f"{decode_calls:.0f} decode calls per step")
    print(f"{'part':<20}{'s / step':>10}{'floor (s)':>11}{'x floor':>9}")
    for r in rows:
        f = "—" if r["floor_s"] is None else f"{r['floor_s']:.3f}"
        x = "—" if r["ratio"] is None else f"{r['ratio']:.1f}"
        print(f"{r['part']:<20}{r['seconds']:>10.3f}{f:>11}{x:>9}")
    print(f"{'step':<20}{median['step']:>10.3f}{total_floor:>11.3f}{median['step'] / total_floor:>9.2f}")
    if PROFILE.ops:
        print(f"\nthe last step's operators (torch.profiler, self time):\n{PROFILE.ops}")
    if args.json:
        args.json.write_text(json.dumps({"threads": args.threads, "unmerged": args.unmerged, "all_positions": args.all_positions, "overrides": overrides, "timed_steps": len(timed),
                                         "decode_calls": decode_calls, "parts": rows, "step_s": median["step"],
                                         "floor_s": total_floor}, indent=1))


if __name__ == "__main__":
    main()
