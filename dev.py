#!/usr/bin/env python3
"""Set up `.venv` and run a task; needs nothing but Python 3.11+.

    python3 dev.py demo     # eventtrace demo: two traces in the terminal
    python3 dev.py test     # ruff, mypy --strict, then pytest (extra arguments go to pytest)
    python3 dev.py lint     # ruff and mypy only
    python3 dev.py bench    # the benchmark (extra arguments go to bench/pipeline.py)

The venv is (re)installed when pyproject.toml changes. Where a C compiler is found, `test`
and `bench` also build the package as the image does, its core compiled with mypyc
(setup.py), into build/compiled/: `test` runs the tests of the compiled modules again
against it, `bench` measures it (`bench --pure` measures the source tree instead).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if sys.platform == "win32" else "bin")
# The development install. The image installs the same project root: `pip install .`.
INSTALL = ["install", "--quiet", "-e", ".[dev]"]
LINTED = ["eventtrace", "tests", "bench", "tools", "dev.py", "setup.py"]
COMPILED_BUILD = ROOT / "build" / "compiled"
# The tests of what setup.py compiles, run again against the compiled build.
COMPILED_TESTS = [
    "tests/test_properties.py",
    "tests/test_attributes.py",
    "tests/test_closing.py",
    "tests/test_occurrences.py",
    "tests/test_owners.py",
    "tests/test_reorder.py",
    "tests/test_encoding.py",
    "tests/test_replay_cli.py",
    "tests/test_parse.py",
    "tests/test_parse_paths.py",
    "tests/test_frames.py",
]

_NOT_SOURCES = shutil.ignore_patterns("__pycache__", "*.so", "*.pyc")

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


def compiled_build() -> Path | None:
    """The package built with its core compiled (EVENTTRACE_COMPILE=1, setup.py) and
    unpacked into build/compiled/, rebuilt when a source changes; None, said why, where
    there is no C compiler."""
    compiler = os.environ.get("CC", "cc")
    if shutil.which(compiler) is None:
        print(f"dev.py: no C compiler ({compiler}): the compiled core is not built or tested")
        return None
    sources = [*sorted((ROOT / "eventtrace").rglob("*.py")), ROOT / "setup.py"]
    digest = hashlib.sha256()
    for path in [ROOT / "pyproject.toml", *sources]:
        digest.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    stamp = COMPILED_BUILD / ".built"
    if stamp.exists() and stamp.read_text() == digest.hexdigest():
        return COMPILED_BUILD
    print("dev.py: compiling the core with mypyc (setup.py) into build/compiled/")
    with tempfile.TemporaryDirectory() as scratch:
        # From a copy of what the image's build copies: setuptools reuses ./build/lib, so
        # a build in the checkout could ship a module a change no longer compiles.
        tree, wheels = Path(scratch) / "src", Path(scratch) / "wheels"
        shutil.copytree(ROOT / "eventtrace", tree / "eventtrace", ignore=_NOT_SOURCES)
        for name in ("pyproject.toml", "setup.py", "README.md"):
            shutil.copy2(ROOT / name, tree / name)
        pip = [str(BIN / "python"), "-m", "pip", "wheel", "--quiet", "--no-build-isolation"]
        env = {**os.environ, "EVENTTRACE_COMPILE": "1"}
        subprocess.check_call([*pip, "--no-deps", "-w", str(wheels), "."], cwd=tree, env=env)
        (wheel,) = wheels.glob("eventtrace-*.whl")
        shutil.rmtree(COMPILED_BUILD, ignore_errors=True)
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(COMPILED_BUILD)
    stamp.write_text(digest.hexdigest())
    return COMPILED_BUILD


def lint(_: list[str]) -> list[Command]:
    paths = [path for path in LINTED if (ROOT / path).exists()]
    return [
        (["ruff", "check", *paths], {}),
        (["ruff", "format", "--check", *paths], {}),
        (["mypy"], {}),
    ]


def test(extra: list[str]) -> list[Command]:
    commands = [*lint(extra), (["pytest", *extra], {})]
    if not extra and (build := compiled_build()) is not None:
        # conftest.py checks the compiled modules are the ones imported.
        env = {"PYTHONPATH": str(build), "EVENTTRACE_EXPECT_COMPILED": "1"}
        commands.append((["pytest", "-p", "no:cacheprovider", *COMPILED_TESTS], env))
    return commands


def bench(extra: list[str]) -> list[Command]:
    if "--pure" in extra:
        extra = [arg for arg in extra if arg != "--pure"]
    elif "--source" not in extra and (build := compiled_build()) is not None:
        extra = [*extra, "--source", str(build.relative_to(ROOT))]
    return [(["python", "bench/pipeline.py", *extra], {})]


TASKS = {
    "demo": lambda extra: [(["eventtrace", "demo", *extra], {})],
    "lint": lint,
    "test": test,
    "bench": bench,
}

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
