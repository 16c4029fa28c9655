"""Hostile: file outputs. Two tasks that write the same directory (or one inside the other)
through a symlinked path must be refused at submit, as the same path spelled alike is; and a
losing/abandoned attempt must leave no staging directory behind."""

from __future__ import annotations

import os
import time

import pytest
import straggler as sg

pytestmark = pytest.mark.timeout(60)


def _write(tag: str) -> str:
    time.sleep(0.3)
    staging = sg.current_attempt().staging_dir
    with open(os.path.join(staging, "part"), "w") as fh:
        fh.write(tag)
    return tag


@pytest.fixture
def aliased(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    return real, link


def test_hostile_same_output_through_symlink_refused_at_submit(aliased) -> None:
    real, link = aliased
    with sg.SpeculativeExecutor(max_workers=2, policy=None, max_failures=1) as ex:
        ex.submit(sg.options(_write, output=str(real / "out")), "A")
        with pytest.raises(ValueError, match="output"):
            ex.submit(sg.options(_write, output=str(link / "out")), "B")


def test_hostile_nested_output_through_symlink_refused_at_submit(aliased) -> None:
    real, link = aliased
    with sg.SpeculativeExecutor(max_workers=2, policy=None, max_failures=1) as ex:
        ex.submit(sg.options(_write, output=str(real / "out")), "A")
        with pytest.raises(ValueError, match="nested"):
            ex.submit(sg.options(_write, output=str(link / "out" / "inner")), "B")


def test_hostile_abandoned_attempt_leaves_no_staging_dir(tmp_path) -> None:
    out = tmp_path / "out"

    def stubborn() -> int:
        staging = sg.current_attempt().staging_dir
        for i in range(30):
            try:
                os.makedirs(os.path.join(staging, "chunks"), exist_ok=True)
                with open(os.path.join(staging, "chunks", f"c{i}"), "w") as fh:
                    fh.write("x")
                time.sleep(0.05)
            except BaseException:  # noqa: BLE001 - a hostile task ignores every stop request
                pass
        return 1

    with sg.SpeculativeExecutor(max_workers=1, policy=None, max_failures=1, timeout=0.2, stop_grace=0.1,
                                interval=0.05) as ex:
        f = ex.submit(sg.options(stubborn, output=str(out)))
        with pytest.raises(sg.AttemptTimeout):
            f.result(timeout=10)
        time.sleep(2.5)  # the abandoned thread has returned by now
    leftovers = [p for p in os.listdir(tmp_path) if ".straggler-" in p]
    assert leftovers == [], f"staging directories left behind: {leftovers}"
