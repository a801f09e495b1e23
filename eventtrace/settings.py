"""eventtrace's own settings: flags over environment (`EVENTTRACE_*`) over a YAML file.

OTLP transport settings are not here: they follow the standard `OTEL_EXPORTER_OTLP_*`
variables, read by the OpenTelemetry exporters themselves (see `export/otlp.py`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import BeforeValidator, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from eventtrace.core.episodes import TraceRules
from eventtrace.core.filters import EventFilter

ENV_PREFIX = "EVENTTRACE_"

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: Any) -> Any:
    """Seconds as a number, or a Go-style duration as Kubernetes users write: 90s, 2m, 1h30m."""
    if isinstance(value, str):
        text = value.strip()
        try:
            return float(text)
        except ValueError:
            pass
        parts = _DURATION_PART.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            raise ValueError(f"{value!r} is not a duration (use seconds, or e.g. 90s, 2m, 1h30m)")
        return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    return value


def split_list(value: Any) -> Any:
    """A YAML list, a comma-separated string (environment), or repeated flags that may
    each hold commas."""
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return [part.strip() for item in value for part in item.split(",") if part.strip()]
    return value


Seconds = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]
Names = Annotated[list[str], NoDecode, BeforeValidator(split_list)]
Output = Literal["otlp", "console", "jsonl"]
Protocol = Literal["grpc", "http/protobuf"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="forbid",
        validate_default=True,
    )
    yaml_path: ClassVar[Path | None] = None

    # What a trace is (DESIGN §1).
    cluster_name: str = Field("kubernetes", min_length=1, max_length=253)
    trace_idle: Seconds = 120.0
    trace_max: Seconds = 1800.0
    resolve_timeout: Seconds = 5.0

    # Where events come from.
    kubeconfig: str | None = None
    context: str | None = None
    namespaces: Names = []
    startup_timeout: Seconds = 30.0
    watch_timeout: Seconds = 300.0  # server-side timeoutSeconds of one watch request
    inactivity_timeout: Seconds = 900.0  # a stream silent for this long is reconnected

    # Which events count. Empty include lists mean "all"; exclusions win.
    include_types: Names = []
    exclude_types: Names = []
    include_reasons: Names = []
    exclude_reasons: Names = []
    include_kinds: Names = []
    exclude_kinds: Names = []
    exclude_namespaces: Names = []

    # Where spans go.
    output: Output | None = None
    otlp_endpoint: str | None = None
    otlp_protocol: Protocol | None = None
    export_queue_size: int = Field(20_000, ge=1)
    export_batch_size: int = Field(512, ge=1)
    export_interval: Seconds = 1.0

    # Restarts and replicas (DESIGN §2): what was exported, kept across restarts, and
    # which replica exports. State: configmap:NAMESPACE/NAME, file:PATH or none; empty,
    # the default for where it runs (state_location).
    state: str = ""
    state_interval: Seconds = 5.0
    leader_election: str = "none"  # lease:NAMESPACE/NAME or none
    identity: str = ""  # who holds the Lease; empty: the host name (a pod's name)
    lease_duration: Seconds = 15.0  # client-go's timings
    renew_deadline: Seconds = 10.0
    retry_period: Seconds = 2.0

    # Operating it.
    metrics_addr: str = "127.0.0.1:8080"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    max_message_bytes: int = Field(4096, ge=64)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("state")
    @classmethod
    def _state(cls, value: str) -> str:
        if value in ("", "none") or (value.startswith("file:") and len(value) > 5):
            return value
        if value.startswith("configmap:"):
            _namespaced_name(value.removeprefix("configmap:"), "configmap:NAMESPACE/NAME")
            return value
        raise ValueError(f"{value!r} is not configmap:NAMESPACE/NAME, file:PATH or none")

    @field_validator("leader_election")
    @classmethod
    def _lease(cls, value: str) -> str:
        if value == "none":
            return value
        if value.startswith("lease:"):
            _namespaced_name(value.removeprefix("lease:"), "lease:NAMESPACE/NAME")
            return value
        raise ValueError(f"{value!r} is not lease:NAMESPACE/NAME or none")

    @model_validator(mode="after")
    def _timings(self) -> Settings:
        # client-go's rules, which kubernetes-asyncio's elector enforces too.
        if not self.lease_duration > self.renew_deadline > 1.2 * self.retry_period >= 1.2:
            raise ValueError(
                "leader election timings need lease_duration > renew_deadline > "
                f"1.2 x retry_period and retry_period >= 1s (got {self.lease_duration:g}s, "
                f"{self.renew_deadline:g}s, {self.retry_period:g}s)"
            )
        return self

    @property
    def lease(self) -> tuple[str, str] | None:
        """(namespace, name) of the Lease to hold, or None: no leader election."""
        if self.leader_election == "none":
            return None
        return _namespaced_name(self.leader_election.removeprefix("lease:"), "")

    def state_location(self, pod_namespace: str | None, server: str) -> str:
        """Where the state lives: as set, else a ConfigMap in the pod's namespace when in
        a pod, else a file under $XDG_STATE_HOME/eventtrace named after the cluster (its
        name and API server)."""
        if self.state:
            return self.state
        if pod_namespace:
            return f"configmap:{pod_namespace}/eventtrace-state"
        home = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
        host = server.partition("://")[2] or server
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", f"{self.cluster_name}-{host}")
        return f"file:{Path(home) / 'eventtrace' / (safe + '.state')}"

    @field_validator("metrics_addr")
    @classmethod
    def _host_port(cls, value: str) -> str:
        _, sep, port = value.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"{value!r} is not HOST:PORT (e.g. 127.0.0.1:8080 or :8080)")
        return value

    @property
    def trace_rules(self) -> TraceRules:
        return TraceRules(
            cluster_name=self.cluster_name,
            trace_idle_ns=int(self.trace_idle * 1e9),
            trace_max_ns=int(self.trace_max * 1e9),
        )

    @property
    def event_filter(self) -> EventFilter:
        return EventFilter(
            include_types=frozenset(self.include_types),
            exclude_types=frozenset(self.exclude_types),
            include_reasons=frozenset(self.include_reasons),
            exclude_reasons=frozenset(self.exclude_reasons),
            include_kinds=frozenset(self.include_kinds),
            exclude_kinds=frozenset(self.exclude_kinds),
            include_namespaces=frozenset(self.namespaces),
            exclude_namespaces=frozenset(self.exclude_namespaces),
        )

    @property
    def metrics_host_port(self) -> tuple[str, int]:
        host, _, port = self.metrics_addr.rpartition(":")
        return (host or "0.0.0.0", int(port))

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: tuple[PydanticBaseSettingsSource, ...] = (init_settings, env_settings)
        if cls.yaml_path is not None:
            sources += (YamlConfigSettingsSource(settings_cls, yaml_file=cls.yaml_path),)
        return sources


def _namespaced_name(text: str, form: str) -> tuple[str, str]:
    namespace, slash, name = text.partition("/")
    if not slash or not namespace or not name or "/" in name:
        raise ValueError(f"{text!r} is not {form}")
    return namespace, name


class SettingsError(Exception):
    """A setting is wrong. The message names it and says what is wrong, one line each."""


def load_settings(flags: dict[str, Any] | None = None, config: Path | None = None) -> Settings:
    """Flags (already parsed, None meaning "not given") over env over the YAML file."""
    given = {key: value for key, value in (flags or {}).items() if value not in (None, [], ())}
    settings_cls: type[Settings] = Settings
    if config is not None:
        _check_yaml(config)
        settings_cls = type("FileSettings", (Settings,), {"yaml_path": config})
    try:
        return settings_cls(**given)
    except ValidationError as error:
        raise SettingsError(_describe(error, config)) from None


def _check_yaml(config: Path) -> None:
    try:
        data = yaml.safe_load(config.read_text(encoding="utf-8"))
    except OSError as error:
        raise SettingsError(f"--config {config}: cannot read: {error.strerror}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or "not valid YAML"
        raise SettingsError(f"{config}{line}: {problem}") from None
    if data is not None and not isinstance(data, dict):
        raise SettingsError(f"{config}: expected a mapping of setting: value at the top level")


def _describe(error: ValidationError, config: Path | None) -> str:
    lines = []
    for item in error.errors():
        name = ".".join(str(part) for part in item["loc"] if not isinstance(part, int))
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            where = f" in {config}" if config else ""
            message = f"unknown setting{where}"
        lines.append(f"setting {name} ({ENV_PREFIX}{name.upper()}): {message}")
    return "\n".join(lines)
