"""The build's one optional step: the pure core, the OTLP encoder and the parser's fast path
compiled to C with mypyc.

Metadata lives in pyproject.toml; this file only adds extension modules, and only when
asked: `EVENTTRACE_COMPILE=1` with mypy (which ships mypyc) and a C compiler in the
build environment, e.g.

    pip install "setuptools>=77" "mypy>=1.11"
    EVENTTRACE_COMPILE=1 pip install --no-build-isolation .

Without it (the default, and every editable install) the package is pure Python and
behaves the same: the compiled modules are these same files, type-checked by mypy
--strict, so each runs as written, ~10 % less CPU an event (bench/RESULTS.md).
"""

from __future__ import annotations

import os

from setuptools import setup

# The functional core (no I/O), the OTLP encoder and the parser's fast path: where a run
# spends its Python.
COMPILED = [
    "eventtrace/model.py",
    "eventtrace/ids.py",
    "eventtrace/occurrences.py",
    "eventtrace/owners.py",
    "eventtrace/assemble.py",
    "eventtrace/pipeline.py",
    "eventtrace/export/protobuf.py",
    "eventtrace/source/fast_path.py",
]

_YES, _NO = {"1", "true", "yes"}, {"", "0", "false", "no"}


def compiled_extensions() -> list[object]:
    choice = os.environ.get("EVENTTRACE_COMPILE", "").strip().lower()
    if choice in _NO:
        return []
    if choice not in _YES:
        raise SystemExit(f"EVENTTRACE_COMPILE={choice!r}: use 1 to compile the core, 0 not to")
    try:
        from mypyc.build import mypycify
    except ImportError:
        raise SystemExit(
            "EVENTTRACE_COMPILE=1 needs mypy (mypyc) where the package is built: "
            'pip install "setuptools>=77" "mypy>=1.11", then pip install --no-build-isolation'
        ) from None
    # The compiled modules import only the standard library and each other. mypy still reads
    # the packages they sit in (eventtrace/export/__init__.py imports settings and metrics),
    # whose dependencies a build environment need not have: those are only glanced at
    # (`dev.py lint` checks them strictly), and pyproject's [tool.mypy] with its pydantic
    # plugin is not read.
    options = ["--config-file", os.devnull, "--follow-imports=silent", "--ignore-missing-imports"]
    return list(mypycify([*options, *COMPILED], opt_level="3", group_name="eventtrace"))


setup(ext_modules=compiled_extensions())
