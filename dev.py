#!/usr/bin/env python3
"""Set up `.venv` and run a task; needs nothing but Python 3.11+.

    python3 dev.py demo     # eventtrace demo: two traces in the terminal
    python3 dev.py test     # ruff, mypy --strict, then pytest (extra arguments go to pytest)
    python3 dev.py lint     # ruff and mypy only
    python3 dev.py bench    # the benchmark (extra arguments go to bench/pipeline.py)
    python3 dev.py lock     # requirements.lock from pyproject's ranges, with hashes (the image's)

The venv is (re)installed when pyproject.toml changes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if sys.platform == "win32" else "bin")
# The development install. The image installs the same project root: `pip install .`.
INSTALL = ["install", "--quiet", "-e", ".[dev]"]
LINTED = ["eventtrace", "tests", "bench", "tools", "dev.py"]

# A command, and what to add to its environment.
Command = tuple[list[str], dict[str, str]]


def main(argv: list[str]) -> int:
    if sys.version_info < (3, 11):  # noqa: UP036 (a friendly message on an old Python)
        print("dev.py: eventtrace needs Python 3.11 or newer", file=sys.stderr)
        return 2
    if not argv or argv[0] not in TASKS:
        print(__doc__, file=sys.stderr)
        return 2
    setup()
    for command, env in TASKS[argv[0]](argv[1:]):
        environ = {**os.environ, **env}
        code = subprocess.call([str(BIN / command[0]), *command[1:]], cwd=ROOT, env=environ)
        if code != 0:
            return code
    return 0


def setup() -> None:
    stamp = VENV / ".installed"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return
    if not (BIN / "python").exists():
        venv.create(VENV, with_pip=True)
    pip = [str(BIN / "python"), "-m", "pip"]
    subprocess.check_call([*pip, "install", "--quiet", "--upgrade", "pip"], cwd=ROOT)
    subprocess.check_call([*pip, *INSTALL], cwd=ROOT)
    stamp.write_text(digest)


def lint(_: list[str]) -> list[Command]:
    paths = [path for path in LINTED if (ROOT / path).exists()]
    return [
        (["ruff", "check", *paths], {}),
        (["ruff", "format", "--check", *paths], {}),
        (["mypy"], {}),
    ]


def test(extra: list[str]) -> list[Command]:
    return [*lint(extra), (["pytest", *extra], {})]


# The image installs exactly these: pinned, every file's hash, no index or path of this machine.
LOCK = [
    "pip-compile", "--generate-hashes", "--strip-extras", "--no-header", "--no-emit-index-url",
    "--no-emit-find-links", "--upgrade", "--output-file=requirements.lock", "pyproject.toml",
]  # fmt: skip

TASKS = {
    "demo": lambda extra: [(["eventtrace", "demo", *extra], {})],
    "lint": lint,
    "test": test,
    "bench": lambda extra: [(["python", "bench/pipeline.py", *extra], {})],
    "lock": lambda extra: [([*LOCK, *extra], {})],
}

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
