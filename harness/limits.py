"""A host-memory cap on one cell process, enforced by the kernel (``--memory-cap``).

The cell process runs in a memory cgroup of its own, made under the runner's own cgroup, with
its limit (and, where the kernel accounts swap, memory plus swap) at the cap: when the process
needs more, the kernel's OOM killer ends it (SIGKILL) inside its cgroup, and the machine
never swaps or runs short. cgroup v2 (``memory.max``, ``memory.swap.max``,
``memory.events``, ``memory.peak``) and v1 (``memory.limit_in_bytes``,
``memory.memsw.limit_in_bytes``, ``memory.oom_control``, ``memory.max_usage_in_bytes``) are
both handled. Making a cgroup needs root or a delegated subtree; where neither is there,
``MemoryCap.check`` says so before anything runs. A limit on address space (RLIMIT_AS) is no
substitute: JAX and TensorFlow reserve far more address space than they touch.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
import uuid
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_bytes(text: str) -> int:
    """'4G', '512M', '1.5g', '1000000' -> bytes; a clear ValueError otherwise."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*", text.lower())
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"a memory size must be a positive number with an optional unit K, M, "
                         f"G or T (e.g. 4G, 512M), got {text!r}")
    return int(float(m.group(1)) * UNITS[m.group(2)])


def _own_cgroup() -> tuple[str, Path] | None:
    """(version, directory) of this process's memory cgroup, if one is mounted."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(",") and (CGROUP_ROOT / "memory").is_dir():
            return "v1", CGROUP_ROOT / "memory" / path.lstrip("/")
    for line in lines:
        hierarchy, controllers, path = line.split(":", 2)
        if hierarchy == "0" and controllers == "":
            base = CGROUP_ROOT / "unified" if (CGROUP_ROOT / "unified").is_dir() \
                and not (CGROUP_ROOT / "cgroup.controllers").exists() else CGROUP_ROOT
            controllers_file = base / path.lstrip("/") / "cgroup.controllers"
            if controllers_file.exists() and "memory" in controllers_file.read_text().split():
                return "v2", base / path.lstrip("/")
    return None


class MemoryCap:
    """One cgroup per cell process: ``enter`` runs in the child before it executes (it moves
    itself in), ``oom_killed`` and ``peak_bytes`` read the verdict after, ``close`` removes it."""

    def __init__(self, limit_bytes: int) -> None:
        found = _own_cgroup()
        if found is None:
            raise PermissionError("--memory-cap needs a memory cgroup (v1 or v2) and none is "
                                  "mounted for this process")
        self.version, parent = found
        self.limit = limit_bytes
        self.path = parent / f"framebench-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            self.path.mkdir()
            if self.version == "v1":
                self._write("memory.limit_in_bytes", limit_bytes)
                if (self.path / "memory.memsw.limit_in_bytes").exists():
                    self._write("memory.memsw.limit_in_bytes", limit_bytes)
            else:
                self._write("memory.max", limit_bytes)
                if (self.path / "memory.swap.max").exists():
                    self._write("memory.swap.max", 0)
        except OSError as exc:
            self.close()
            raise PermissionError(
                f"--memory-cap could not make a memory cgroup under {parent} ({exc}); run as "
                "root, or where a cgroup subtree is delegated to you (e.g. inside "
                "`systemd-run --user --scope -p Delegate=yes`)") from exc

    @classmethod
    def check(cls, limit_bytes: int) -> None:
        """Refuse a cap this machine cannot enforce, before anything runs."""
        cls(limit_bytes).close()

    def _write(self, name: str, value: int) -> None:
        (self.path / name).write_text(str(value))

    def _read(self, name: str) -> str:
        try:
            return (self.path / name).read_text()
        except OSError:
            return ""

    def enter(self) -> None:
        """Move the calling process into the cgroup (the child, between fork and exec)."""
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def oom_killed(self) -> bool:
        """Whether the kernel's OOM killer ended a process of this cgroup."""
        name = "memory.oom_control" if self.version == "v1" else "memory.events"
        m = re.search(r"^oom_kill (\d+)$", self._read(name), re.M)
        return bool(m and int(m.group(1)) > 0)

    def peak_bytes(self) -> int | None:
        """The cgroup's peak memory use (page cache included), where the kernel keeps it."""
        text = self._read("memory.max_usage_in_bytes" if self.version == "v1" else "memory.peak")
        return int(text) if text.strip().isdigit() else None

    def close(self, wait_s: float = 5.0) -> None:
        """Remove the cgroup: any process still in it (a child the cell left behind) is
        killed first, and an exiting one is waited for (the kernel refuses to remove a cgroup
        that holds a process: EBUSY)."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                if time.monotonic() > deadline:
                    return
            with contextlib.suppress(OSError, ValueError):
                for pid in (self.path / "cgroup.procs").read_text().split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
            time.sleep(0.05)
