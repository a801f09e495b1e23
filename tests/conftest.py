"""Shared test fixtures. The real parts live in tests/support/: a Kubernetes API server
speaking the real list/watch protocol, and an OTLP receiver decoding real protobuf."""

from __future__ import annotations

import ast
import importlib
import os
from pathlib import Path

import pytest

pytest_plugins = ["support.apiserver", "support.otlp_receiver"]

ROOT = Path(__file__).resolve().parents[1]


def compiled_modules() -> list[str]:
    """The modules setup.py compiles with mypyc (its COMPILED list), as dotted names."""
    tree = ast.parse((ROOT / "setup.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "COMPILED" for target in node.targets
        ):
            paths: list[str] = ast.literal_eval(node.value)
            return [path.removesuffix(".py").replace("/", ".") for path in paths]
    raise AssertionError("setup.py has no COMPILED list")


def pytest_sessionstart(session: pytest.Session) -> None:
    # dev.py runs the core's tests again against the compiled build: make sure that is
    # what they import, not the source tree.
    if os.environ.get("EVENTTRACE_EXPECT_COMPILED") != "1":
        return
    pure = [
        name
        for name in compiled_modules()
        if not str(importlib.import_module(name).__file__).endswith(".so")
    ]
    if pure:
        raise pytest.UsageError(f"EVENTTRACE_EXPECT_COMPILED=1, but not compiled: {pure}")
