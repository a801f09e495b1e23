"""eventtrace's own settings: flags over environment (`EVENTTRACE_*`) over a YAML file.

One flat model, so that every setting has one name in all three places: the flag
`--trace-idle`, the variable `EVENTTRACE_TRACE_IDLE`, the file key `trace_idle` (the Helm
chart's camelCase `traceIdle` is accepted in the file too). For code, the settings are
also grouped, as kopf groups its `OperatorSettings`, in read-only views (`tracing`,
`watching`, `filtering`, `export`, `persistence`, `operating`): grouping the model itself
would rename the variables (`EVENTTRACE_TRACING__TRACE_IDLE`).

A bad setting is a `SettingsError` naming where the value came from: the flag, the
variable, or the file, line and key. OTLP transport settings are not here: they follow
the standard `OTEL_EXPORTER_OTLP_*` variables, read by the OpenTelemetry exporters
themselves (see `export/otlp.py`).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeVar, cast

import yaml
from pydantic import BeforeValidator, Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from eventtrace.core.episodes import TraceRules
from eventtrace.core.filters import EventFilter

ENV_PREFIX = "EVENTTRACE_"
EVENT_TYPES = ("Normal", "Warning")  # the only types the API server accepts

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


def format_duration(seconds: float) -> str:
    """The short form a user would write: 120 -> 2m, 5400 -> 1h30m, 0.5 -> 500ms."""
    if 0 < seconds < 1 and (seconds * 1000).is_integer():
        return f"{seconds * 1000:.0f}ms"
    if not float(seconds).is_integer() or seconds <= 0:
        return f"{seconds:g}s"
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(hours, "h"), (minutes, "m"), (secs, "s")]
    return "".join(f"{n}{unit}" for n, unit in parts if n)


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
_View = TypeVar("_View")


# --- the groups: read-only views of the flat model ------------------------------------------


@dataclass(frozen=True, slots=True)
class TracingSettings:
    """What a trace is (DESIGN §1)."""

    cluster_name: str
    trace_idle: float
    trace_max: float
    resolve_timeout: float


@dataclass(frozen=True, slots=True)
class WatchingSettings:
    """Where events come from, and how the watches are kept up."""

    kubeconfig: str | None
    context: str | None
    namespaces: tuple[str, ...]
    startup_timeout: float
    watch_timeout: float
    inactivity_timeout: float


@dataclass(frozen=True, slots=True)
class FilteringSettings:
    """Which events count. Empty include lists mean "all"; exclusions win."""

    include_types: tuple[str, ...]
    exclude_types: tuple[str, ...]
    include_reasons: tuple[str, ...]
    exclude_reasons: tuple[str, ...]
    include_kinds: tuple[str, ...]
    exclude_kinds: tuple[str, ...]
    exclude_namespaces: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ExportSettings:
    """Where spans go and how they are batched."""

    output: Output | None
    otlp_endpoint: str | None
    otlp_protocol: Protocol | None
    export_queue_size: int
    export_batch_size: int
    export_interval: float
    shutdown_timeout: float


@dataclass(frozen=True, slots=True)
class PersistenceSettings:
    """Restarts and replicas (DESIGN §2): the state kept across restarts, the Lease."""

    state: str
    state_interval: float
    leader_election: str
    identity: str
    lease_duration: float
    renew_deadline: float
    retry_period: float


@dataclass(frozen=True, slots=True)
class OperatingSettings:
    """Operating it: its HTTP endpoints, its logs, its limits."""

    metrics_addr: str
    log_level: str
    max_message_bytes: int
    unauthorized_timeout: float
    event_memory: float
    object_memory: float
    housekeeping_interval: float


# Each group's title, as `eventtrace run --help` and docs/settings.md say it.
GROUPS: dict[str, tuple[str, type[Any]]] = {
    "tracing": ("what a trace is", TracingSettings),
    "watching": ("where events come from", WatchingSettings),
    "filtering": ("which events count", FilteringSettings),
    "export": ("where spans go", ExportSettings),
    "persistence": ("restarts and replicas", PersistenceSettings),
    "operating": ("operating it", OperatingSettings),
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="forbid",
        validate_default=True,
    )
    # The --config file's values by field name (see `load_settings`), lowest priority.
    file_values: ClassVar[dict[str, Any]] = {}

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
    # How long the flush at a stop may take: within Kubernetes' default 30 s grace, with
    # the state save after it.
    shutdown_timeout: Seconds = 8.0

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
    # /healthz fails once the API server has refused the credentials this long, so
    # Kubernetes restarts the pod (and it logs in afresh).
    unauthorized_timeout: Seconds = 300.0
    # What bounds memory over weeks (the housekeeping forgets by arrival, never by the
    # events' own times): events, and the owners their messages named, are remembered
    # between half of event_memory and all of it after they last arrived (the API server
    # keeps events an hour); deleted objects stay object_memory as tombstones for late
    # events.
    event_memory: Seconds = 3 * 3600.0
    object_memory: Seconds = 3600.0
    housekeeping_interval: Seconds = 60.0

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("include_types", "exclude_types")
    @classmethod
    def _event_types(cls, value: list[str]) -> list[str]:
        known = {name.lower(): name for name in EVENT_TYPES}
        wrong = [item for item in value if item.lower() not in known]
        if wrong:
            listed = ", ".join(repr(item) for item in wrong)
            verb = "is not an event type" if len(wrong) == 1 else "are not event types"
            raise ValueError(f"{listed} {verb} (accepted: {', '.join(EVENT_TYPES)})")
        return [known[item.lower()] for item in value]

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

    # The groups. Frozen copies: a change goes through the flat fields.

    @property
    def tracing(self) -> TracingSettings:
        return self._view(TracingSettings)

    @property
    def watching(self) -> WatchingSettings:
        return self._view(WatchingSettings)

    @property
    def filtering(self) -> FilteringSettings:
        return self._view(FilteringSettings)

    @property
    def export(self) -> ExportSettings:
        return self._view(ExportSettings)

    @property
    def persistence(self) -> PersistenceSettings:
        return self._view(PersistenceSettings)

    @property
    def operating(self) -> OperatingSettings:
        return self._view(OperatingSettings)

    def _view(self, view: type[_View]) -> _View:
        values = {}
        for item in fields(cast(Any, view)):
            value = getattr(self, item.name)
            values[item.name] = tuple(value) if isinstance(value, list) else value
        return view(**values)

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
        if cls.file_values:
            sources += (_FileSource(settings_cls, cls.file_values),)
        return sources


class _FileSource(PydanticBaseSettingsSource):
    """The --config file's values, already read and keyed by field name."""

    def __init__(self, settings_cls: type[BaseSettings], values: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._values = values

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._values)


def _namespaced_name(text: str, form: str) -> tuple[str, str]:
    namespace, slash, name = text.partition("/")
    if not slash or not namespace or not name or "/" in name:
        raise ValueError(f"{text!r} is not {form}")
    return namespace, name


class SettingsError(Exception):
    """A setting is wrong. The message names where it was given (flag, environment
    variable, file:line: key) and says what is wrong, one line a problem."""


# --- where a setting comes from -----------------------------------------------------------

FLAG_NAMES = {"namespaces": "--namespace"}  # the flags not named --<field-name>


def flag_name(name: str) -> str:
    return FLAG_NAMES.get(name, "--" + name.replace("_", "-"))


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


_CAMEL_CASE = re.compile(r"[a-z][a-zA-Z0-9]*[A-Z][a-zA-Z0-9]*")

# Keys of the Helm chart's values that group settings: said how to write them here.
_CHART_GROUPS = {
    "filters": "the chart's filters are settings of their own here, at the top level: "
    "include_types, exclude_reasons, include_kinds, …",
    "extraConfig": "the chart's extraConfig holds settings: write them at the top level",
    "otlp": "OTLP transport settings are the OTEL_EXPORTER_OTLP_* variables; in this file: "
    "otlp_endpoint, otlp_protocol",
}


@dataclass(slots=True)
class ConfigFile:
    """The --config file, read: values by field name, where each was written, problems."""

    path: Path
    values: dict[str, Any] = field(default_factory=dict)
    keys: dict[str, tuple[str, int | None]] = field(default_factory=dict)  # (as written, line)
    problems: list[str] = field(default_factory=list)

    @classmethod
    def read(cls, path: Path) -> ConfigFile:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise SettingsError(f"--config {path}: cannot read: {error.strerror}") from None
        except UnicodeDecodeError:
            raise SettingsError(f"--config {path}: not UTF-8 text") from None
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            line = f":{mark.line + 1}" if mark is not None else ""
            problem = getattr(error, "problem", None) or "not valid YAML"
            raise SettingsError(f"{path}{line}: {problem}") from None
        finally:
            loader.dispose()
        if data is None:
            return cls(path)
        if not isinstance(data, dict) or not isinstance(node, yaml.MappingNode):
            raise SettingsError(f"{path}: expected a mapping of setting: value at the top level")
        lines: dict[str, list[int]] = {}  # by key as written
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                lines.setdefault(key_node.value, []).append(key_node.start_mark.line + 1)
        config = cls(path)
        for key, where in lines.items():  # PyYAML keeps the last of a repeated key, silently
            if len(where) > 1:
                config.problems.append(
                    f"{path}:{where[-1]}: {key} is given twice (also on line {where[0]})"
                )
        for key, value in data.items():
            config._take(str(key), value, lines.get(str(key), [None])[-1])
        return config

    def _take(self, key: str, value: Any, line: int | None) -> None:
        name = _field_for(key)
        where = f"{self.path}:{line}" if line else str(self.path)
        if name is None:
            self.problems.append(f"{where}: {_unknown(key)}")
        elif name in self.keys:
            first, first_line = self.keys[name]
            at = f" on line {first_line}" if first_line else ""
            self.problems.append(
                f"{where}: {key} and {first}{at} are one setting, {name}: keep one of them"
            )
        else:
            self.values[name] = value
            self.keys[name] = (key, line)

    def where(self, name: str) -> str:
        key, line = self.keys[name]
        return f"{self.path}:{line}: {key}" if line else f"{self.path}: {key}"


def _field_for(key: str) -> str | None:
    """The field a file key names: as written, in any case, or the chart's camelCase."""
    fields_ = Settings.model_fields
    if key in fields_:
        return key
    if key.lower() in fields_:
        return key.lower()
    if _CAMEL_CASE.fullmatch(key):
        snake = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", key).lower()
        if snake in fields_:
            return snake
    return None


def _unknown(key: str) -> str:
    if key in _CHART_GROUPS:
        return f"unknown setting {key!r}: {_CHART_GROUPS[key]}"
    camel = bool(_CAMEL_CASE.fullmatch(key))
    snake = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", key).lower()
    snake = snake.removeprefix(ENV_PREFIX.lower())
    close = difflib.get_close_matches(snake, list(Settings.model_fields), n=1)
    if close:
        suggestion = _camel(close[0]) if camel else close[0]
        return f"unknown setting {key!r} (did you mean {suggestion!r}?)"
    return f"unknown setting {key!r} (`eventtrace run --help` lists the settings)"


# Variables Kubernetes puts in a pod for each Service of its namespace (unless the pod
# says enableServiceLinks: false): a Service named eventtrace or eventtrace-jaeger lands
# in eventtrace's own prefix. Their shapes: {SVC}_SERVICE_HOST, {SVC}_SERVICE_PORT[_NAME],
# {SVC}_PORT, {SVC}_PORT_{N}_{PROTO}[_PROTO|_PORT|_ADDR].
_SERVICE_LINK = re.compile(
    r"(?:[A-Z0-9_]+_)?(?:SERVICE_HOST|SERVICE_PORT(?:_[A-Z0-9_]+)?|PORT"
    r"|PORT_\d+_(?:TCP|UDP|SCTP)(?:_(?:PROTO|PORT|ADDR))?)"
)


def environment_warnings(environ: Mapping[str, str] | None = None) -> list[str]:
    """One line for each EVENTTRACE_* variable that is no setting (a typo, most likely),
    with the setting it may have meant; Kubernetes' service-link variables are left out.
    A warning, not an error: an old variable left in a Deployment must not stop a pod."""
    environ = os.environ if environ is None else environ
    warnings = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX):
            continue
        rest = upper.removeprefix(ENV_PREFIX)
        if rest.lower() in Settings.model_fields or _SERVICE_LINK.fullmatch(rest):
            continue
        close = difflib.get_close_matches(rest.lower(), list(Settings.model_fields), n=1)
        hint = f" (did you mean {env_name(close[0])}?)" if close else ""
        warnings.append(f"{name} is not an eventtrace setting: ignored{hint}")
    return warnings


# --- loading --------------------------------------------------------------------------------


def load_settings(flags: dict[str, Any] | None = None, config: Path | None = None) -> Settings:
    """Flags (already parsed, None meaning "not given") over env over the YAML file.
    Raises SettingsError with one line a problem, each naming where the value was given."""
    given = {key: value for key, value in (flags or {}).items() if value not in (None, [], ())}
    file = ConfigFile.read(config) if config is not None else None
    problems = list(file.problems) if file else []
    settings_cls: type[Settings] = Settings
    if file is not None and file.values:
        settings_cls = type("FileSettings", (Settings,), {"file_values": file.values})
    try:
        settings = settings_cls(**given)
    except ValidationError as error:
        problems += _describe(error, given, file)
    if problems:
        raise SettingsError("\n".join(problems))
    return settings


def _describe(error: ValidationError, given: dict[str, Any], file: ConfigFile | None) -> list[str]:
    lines = []
    for item in error.errors():
        loc = [part for part in item["loc"] if isinstance(part, str)]
        message = item["msg"].removeprefix("Value error, ")
        name = loc[0] if loc else ""
        if not name or name not in Settings.model_fields:
            # About several settings (leader election timings): where those were given.
            named = [key for key in Settings.model_fields if re.search(rf"\b{key}\b", message)]
            wheres = [_origin(key, given, file)[0] for key in named]
            given_at = ", ".join(where for where in wheres if not where.endswith("(default)"))
            lines.append(f"{given_at}: {message}" if given_at else message)
            continue
        where, raw = _origin(name, given, file)
        if item["type"] != "value_error":  # pydantic's own: say which value, as written
            shown = item.get("input") if len(item["loc"]) > 1 else raw
            if message.startswith("Input "):
                message = f"{shown!r} {message.removeprefix('Input ')}"
            else:
                message = f"{message} (got {shown!r})"
        lines.append(f"{where}: {message}")
    return lines


def _origin(name: str, given: dict[str, Any], file: ConfigFile | None) -> tuple[str, Any]:
    """Where the value of a setting came from, by precedence, and the value as given."""
    if name in given:
        return flag_name(name), given[name]
    for variable, value in os.environ.items():
        if variable.upper() == env_name(name):
            return variable, value
    if file is not None and name in file.keys:
        return file.where(name), file.values[name]
    return f"setting {name} (default)", Settings.model_fields[name].default
