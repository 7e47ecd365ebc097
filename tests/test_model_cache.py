"""build_once: one build per key however many callers wait on it; a build that fails leaves
nothing a run could load, and the next caller builds afresh."""

from __future__ import annotations

import threading

import pytest

from mathreason.models.cache import build_once


def test_concurrent_callers_share_one_build(tmp_path):
    calls = []

    def build(out, work):
        calls.append(1)
        out.mkdir()
        (out / "weights").write_text("w")
        return {"n": len(calls)}

    results = []
    threads = [threading.Thread(target=lambda: results.append(build_once(tmp_path, "k", "done.json", build)))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and set(results) == {tmp_path / "k"}
    assert (tmp_path / "k" / "done.json").read_text().strip().startswith("{")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".k.tmp")] == []


def test_a_failed_build_leaves_nothing_and_the_next_call_builds(tmp_path):
    def broken(out, work):
        out.mkdir()
        (out / "weights").write_text("half")
        raise RuntimeError("killed mid-build")

    with pytest.raises(RuntimeError):
        build_once(tmp_path, "k", "done.json", broken)
    assert not (tmp_path / "k").exists()
    (tmp_path / "k").mkdir()  # a leftover without its marker (a crash in an older version) is replaced

    def build(out, work):
        out.mkdir()
        (out / "weights").write_text("whole")
        return {}

    assert (build_once(tmp_path, "k", "done.json", build) / "weights").read_text() == "whole"
