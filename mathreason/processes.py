"""Which process of a job this is, and the few collective steps the glue needs.

A job may span several processes (``torchrun``, ``accelerate launch``, or a
SLURM job with several tasks). Rank 0 owns the run: its directory, lock,
run.json, metrics.jsonl, eval files, console and W&B. The other ranks compose
the same config, train and evaluate their share, and write nothing of their
own (the libraries' own per-rank files aside). torch is imported only when a
job spans several processes.
"""

from __future__ import annotations

import os
from typing import Any, Callable, TypeVar

T = TypeVar("T")


def rank() -> int:
    """This process's rank in the job (0 when it runs alone)."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    """Processes of this job (torchrun and accelerate set WORLD_SIZE; 1 when it runs alone)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    return rank() == 0


def distributed() -> bool:
    return world_size() > 1


def adopt_slurm_tasks() -> None:
    """Inside a submitit SLURM job with several tasks (``hydra.launcher.tasks_per_node``
    > 1), set the torch.distributed variables (RANK, WORLD_SIZE,
    LOCAL_RANK, MASTER_ADDR/PORT) from SLURM's, as torchrun would; a no-op
    elsewhere and under torchrun, which sets them itself."""
    if "RANK" in os.environ or os.environ.get("SUBMITIT_EXECUTOR") != "slurm" \
            or int(os.environ.get("SLURM_NTASKS", "1")) <= 1:
        return
    from submitit.helpers import TorchDistributedEnvironment

    TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


def start(device: str) -> None:
    """Join the job's process group before anything collective (gloo on CPU,
    NCCL on CUDA, as accelerate chooses; accelerate, and so TRL, reuses it).
    A no-op for a job of one process."""
    if not distributed():
        return
    from accelerate import PartialState

    PartialState(cpu=not device.startswith("cuda"))


def broadcast(value: T) -> T:
    """Rank 0's ``value`` on every rank (any picklable object)."""
    if not distributed():
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def on_main(fn: Callable[[], T]) -> T:
    """``fn()`` run on rank 0 alone (it may write), its result on every rank.
    An exception on rank 0 reaches every rank: rank 0 raises it, the others
    raise :class:`OtherRankFailed` (their console stays quiet)."""
    if not distributed():
        return fn()
    failure: BaseException | None = None
    result: Any = None
    if is_main():
        try:
            result = fn()
        except Exception as err:  # noqa: BLE001 -- re-raised below, after the others know
            failure = err
    sent = broadcast(("failed", type(failure).__name__) if failure else ("ok", result))
    if failure is not None:
        raise failure
    if sent[0] == "failed":
        raise OtherRankFailed(sent[1])
    return sent[1]


def all_gather(value: T) -> list[T]:
    """Every rank's ``value``, in rank order, on every rank."""
    if not distributed():
        return [value]
    import torch.distributed as dist

    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, value)
    return out


def barrier() -> None:
    if distributed():
        import torch.distributed as dist

        dist.barrier()


def lost_another_process(err: BaseException) -> bool:
    """Whether ``err`` is a collective step failing because another process of the job
    died (gloo: "Connection reset/closed by peer", a plain RuntimeError; NCCL and the
    store: torch.distributed's DistError). Rank 0 then records the run as interrupted,
    as when torchrun's SIGTERM reaches it first."""
    if not distributed() or not isinstance(err, RuntimeError):
        return False
    import torch.distributed as dist

    if isinstance(err, getattr(dist, "DistError", ())):
        return True
    text = str(err)
    return "gloo" in text or "by peer" in text


class OtherRankFailed(Exception):
    """Raised on the ranks other than 0 when rank 0 failed where they waited on it;
    rank 0 reports the error, they exit quietly with the same kind of status."""

    def __init__(self, kind: str):
        super().__init__(f"rank 0 failed ({kind})")
        self.kind = kind
