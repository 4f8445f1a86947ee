"""Sessions: tests (default), lint, bench (every framework, each in its own venv), gpu (the
GPU verification), report, compare."""

from __future__ import annotations

import argparse
import os
import sys

import nox

FRAMEWORKS = ("torch", "tensorflow", "jax")

nox.options.sessions = ["tests"]
nox.options.reuse_venv = "yes"  # the framework venvs are large; reuse them between runs


@nox.session
def tests(session: nox.Session) -> None:
    """Unit and integration tests (all three frameworks in one venv, to compare them)."""
    session.install("-e", ".[torch,tensorflow,jax,ray,test]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff."""
    session.install("ruff")
    session.run("ruff", "check", ".")


def _bench_framework(session: nox.Session) -> None:
    """One framework's cells, in a venv holding that framework only."""
    fw = session.name.removeprefix("bench-")
    cuda = os.environ.get("FRAMEBENCH_CUDA") == "1" and fw != "torch"  # torch's PyPI wheel has CUDA
    session.install("-e", f".[{fw}-cuda]" if cuda else f".[{fw}]")
    session.run("python", "-m", "harness", "--frameworks", fw, *session.posargs)


for _fw in FRAMEWORKS:
    nox.session(name=f"bench-{_fw}")(_bench_framework)


def _selected_frameworks(posargs: list[str]) -> list[str]:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS))
    known, _ = parser.parse_known_args(posargs)
    return [f for f in known.frameworks.split(",") if f in FRAMEWORKS]


@nox.session
def bench(session: nox.Session) -> None:
    """The whole benchmark: each framework's cells run in that framework's venv (the bench-<fw>
    sessions' venvs), then one table and one HTML report. Options after `--`; `-- tune
    [options]` runs the tuned tier's search now."""
    session.install("-e", ".")
    command = session.posargs[:1] if session.posargs[:1] == ["tune"] else []
    args = session.posargs[len(command):]
    pythons: list[str] = []
    if not {"-h", "--help"} & set(args):
        for fw in _selected_frameworks(args):
            session.run(sys.executable, "-m", "nox", "-f", __file__, "-s", f"bench-{fw}",
                        "--install-only", external=True)
            pythons += ["--python", f"{fw}=.nox/bench-{fw}/bin/python"]
    session.run("python", "-m", "harness", *command, *pythons, *args)


@nox.session
def gpu(session: nox.Session) -> None:
    """The GPU verification (harness.gpucheck): every CUDA path on the NVIDIA GPUs here, each
    framework in its bench venv with its CUDA wheels; exit 2 where there is no GPU."""
    session.install("-e", ".")
    pythons: list[str] = []
    for fw in FRAMEWORKS:
        session.run(sys.executable, "-m", "nox", "-f", __file__, "-s", f"bench-{fw}",
                    "--install-only", external=True, env={"FRAMEBENCH_CUDA": "1"})
        pythons += ["--python", f"{fw}=.nox/bench-{fw}/bin/python"]
    session.run("python", "-m", "harness.gpucheck", *pythons, *session.posargs)


@nox.session
def report(session: nox.Session) -> None:
    """Re-render the report of a run: `nox -s report -- [RUN]` (default: the newest run)."""
    session.install("-e", ".")
    session.run("python", "-m", "harness", "report", *session.posargs)


@nox.session
def compare(session: nox.Session) -> None:
    """Compare two runs: `nox -s compare -- RUN_A RUN_B [--fail-on-regression]`."""
    session.install("-e", ".")
    session.run("python", "-m", "harness", "compare", *session.posargs)
