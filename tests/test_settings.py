"""Settings: flags over environment over file; a bad value names the setting, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_replay_cli import eventtrace

from eventtrace.settings import SettingsError, load_settings


def test_defaults_are_the_documented_ones(monkeypatch: pytest.MonkeyPatch) -> None:
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
    ("flags", "env", "message"),
    [
        (
            {"trace_idle": "soon"},
            {},
            "setting trace_idle (EVENTTRACE_TRACE_IDLE): 'soon' is not a duration",
        ),
        (
            {},
            {"EVENTTRACE_TRACE_MAX": "-5"},
            "setting trace_max (EVENTTRACE_TRACE_MAX): Input should be greater than 0",
        ),
        (
            {},
            {"EVENTTRACE_METRICS_ADDR": "8080"},
            "setting metrics_addr (EVENTTRACE_METRICS_ADDR): '8080' is not HOST:PORT",
        ),
        (
            {},
            {"EVENTTRACE_OUTPUT": "zipkin"},
            "setting output (EVENTTRACE_OUTPUT): Input should be 'otlp', 'console' or 'jsonl'",
        ),
    ],
)
def test_bad_values_name_the_setting(flags, env, message, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError) as caught:
        load_settings(flags)
    assert str(caught.value).startswith(message)


def test_unknown_key_and_broken_yaml_in_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("cluster_nam: x\n")
    with pytest.raises(SettingsError, match=r"setting cluster_nam .*unknown setting in .*c.yaml"):
        load_settings({}, config)
    config.write_text("cluster_name: [x\n")
    with pytest.raises(SettingsError, match=r"c.yaml:2: "):
        load_settings({}, config)


def test_the_cli_exits_2_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    result = eventtrace("demo", env={"EVENTTRACE_TRACE_IDLE": "forever"})
    assert result.returncode == 2
    assert result.stderr == (
        "eventtrace: setting trace_idle (EVENTTRACE_TRACE_IDLE): 'forever' is not a duration "
        "(use seconds, or e.g. 90s, 2m, 1h30m)\n"
    )
    result = eventtrace("demo", "--config", str(tmp_path / "missing.yaml"))
    assert result.returncode == 2
    assert "missing.yaml: cannot read: No such file or directory" in result.stderr
