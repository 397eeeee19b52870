"""`make run` keeps running when a worker or beat dies: bin/respawn.py starts it again and says so.

These start real processes and wait for a real restart (bin/respawn.py pauses 2 s before it): a few
seconds of wall time, on purpose, since what is pinned is a process coming back.
"""

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RESPAWN = ROOT / "bin" / "respawn.py"
SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


class Supervised:
    """bin/respawn.py around a long sleep, in a process group of its own as honcho starts each process."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(RESPAWN), "sleeper", "--", *SLEEPER],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.rstrip())

    def expect(self, fragment: str, timeout: float = 8.0) -> str:
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=deadline - time.monotonic())
            except queue.Empty:
                break
            seen.append(line)
            if fragment in line:
                return line
        raise AssertionError(f"no {fragment!r} within {timeout} s; saw {seen}")

    def child_pid(self) -> int:
        return int(self.expect("started (pid").rsplit("pid ", 1)[1].rstrip(")"))

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


@pytest.fixture
def supervised():
    process = Supervised()
    yield process
    process.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_killed_process_is_reported_and_started_again(supervised):
    first = supervised.child_pid()
    # when: the worker dies (the OOM killer, a kill -9)
    os.kill(first, signal.SIGKILL)
    # then: the wrapper says what stopped, stays up (so honcho keeps the others), and starts it again
    line = supervised.expect("stopped (killed by SIGKILL)")
    assert "the other processes keep running" in line and "restarting in 2 s" in line
    second = supervised.child_pid()
    assert second != first and _alive(second)
    assert supervised.proc.poll() is None


def test_ctrl_c_under_honcho_stops_the_process_for_good(supervised):
    child = supervised.child_pid()
    # when: honcho passes Ctrl-C on, as SIGTERM to the process group
    os.killpg(supervised.proc.pid, signal.SIGTERM)
    # then: both end, and nothing is started again
    assert supervised.proc.wait(5) == 0
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)  # polling another process's exit
    assert not _alive(child)
    supervised.reader.join(5)  # everything it printed, up to its end
    remaining = []
    while not supervised.lines.empty():
        remaining.append(supervised.lines.get())
    assert not any("started" in line for line in remaining), remaining


def test_the_procfile_supervises_the_worker_and_beat_but_not_the_web_server():
    lines = dict(line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line.strip())

    assert "bin/respawn.py worker -- " in lines["worker"]
    assert "bin/respawn.py beat -- " in lines["beat"]
    # The web server is the front door: if it cannot start (a port in use), honcho stops and says so.
    assert "respawn" not in lines["web"]
