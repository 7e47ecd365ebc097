"""A DPO run's rounds on disk, and where a re-run picks them up.

Layout inside the run dir (the run dir itself: :mod:`mathreason.records.run_dir`):

- ``pairs/round_N.jsonl`` and ``pairs/round_N.stats.json``: the round's mined
  pairs, each file written whole or not at all, stats first;
- ``checkpoints/round_N/``: DPOTrainer's output dir (its ``checkpoint-*``),
  ``rng_state.pth`` and ``model/`` (the trained policy; ``final/`` after the
  last round), and ``done.json`` written last, which marks the round complete.

A round whose records cannot be trusted is renamed ``stale-*``, never deleted.
In a job on several processes rank 0 reads and writes these files and the
other ranks receive what it found (``resume_point``).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from mathreason.errors import UserError
from mathreason.processes import is_main
from mathreason.records.files import numbered_jsonl, write_atomic

PAIR_FIELDS = ("prompt", "chosen", "rejected")
ROUND_DONE = "done.json"
RNG_FILE = "rng_state.pth"
log = logging.getLogger("mathreason")


def load_pairs(path: str | Path) -> list[dict]:
    """Read a pair file; a bad line stops with file:line."""
    pairs = []
    for number, pair in numbered_jsonl(path, error=UserError):
        missing = [f for f in PAIR_FIELDS if f not in pair]
        if missing:
            raise UserError(f"{path}:{number}: missing field(s) {', '.join(missing)} (expected: {', '.join(PAIR_FIELDS)})")
        pairs.append(pair)
    if not pairs:
        raise UserError(f"dpo.pairs_path: {path} holds no pairs")
    return pairs


class DpoRounds:
    """The rounds of one DPO run (``rounds`` of them) in ``run_dir``."""

    def __init__(self, run_dir: str | Path, rounds: int):
        self.run_dir = Path(run_dir)
        self.rounds = int(rounds)

    def dir(self, round_no: int) -> Path:
        """A round's DPOTrainer output dir (its checkpoints) and its completion record."""
        return self.run_dir / "checkpoints" / f"round_{round_no}"

    def pair_file(self, round_no: int) -> Path:
        return self.run_dir / "pairs" / f"round_{round_no}.jsonl"

    def model_dir(self, round_no: int) -> Path:
        return self.run_dir / "final" if round_no == self.rounds else self.dir(round_no) / "model"

    # pairs -----------------------------------------------------------------

    def save_pairs(self, round_no: int, pairs: list[dict], stats: dict) -> None:
        """The stats, then the pairs, each written whole or not at all (a re-run
        reuses a round's pairs only when both are there)."""
        if not is_main():
            return
        path = self.pair_file(round_no)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path.with_suffix(".stats.json"), json.dumps(stats, indent=2))
        write_atomic(path, "".join(json.dumps(p) + "\n" for p in pairs))

    def saved_pairs(self, round_no: int) -> tuple[list[dict], dict] | None:
        """A round's pairs and stats as an earlier attempt mined them; None when either is missing or unreadable."""
        pair_file = self.pair_file(round_no)
        stats_file = pair_file.with_suffix(".stats.json")
        if not (pair_file.exists() and stats_file.exists()):
            return None
        try:
            stats = json.loads(stats_file.read_text())
            pairs = load_pairs(pair_file)
        except (OSError, ValueError, UserError):
            return None
        return pairs, stats

    # completed rounds -------------------------------------------------------

    def _done_record(self, round_no: int) -> dict | None:
        try:
            record = json.loads((self.dir(round_no) / ROUND_DONE).read_text())
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) and record.get("round") == round_no else None

    def completed(self) -> list[dict]:
        """Completion records of the rounds an earlier attempt finished (a
        prefix: round 1, 2, …), the last one with its trained model intact.
        When that model is lost or damaged, the rounds are set aside (round 1's
        mined pairs are kept: the starting policy mined them; one warning) and
        the run starts over at round 1."""
        from mathreason.records.checkpoints import weights_problem

        done = []
        for round_no in range(1, self.rounds + 1):
            record = self._done_record(round_no)
            if record is None:
                break
            done.append(record)
        if not done:
            return []
        last = done[-1]
        model_dir = self.run_dir / last["model"]
        problem = weights_problem(model_dir) if model_dir.is_dir() else f"{last['model']}/ missing"
        if not problem and last["round"] < self.rounds and not (self.dir(last["round"]) / RNG_FILE).exists():
            problem = f"{RNG_FILE} missing"
        if not problem:
            return done
        log.warning("dpo resume: round %d's trained model is incomplete (%s); rounds 2+ are set aside and the "
                    "run starts over at round 1", last["round"], problem)
        self.set_aside(first=1)
        return []

    def set_aside(self, first: int) -> None:
        """Rename the records of rounds >= ``first`` (round dirs; pair files from
        round 2 on, mined by a policy that is to be retrained) to ``stale-*``."""
        if not is_main():
            return
        for round_no in range(first, self.rounds + 1):
            paths = [self.dir(round_no)]
            if round_no > 1:
                pair_file = self.pair_file(round_no)
                paths += [pair_file, pair_file.with_suffix(".stats.json")]
            for path in paths:
                if path.exists():
                    target = path.with_name(f"stale-{path.name}")
                    if target.exists():
                        shutil.rmtree(target) if target.is_dir() else target.unlink()
                    path.rename(target)

    def resume_point(self) -> tuple[list[dict], tuple[list[dict], dict] | None, Path | None]:
        """Where a re-run goes on: (the completed rounds' records, the round in
        progress's mined pairs and stats or None, its last complete checkpoint or
        None). A round in progress whose pairs are lost cannot resume from its
        checkpoints: they are set aside and the round restarts."""
        from mathreason.processes import on_main

        return on_main(self._resume_point)

    def _resume_point(self) -> tuple[list[dict], tuple[list[dict], dict] | None, Path | None]:
        from mathreason.records.checkpoints import find_checkpoint

        done = self.completed()
        current = len(done) + 1
        if current > self.rounds:
            return done, None, None
        reused = self.saved_pairs(current)
        checkpoint = find_checkpoint(self.dir(current)) if reused else None
        if not reused and self.dir(current).is_dir():
            self.set_aside(current)
        return done, reused, checkpoint

    # finishing a round -------------------------------------------------------

    def finish(self, round_no: int, save_model, record: dict[str, Any]) -> None:
        """Save what the next round (or a re-run) needs, then mark the round done:
        the RNG state, the trained model (``save_model(path)``), and ``done.json``
        last. The previous round's model goes."""
        out = self.dir(round_no)
        model_dir = self.model_dir(round_no)
        save_model(str(model_dir))  # the trainer's own: rank 0 writes, every rank takes part
        if not is_main():
            return
        out.mkdir(parents=True, exist_ok=True)
        save_rng(out / RNG_FILE)
        record = {"round": round_no, **record, "model": str(model_dir.relative_to(self.run_dir))}
        write_atomic(out / ROUND_DONE, json.dumps(record, indent=2, default=str))
        if round_no > 1:
            shutil.rmtree(self.dir(round_no - 1) / "model", ignore_errors=True)

    def restore_rng(self, round_no: int) -> None:
        load_rng(self.dir(round_no) / RNG_FILE)


def save_rng(path: Path) -> None:
    """Python, NumPy and torch RNG states, so a resumed run mines the next
    round's pairs from the same random stream as an uninterrupted one."""
    import random

    import numpy as np
    import torch

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    torch.save(state, path)


def load_rng(path: Path) -> None:
    import random

    import numpy as np
    import torch

    state = torch.load(path, weights_only=False)
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
