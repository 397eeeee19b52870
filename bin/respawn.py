"""Run a command and start it again whenever it stops, so that under honcho (`make run`) one process
that dies does not take the others down with it.

    python bin/respawn.py NAME -- COMMAND [ARG ...]

honcho stops every process as soon as one exits; wrapped in this, a worker or beat that crashes or
is killed is reported ("worker stopped (killed by SIGKILL); restarting in 2 s") and started again,
while the web server keeps serving. A command that keeps failing within seconds of starting is
retried with a growing pause (up to a minute), each time saying so. SIGINT and SIGTERM (Ctrl-C in
`make run`, which honcho passes on as SIGTERM) stop the command and this wrapper for good.
Standard library only: it runs before anything else is imported.
"""

import signal
import subprocess
import sys
import time

RESTART_DELAY = 2.0  # seconds before starting again
MAX_DELAY = 60.0  # the longest pause for a command that keeps failing at once
STABLE_AFTER = 30.0  # a run this long resets the pause to RESTART_DELAY


def describe(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit {returncode}"


class Respawner:
    def __init__(self, name: str, command: list[str], *, delay: float = RESTART_DELAY) -> None:
        self.name, self.command, self.base_delay = name, command, delay
        self.child: subprocess.Popen | None = None
        self.stopping = False

    def say(self, message: str) -> None:
        print(f"[respawn] {self.name} {message}", flush=True)

    def stop(self, signum, _frame) -> None:
        """Stop for good: pass the signal on (honcho signals the whole group; a second one is harmless)."""
        self.stopping = True
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signum)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        delay = self.base_delay
        while True:
            started = time.monotonic()
            self.child = subprocess.Popen(self.command)
            self.say(f"started (pid {self.child.pid})")
            returncode = self._wait()
            if self.stopping:
                return 0 if returncode < 0 else returncode
            delay = self.base_delay if time.monotonic() - started >= STABLE_AFTER else delay
            self.say(
                f"stopped ({describe(returncode)}); the other processes keep running; restarting in {delay:g} s "
                f"(Ctrl-C stops everything)"
            )
            if self._sleep(delay):
                return 0
            delay = min(delay * 2, MAX_DELAY)

    def _wait(self) -> int:
        while True:
            try:
                return self.child.wait()
            except InterruptedError:  # pragma: no cover - PEP 475 retries, kept for clarity
                continue

    def _sleep(self, seconds: float) -> bool:
        """Pause before a restart; True when asked to stop meanwhile."""
        deadline = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < deadline:
            time.sleep(min(0.1, deadline - time.monotonic()))
        return self.stopping


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    return Respawner(argv[0], argv[2:]).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
