"""train.parallel=jobs without torchrun: the pieces a process relies on while it waits for the others (the
whole mode runs under torchrun in test_distributed.py)."""

from __future__ import annotations

import os
import time

import pytest

from tunebench.errors import TunebenchError
from tunebench.jobs import Heartbeat


def test_a_process_that_stops_beating_ends_the_wait_in_one_line(tmp_path):
    beat = Heartbeat(tmp_path, rank=0, timeout_s=0.3)
    try:
        (tmp_path / ".alive-1").touch()
        beat.check_others(3)  # rank 1 fresh, rank 2 not started yet (no file): nothing to say
        old = time.time() - 5
        os.utime(tmp_path / ".alive-1", (old, old))
        with pytest.raises(TunebenchError) as info:
            beat.check_others(3)
        assert "process 1 gave no sign of life for 5 s" in str(info.value) and "\n" not in str(info.value)
        assert f"tunebench compare --resume {tmp_path}" in str(info.value)
        # its own file is kept fresh by its thread: another process would not find it stale
        mine = tmp_path / ".alive-0"
        os.utime(mine, (old, old))
        time.sleep(0.3)
        assert time.time() - mine.stat().st_mtime < 0.3
    finally:
        beat.stop()
    assert not (tmp_path / ".alive-0").exists()
