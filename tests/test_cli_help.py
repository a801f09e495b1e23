"""The command line explains itself: what each command does, what it reads, examples,
defaults; a flag it does not know is said by that command; /metrics is as documented."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_replay_cli import eventtrace

from eventtrace.cli import _parser, main
from eventtrace.metrics import Metrics
from eventtrace.settings import Settings, flag_name

ROOT = Path(__file__).resolve().parents[1]


def flat(text: str) -> str:
    """Help as one line: argparse wraps it to the terminal's width."""
    return " ".join(text.split())


def help_of(*command: str) -> str:
    result = eventtrace(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


def test_eventtrace_help_lists_the_commands_one_line_each() -> None:
    out = help_of()
    assert out.startswith("usage: eventtrace [-h] [--version] COMMAND ...")
    listed = re.findall(r"^    (\w+)\s{2,}(\S.*)$", out, re.MULTILINE)
    assert [name for name, _ in listed] == ["run", "replay", "demo", "tree"]
    assert all(len(line) > 30 for _, line in listed)
    text = flat(out)
    assert "examples: eventtrace demo" in text
    assert "`eventtrace COMMAND --help` says more" in text
    assert "EVENTTRACE_<NAME>" in text and "--config" in text


def test_replay_help_names_the_formats_it_reads_with_examples() -> None:
    text = flat(help_of("replay"))
    for accepted in (
        "kubectl get events -o json|yaml",
        "kubectl get events -w -o json",
        "JSON lines of watch events",
        '{"type": "ADDED", "object": {...}}',
        "object dumps kubectl get pods,rs,deploy -o json",
        "YAML documents separated by ---",
        "- is standard input",
    ):
        assert accepted in text, accepted
    examples = text.split("examples:", 1)[1]
    assert examples.count("eventtrace replay") >= 3
    assert "eventtrace replay events.json objects.json" in examples
    assert "kubectl get events -A -o yaml | eventtrace replay - --output jsonl" in examples
    assert "(default: console)" in text  # --output, for replay


def test_run_help_shows_defaults_and_every_setting() -> None:
    text = flat(help_of("run"))
    assert "Watch a cluster's Events and export them as traces" in text
    assert "jsonl (a JSON span a line) (default: otlp)" in text
    assert "--trace-idle DURATION an episode (trace) closes" in text
    for default in ("(default: 2m)", "(default: 30m)", "(default: 5s)", "(default: 30s)",
                    "(default: 127.0.0.1:8080)", "(default: INFO)", "(default: kubernetes)"):  # fmt: skip
        assert default in text, default
    assert text.count("eventtrace run") >= 4  # the usage, and three examples or more
    # The settings with no flag are listed, with their defaults: none is left unsaid.
    unflagged = text.split("settings with no flag", 1)[1]
    assert "watch_timeout (5m), inactivity_timeout (15m), export_queue_size (20000)" in unflagged
    for name in Settings.model_fields:
        assert f"{flag_name(name)} " in text or f" {name} (" in unflagged, name


@pytest.mark.parametrize(
    ("command", "needles"),
    [
        (
            ("demo",),
            ["Trace two recordings shipped with eventtrace", "(default: console)",
             "eventtrace demo --output jsonl", "--trace-idle DURATION"],
        ),
        (
            ("tree", "--help"),
            ["The events of one object and of everything it owns", "(default: 1h)",
             "(default: console)", "eventtrace tree deploy/web -n shop", "eventtrace tree sts/db"],
        ),
    ],
)  # fmt: skip
def test_demo_and_tree_help(command: tuple[str, ...], needles: list[str]) -> None:
    args = command if "--help" in command else (*command, "--help")
    result = eventtrace(*args)
    assert result.returncode == 0, result.stderr
    text = flat(result.stdout)
    for needle in needles:
        assert needle in text, needle


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [action for action in parser._actions if action.option_strings]


@pytest.mark.parametrize("kubectl", [False, True])
def test_every_flag_of_every_command_has_help(kubectl: bool) -> None:
    parser = _parser(kubectl=kubectl)
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(commands.choices) == {"run", "replay", "demo", "tree"}
    for name, command in commands.choices.items():
        assert command.description, name
        assert "examples:" in (command.epilog or ""), name
        for action in [*_options(command), *_options(parser)]:
            assert action.help and action.help != argparse.SUPPRESS, (name, action.option_strings)
        help_lines = {choice.dest: choice.help for choice in commands._choices_actions}
        assert help_lines[name] and "\n" not in help_lines[name]


def test_the_flags_users_have_are_kept() -> None:
    """Nothing renamed or dropped: every flag of before, on the same commands."""
    parser = _parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    common = {"--config", "--cluster-name", "--output", "--otlp-endpoint", "--otlp-protocol",
              "--trace-idle", "--trace-max", "--resolve-timeout", "--namespace",
              "--include-types", "--exclude-types", "--include-reasons", "--exclude-reasons",
              "--include-kinds", "--exclude-kinds", "--exclude-namespaces", "--log-level"}  # fmt: skip
    run_only = {"--kubeconfig", "--context", "--startup-timeout", "--metrics-addr", "--state",
                "--leader-election"}  # fmt: skip
    tree = {"-n", "--namespace", "-A", "--all-namespaces", "--context", "--kubeconfig", "--since",
            "-w", "--watch", "-o", "--output", "--wide", "--cluster-name", "--trace-idle",
            "--trace-max", "--otlp-endpoint", "--otlp-protocol", "--config", "-v", "--verbose"}  # fmt: skip

    def flags(name: str) -> set[str]:
        command = commands.choices[name]
        return {flag for action in _options(command) for flag in action.option_strings}

    assert flags("run") == common | run_only | {"-h", "--help"}
    assert flags("replay") == flags("demo") == common | {"-h", "--help"}
    assert flags("tree") == tree | {"-h", "--help"}


# --- a flag the command does not know ----------------------------------------------------------


def test_an_unknown_flag_shows_that_commands_usage_and_one_error() -> None:
    result = eventtrace("replay", "events.json", "--trace-idel", "2m")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("usage: eventtrace replay [-h]")
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert errors == [
        "eventtrace replay: error: unrecognized arguments: --trace-idel 2m; "
        "did you mean --trace-idle?"
    ]
    assert "Traceback" not in result.stderr


def test_a_flag_of_another_command_says_which() -> None:
    result = eventtrace("demo", "--metrics-addr", ":9090")
    assert result.returncode == 2
    assert result.stderr.startswith("usage: eventtrace demo [-h]")
    assert result.stderr.splitlines()[-1] == (
        "eventtrace demo: error: unrecognized arguments: --metrics-addr :9090; "
        "--metrics-addr is a flag of eventtrace run"
    )


def test_an_unknown_flag_of_the_kubectl_plugin_shows_its_usage(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["tree", "deploy/web", "--sinse", "2h"], kubectl=True)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: kubectl eventtrace [-h]")
    assert err.splitlines()[-1] == (
        "kubectl eventtrace: error: unrecognized arguments: --sinse 2h; did you mean --since?"
    )


def test_no_command_prints_the_help_and_exits_2() -> None:
    result = eventtrace()
    assert result.returncode == 2
    assert result.stderr.startswith("usage: eventtrace [-h] [--version] COMMAND ...")


# --- /metrics as docs/metrics.md says -----------------------------------------------------------


def _documented_metrics() -> dict[str, tuple[str, str]]:
    """docs/metrics.md's table: metric -> (type, labels cell)."""
    rows = {}
    for line in (ROOT / "docs" / "metrics.md").read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`eventtrace_"):
            rows[cells[0].strip("`")] = (cells[1], cells[2])
    return rows


def test_docs_metrics_list_what_a_fresh_metrics_page_shows() -> None:
    documented = _documented_metrics()
    shown: dict[str, tuple[str, set[tuple[str, str]]]] = {}
    for family in text_string_to_metric_families(Metrics().render().decode()):
        if family.name.endswith("_created"):
            continue  # prometheus_client's, said once in the docs
        name = family.name + ("_total" if family.type == "counter" else "")
        labels = {
            (key, value)
            for sample in family.samples
            for key, value in sample.labels.items()
            if key != "le"
        }
        shown[name] = (family.type, labels)
    assert set(documented) == set(shown)
    for name, (kind, labels) in shown.items():
        doc_type, doc_labels = documented[name]
        assert doc_type == kind, name
        # The label values there from the start are the ones in bold, and only those.
        bold = set(re.findall(r"\*\*`([^`]+)`\*\*", doc_labels))
        assert bold == {value for _, value in labels}, name
        for key, _ in labels:
            assert doc_labels.startswith(f"`{key}`"), name
