"""Settings: flags over environment over file; a bad value names where it was given
(the flag, the variable, the file's line and key), exit 2, one line a problem."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from test_replay_cli import eventtrace, jsonl_spans

from eventtrace.settings import (
    GROUPS,
    Settings,
    SettingsError,
    environment_warnings,
    format_duration,
    load_settings,
)


@pytest.fixture(autouse=True)
def no_eventtrace_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.upper().startswith("EVENTTRACE_"):
            monkeypatch.delenv(key)


def problems(flags: dict | None = None, config: Path | None = None) -> list[str]:
    with pytest.raises(SettingsError) as caught:
        load_settings(flags, config)
    return str(caught.value).splitlines()


def test_defaults_are_the_documented_ones() -> None:
    settings = load_settings()
    assert (settings.trace_idle, settings.trace_max, settings.resolve_timeout) == (120, 1800, 5)
    assert settings.startup_timeout == 30 and settings.metrics_addr == "127.0.0.1:8080"
    assert settings.namespaces == [] and settings.output is None


def test_flags_over_env_over_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "cluster_name: from-file\ntrace_idle: 2m\nnamespaces: [a, b]\nexclude_reasons: [Pulled]\n"
    )
    monkeypatch.setenv("EVENTTRACE_TRACE_IDLE", "90s")
    monkeypatch.setenv("EVENTTRACE_NAMESPACES", "c,d")
    settings = load_settings({"namespaces": ["e"]}, config)
    assert settings.cluster_name == "from-file"
    assert settings.trace_idle == 90
    assert settings.namespaces == ["e"]
    assert settings.exclude_reasons == ["Pulled"]


def test_durations_and_lists_in_every_form(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENTTRACE_TRACE_MAX", "1h30m")
    settings = load_settings({"include_kinds": ["Pod,Node", "Deployment"]})
    assert settings.trace_max == 5400
    assert settings.include_kinds == ["Pod", "Node", "Deployment"]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(120, "2m"), (1800, "30m"), (5, "5s"), (0.5, "500ms"), (5400, "1h30m"), (1.5, "1.5s")],
)
def test_durations_are_shown_as_written(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


# --- the source a bad value came from ---------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "env", "message"),
    [
        (
            {"trace_idle": "soon"},
            {"EVENTTRACE_TRACE_IDLE": "2m"},  # the flag wins, so the flag is to blame
            "--trace-idle: 'soon' is not a duration (use seconds, or e.g. 90s, 2m, 1h30m)",
        ),
        (
            {"namespaces": ["a,"], "trace_max": "-5"},
            {},
            "--trace-max: '-5' should be greater than 0",
        ),
        ({}, {"EVENTTRACE_TRACE_MAX": "-5"}, "EVENTTRACE_TRACE_MAX: '-5' should be greater than 0"),
        (
            {},
            {"EVENTTRACE_METRICS_ADDR": "8080"},
            "EVENTTRACE_METRICS_ADDR: '8080' is not HOST:PORT",
        ),
        (
            {},
            {"EVENTTRACE_OUTPUT": "zipkin"},
            "EVENTTRACE_OUTPUT: 'zipkin' should be 'otlp', 'console' or 'jsonl'",
        ),
        (
            {},
            {"EVENTTRACE_EXCLUDE_TYPES": "Warning,Bogus"},
            "EVENTTRACE_EXCLUDE_TYPES: 'Bogus' is not an event type (accepted: Normal, Warning)",
        ),
        (
            {"include_types": ["Normal", "warn", "Info"]},
            {},
            "--include-types: 'warn', 'Info' are not event types (accepted: Normal, Warning)",
        ),
        (
            {"namespaces": ["x"]},
            {"EVENTTRACE_CLUSTER_NAME": ""},
            "EVENTTRACE_CLUSTER_NAME: String should have at least 1 character (got '')",
        ),
    ],
)
def test_a_bad_value_names_where_it_was_given(
    flags: dict, env: dict, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    (line,) = problems(flags)
    assert line.startswith(message)


def test_a_bad_value_in_the_file_names_the_file_line_and_key(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("cluster_name: x\n\ntrace_idle: soon\nexport_queue_size: lots\n")
    assert problems({}, config) == [
        f"{config}:3: trace_idle: 'soon' is not a duration (use seconds, or e.g. 90s, 2m, 1h30m)",
        f"{config}:4: export_queue_size: 'lots' should be a valid integer, unable to parse "
        "string as an integer",
    ]


def test_timings_that_do_not_fit_together_name_the_ones_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("retry_period: 9s\n")
    monkeypatch.setenv("EVENTTRACE_LEASE_DURATION", "12s")
    (line,) = problems({}, config)
    assert line.startswith(f"EVENTTRACE_LEASE_DURATION, {config}:1: retry_period: leader election")
    assert "(got 12s, 10s, 9s)" in line


def test_event_types_are_checked_and_spelled_as_the_api_does() -> None:
    settings = load_settings({"include_types": ["warning"], "exclude_types": ["NORMAL"]})
    assert settings.include_types == ["Warning"] and settings.exclude_types == ["Normal"]
    assert settings.event_filter.include_types == frozenset({"Warning"})


# --- the file's keys ----------------------------------------------------------------------------


def test_an_unknown_key_says_what_was_meant(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("cluster_name: x\ntrace_idel: 2m\nno_such_thing: 1\nresolveTimout: 3s\n")
    assert problems({}, config) == [
        f"{config}:2: unknown setting 'trace_idel' (did you mean 'trace_idle'?)",
        f"{config}:3: unknown setting 'no_such_thing' (`eventtrace run --help` lists the settings)",
        f"{config}:4: unknown setting 'resolveTimout' (did you mean 'resolveTimeout'?)",
    ]


def test_the_charts_camel_case_keys_are_settings(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "traceIdle: 90s\ntraceMax: 1h\nclusterName: prod\nexcludeReasons: [Pulled]\n"
        "logLevel: debug\nexportQueueSize: 5000\n"
    )
    settings = load_settings({}, config)
    assert (settings.trace_idle, settings.trace_max, settings.cluster_name) == (90, 3600, "prod")
    assert settings.exclude_reasons == ["Pulled"] and settings.log_level == "DEBUG"
    assert settings.export_queue_size == 5000


def test_one_setting_twice_in_the_file_is_an_error(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("trace_idle: 2m\ntraceIdle: 3m\ntrace_max: 1h\ntrace_max: 2h\n")
    assert problems({}, config) == [
        f"{config}:4: trace_max is given twice (also on line 3)",
        f"{config}:2: traceIdle and trace_idle on line 1 are one setting, trace_idle: keep one "
        "of them",
    ]


def test_the_charts_groups_say_where_their_settings_go(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("filters:\n  excludeReasons: [Pulled]\n")
    (line,) = problems({}, config)
    assert line.startswith(f"{config}:1: unknown setting 'filters': the chart's filters are ")
    assert "at the top level: include_types, exclude_reasons" in line


def test_an_environment_name_in_the_file_is_pointed_at_its_key(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("EVENTTRACE_TRACE_IDLE: 2m\n")
    assert problems({}, config) == [
        f"{config}:1: unknown setting 'EVENTTRACE_TRACE_IDLE' (did you mean 'trace_idle'?)"
    ]


def test_broken_yaml_and_a_file_that_is_no_mapping(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("cluster_name: [x\n")
    with pytest.raises(SettingsError, match=r"c.yaml:2: "):
        load_settings({}, config)
    config.write_text("- trace_idle: 2m\n")
    with pytest.raises(SettingsError, match=r"c.yaml: expected a mapping of setting: value"):
        load_settings({}, config)
    config.write_text("# nothing set\n")
    assert load_settings({}, config).trace_idle == 120


# --- EVENTTRACE_* variables that are no setting --------------------------------------------------


def test_unknown_variables_are_warned_about_with_what_was_meant() -> None:
    environ = {
        "EVENTTRACE_TRACE_IDL": "3m",
        "EVENTTRACE_TRACE_IDLE": "3m",
        "eventtrace_log_level": "debug",  # read as a setting (case-insensitive), no warning
        "EVENTTRACE_COLOUR": "yes",
        "OTHER_TRACE_IDL": "3m",
    }
    assert environment_warnings(environ) == [
        "EVENTTRACE_COLOUR is not an eventtrace setting: ignored",
        "EVENTTRACE_TRACE_IDL is not an eventtrace setting: ignored (did you mean "
        "EVENTTRACE_TRACE_IDLE?)",
    ]


SERVICE_LINKS = {
    # A Service named eventtrace, with a port 8080 named metrics.
    "EVENTTRACE_SERVICE_HOST": "10.96.0.10",
    "EVENTTRACE_SERVICE_PORT": "8080",
    "EVENTTRACE_SERVICE_PORT_METRICS": "8080",
    "EVENTTRACE_PORT": "tcp://10.96.0.10:8080",
    "EVENTTRACE_PORT_8080_TCP": "tcp://10.96.0.10:8080",
    "EVENTTRACE_PORT_8080_TCP_PROTO": "tcp",
    "EVENTTRACE_PORT_8080_TCP_PORT": "8080",
    "EVENTTRACE_PORT_8080_TCP_ADDR": "10.96.0.10",
    # The chart's Jaeger, a Service named eventtrace-jaeger.
    "EVENTTRACE_JAEGER_SERVICE_HOST": "10.96.0.11",
    "EVENTTRACE_JAEGER_SERVICE_PORT": "4317",
    "EVENTTRACE_JAEGER_SERVICE_PORT_OTLP_GRPC": "4317",
    "EVENTTRACE_JAEGER_PORT": "tcp://10.96.0.11:4317",
    "EVENTTRACE_JAEGER_PORT_4317_TCP": "tcp://10.96.0.11:4317",
    "EVENTTRACE_JAEGER_PORT_4317_TCP_ADDR": "10.96.0.11",
    "EVENTTRACE_JAEGER_PORT_6831_UDP_PROTO": "udp",
}


def test_kubernetes_service_link_variables_are_left_alone() -> None:
    assert environment_warnings(SERVICE_LINKS) == []


# --- the groups --------------------------------------------------------------------------------


def test_the_groups_hold_every_setting_once_under_its_flat_name() -> None:
    grouped = [item.name for _, view in GROUPS.values() for item in dataclasses.fields(view)]
    assert sorted(grouped) == sorted(Settings.model_fields)
    settings = load_settings({"trace_idle": "90s", "exclude_reasons": ["Pulled"]})
    assert settings.tracing.trace_idle == 90
    assert settings.filtering.exclude_reasons == ("Pulled",)
    assert settings.export.export_queue_size == 20_000
    assert settings.persistence.leader_election == "none"
    assert settings.watching.inactivity_timeout == 900
    assert settings.operating.metrics_addr == "127.0.0.1:8080"
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.export.output = "console"  # type: ignore[misc]
    for name in GROUPS:
        assert isinstance(getattr(settings, name), GROUPS[name][1])


# --- the real command line -----------------------------------------------------------------------


def test_the_cli_exits_2_with_one_line_a_problem_and_no_traceback(tmp_path: Path) -> None:
    result = eventtrace("demo", env={"EVENTTRACE_TRACE_IDLE": "forever"})
    assert result.returncode == 2
    assert result.stderr == (
        "eventtrace: EVENTTRACE_TRACE_IDLE: 'forever' is not a duration "
        "(use seconds, or e.g. 90s, 2m, 1h30m)\n"
    )
    result = eventtrace("demo", "--config", str(tmp_path / "missing.yaml"))
    assert result.returncode == 2
    assert "missing.yaml: cannot read: No such file or directory" in result.stderr

    config = tmp_path / "config.yaml"
    config.write_text("cluster_name: prod\ntrace_idel: 2m\ntraceMax: soon\n")
    result = eventtrace(
        "demo", "--trace-idle", "later", "--config", str(config),
        env={"EVENTTRACE_EXCLUDE_TYPES": "Bogus"},
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"eventtrace: {config}:2: unknown setting 'trace_idel' (did you mean 'trace_idle'?)",
        "eventtrace: --trace-idle: 'later' is not a duration (use seconds, or e.g. 90s, 2m, 1h30m)",
        f"eventtrace: {config}:3: traceMax: 'soon' is not a duration (use seconds, or e.g. 90s, "
        "2m, 1h30m)",
        "eventtrace: EVENTTRACE_EXCLUDE_TYPES: 'Bogus' is not an event type (accepted: Normal, "
        "Warning)",
    ]


def test_the_cli_takes_the_charts_camel_case_keys(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("clusterName: from-chart\ntraceIdle: 90s\nincludeTypes: [Warning]\n")
    result = eventtrace("demo", "--config", str(config), "--output", "jsonl")
    assert result.returncode == 0, result.stderr
    spans = jsonl_spans(result.stdout)
    assert {span["resource"]["k8s.cluster.name"] for span in spans} == {"from-chart"}
    events = [span for span in spans if span["kind"] == "event"]
    assert events and {span["status"] for span in events} == {"ERROR"}  # Warnings only


def test_the_cli_warns_once_about_an_unknown_variable_and_not_about_service_links() -> None:
    result = eventtrace("demo", env={"EVENTTRACE_TRACE_IDL": "3m", **SERVICE_LINKS})
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "WARNING" in line]
    assert len(warnings) == 1
    assert warnings[0].endswith(
        "EVENTTRACE_TRACE_IDL is not an eventtrace setting: ignored "
        "(did you mean EVENTTRACE_TRACE_IDLE?)"
    )
    assert "SERVICE" not in result.stderr and "_PORT" not in result.stderr
