"""Timing in turns: the cells that will be compared take their timed samples in rotation.

Cells of different frameworks that the report compares (same tier, workload, size, device,
batch and precision) each run in their own process, as always. The runner starts them one after
another; each prepares, trains its budget and warms up alone, then says ``ready`` and waits.
When all are ready, the runner lets them take one timed sample each in rotation, one running at
a time, with a short settle pause before each so an idle framework's spinning pool threads do
not steal from the one being timed; every other rotation runs in reverse order. Sample *i* of
every cell of the group was taken in rotation *i*, moments apart, so a slow period of the
machine hits both sides of a ratio alike: the ratio between two frameworks comes from those
pairs. Afterwards each cell, in turn, runs its sync check and writes its record.

The protocol, one line per message over two pipes (``$FRAMEBENCH_TURNS`` = "read_fd,write_fd"
in the cell process)::

    cell -> runner  ready <rounds wanted>      runner -> cell  rounds <rounds agreed>
    runner -> cell  go                         cell -> runner  done      (once per sample:
                                               untimed steps for REWARM_S, then the sample)
    runner -> cell  finish                     (the cell then checks, writes and exits)

Without ``$FRAMEBENCH_TURNS`` (a cell timed alone) every call here returns at once.
"""

from __future__ import annotations

import contextlib
import os
import select
import time
from collections.abc import Callable

TURNS_ENV = "FRAMEBENCH_TURNS"
WARMUP_ROTATIONS = 2  # untimed rotations first: each process warms its caches again after idling
SETTLE_S = 0.02       # pause before each sample: the others' pool threads stop spinning
# Before each timed sample, in its turn, a cell runs untimed steps for at least this long. A
# process that waited ~0.1 s runs its next steps slower while its thread pools (and the VM's
# idle vCPU) wake: measured here on cnn, TensorFlow XLA +46%, JAX +21%, torch +10% for a 20 ms
# sample straight after the wait; after one untimed sample JAX and torch were back to their
# back-to-back speed and TensorFlow was still +10-23%; after 0.1 s all three were within 2%.
REWARM_S = 0.1


class Channel:
    """Line messages over a pair of pipe file descriptors."""

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self.read_fd, self.write_fd = read_fd, write_fd
        self._buffer = b""

    def send(self, *words: object) -> None:
        os.write(self.write_fd, (" ".join(map(str, words)) + "\n").encode())

    def expect(self, timeout_s: float | None = None) -> list[str] | None:
        """The next message's words; None if the other side closed its end (it exited);
        TimeoutError if nothing came in time."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while b"\n" not in self._buffer:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([self.read_fd], [], [], left)[0]:
                    raise TimeoutError
            chunk = os.read(self.read_fd, 4096)
            if not chunk:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode().split()

    def close(self) -> None:
        for fd in (self.read_fd, self.write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


class Turns:
    """The cell side: wait for the runner's go before each timed sample."""

    def __init__(self, channel: Channel | None) -> None:
        self.channel = channel
        self.warmup_rounds = WARMUP_ROTATIONS if channel else 0

    @classmethod
    def from_env(cls) -> Turns:
        fds = os.environ.get(TURNS_ENV)
        if not fds:
            return cls(None)
        read_fd, write_fd = (int(fd) for fd in fds.split(","))
        return cls(Channel(read_fd, write_fd))

    def agree(self, rounds: int) -> int:
        """Tell the runner this cell is ready and how many samples it wants; returns the number
        every cell of the group takes (the most any of them wants)."""
        if self.channel is None:
            return rounds
        self.channel.send("ready", rounds)
        return int(self._expect("rounds")[1])

    def wait(self, *_: object) -> None:
        """Before a sample: block until it is this cell's turn."""
        if self.channel is not None:
            self._expect("go")

    def wait_then(self, rewarm: Callable[[], None]) -> Callable[[], None]:
        """The wait before a sample, followed (in turns only) by untimed steps."""
        def setup() -> None:
            if self.channel is not None:
                self._expect("go")
                rewarm()
        return setup

    def done(self, *_: object) -> None:
        """After a sample: hand the turn back."""
        if self.channel is not None:
            self.channel.send("done")

    def finish(self) -> None:
        """After the last sample: wait until the runner lets this cell run its checks alone."""
        if self.channel is not None:
            self._expect("finish")

    def _expect(self, word: str) -> list[str]:
        message = self.channel.expect()
        if message is None:
            raise RuntimeError(f"the runner went away while this cell waited for {word!r}")
        if message[0] != word:
            raise RuntimeError(f"turn protocol: expected {word!r} from the runner, got {message}")
        return message
