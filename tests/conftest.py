"""Shared test fixtures. The real parts live in tests/support/: a Kubernetes API server
speaking the real list/watch protocol, and an OTLP receiver decoding real protobuf."""

from __future__ import annotations

pytest_plugins = ["support.apiserver", "support.otlp_receiver", "support.live"]
