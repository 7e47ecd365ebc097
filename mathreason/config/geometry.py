"""GRPO batch geometry: how many prompts and rollouts one optimisation step
sees, how many steps a run takes, and the learning rate that goes with it.

The 2-GRPO paper compares group sizes at equal rollouts per step (2x256
prompts vs 16x32) and scales the learning rate with prompts per step (8e-6 vs
1e-6); both arms train the same number of epochs over the same prompts, so
G=2 takes 1/8 of the steps. ``geometry.hold=prompts`` keeps prompts per step
equal instead; ``geometry.max_steps`` fixes the step count.

Rollouts per optimisation step are a global count: TRL multiplies the
per-device batch by the number of processes, so the per-device batch is the
step's rollouts divided by grad_accum x world size, and the comparison stays
the same on 1 GPU or 8.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from mathreason.errors import UserError
from mathreason.processes import world_size


@dataclass(frozen=True)
class Geometry:
    group_size: int
    prompts_per_step: int
    rollouts_per_step: int
    per_device_batch: int  # completions per micro-batch and device (TRL's per_device_train_batch_size)
    grad_accum: int
    world_size: int  # processes (devices) that share each step's rollouts
    learning_rate: float
    lr_scale: float
    steps: int | None  # None until the number of training prompts is known
    epochs: float | None
    total_rollouts: int | None

    def as_log(self) -> dict[str, Any]:
        return {f"geometry/{k}": v for k, v in asdict(self).items() if v is not None}


def plan_geometry(cfg: Any, n_train_prompts: int | None, base_lr: float | None = None,
                  world: int | None = None) -> Geometry:
    """Work out the geometry from ``cfg.geometry``, ``cfg.group_size``, the
    method's learning rate and the world size; raise UserError naming the key
    on a mismatch."""
    geo = cfg.geometry
    world = world_size() if world is None else int(world)
    g = int(cfg.group_size)
    if geo.hold == "rollouts":
        rollouts = int(geo.rollouts_per_step)
        if rollouts % g:
            raise UserError(
                f"geometry.rollouts_per_step={rollouts} is not divisible by group_size={g}; "
                f"use a multiple of {g}"
            )
        prompts = rollouts // g
        ref_prompts = rollouts / int(geo.lr_reference_group_size)
    else:
        prompts = int(geo.prompts_per_step)
        rollouts = prompts * g
        ref_prompts = prompts
    accum = int(geo.grad_accum)
    if rollouts % (accum * world):
        raise UserError(
            f"geometry.grad_accum={accum} x world size {world} does not divide the {rollouts} rollouts per step; "
            f"use a grad_accum that, times {world}, divides {rollouts}"
        )
    lr_scale = prompts / ref_prompts if geo.scale_lr else 1.0
    lr = float(base_lr if base_lr is not None else cfg.grpo.learning_rate) * lr_scale

    steps = epochs = total = None
    if geo.max_steps is not None:
        steps = int(geo.max_steps)
    elif n_train_prompts is not None:
        steps = max(1, math.ceil(float(geo.epochs) * n_train_prompts / prompts))
    if steps is not None:
        total = steps * rollouts
        if n_train_prompts:
            epochs = round(steps * prompts / n_train_prompts, 4)
    return Geometry(
        group_size=g,
        prompts_per_step=prompts,
        rollouts_per_step=rollouts,
        per_device_batch=rollouts // (accum * world),
        grad_accum=accum,
        world_size=world,
        learning_rate=lr,
        lr_scale=lr_scale,
        steps=steps,
        epochs=epochs,
        total_rollouts=total,
    )


def describe(cfg: Any, n_train_prompts: int | None) -> list[str]:
    """The derived geometry in words, as ``--cfg job`` appends it (YAML comments)."""
    geo = plan_geometry(cfg, n_train_prompts)
    lines = [
        f"group_size {geo.group_size} x {geo.prompts_per_step} prompts = {geo.rollouts_per_step} rollouts per "
        f"optimizer step (world size {geo.world_size}: {geo.per_device_batch} per device and micro-batch, "
        f"grad_accum {geo.grad_accum})",
        f"learning rate {geo.learning_rate:.3g} (grpo.learning_rate {float(cfg.grpo.learning_rate):.3g} "
        f"x {geo.lr_scale:g}{', geometry.scale_lr' if cfg.geometry.scale_lr else ''})",
    ]
    if geo.steps is None:
        lines.append(f"steps: {cfg.geometry.epochs} epochs over the training prompts (count known once loaded)")
    else:
        over = f", {geo.epochs:g} epochs over {n_train_prompts} prompts" if geo.epochs is not None else ""
        lines.append(f"steps {geo.steps}{over}, {geo.total_rollouts:,} rollouts in all")
    return lines
