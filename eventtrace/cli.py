"""The command line: `eventtrace run | replay FILE… | demo | tree TARGET`, and the kubectl
plugin `kubectl-eventtrace` (`kubectl eventtrace TARGET` = `eventtrace tree TARGET`).

Exit codes: 0 done, 1 could not do the job (API server unreachable, credentials refused),
2 bad usage, a bad setting or an unreadable input file; 141 when the reader of stdout went
away (`eventtrace demo | head`). Errors are one line, no traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import difflib
import gc
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from eventtrace import __version__
from eventtrace.metrics import Metrics
from eventtrace.settings import (
    GROUPS,
    Settings,
    SettingsError,
    environment_warnings,
    flag_name,
    format_duration,
    load_settings,
    parse_duration,
)
from eventtrace.source.files import InputFileError

log = logging.getLogger("eventtrace")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_BROKEN_PIPE = 128 + 13  # as if killed by SIGPIPE, like other commands in a pipe


def entry() -> NoReturn:
    """The `eventtrace` command (and `python -m eventtrace`): main, then exit at once."""
    _leave(main())


def kubectl_entry() -> NoReturn:
    """`kubectl-eventtrace`, the kubectl plugin: kubectl runs it for `kubectl eventtrace
    ARGS` (it finds it on PATH), and that is `eventtrace tree ARGS`."""
    _leave(main(["tree", *sys.argv[1:]], kubectl=True))


def _leave(code: int) -> NoReturn:
    # Every span is flushed and every file closed by now. Freeing the heap object by object
    # at interpreter exit (the object cache, the event counts: hundreds of thousands) only
    # delays the pod's exit (measured: 0.4 s with 30 000 objects): leave that to the OS.
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing more to say
            stream.flush()
    os._exit(code)


def main(argv: Sequence[str] | None = None, *, kubectl: bool = False) -> int:
    parser = _parser(kubectl=kubectl)
    args = _parse(parser, argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        settings = load_settings(_flags(args), args.config)
    except SettingsError as error:
        for line in str(error).splitlines():
            print(f"eventtrace: {line}", file=sys.stderr)
        return EXIT_USAGE
    _configure_logging(settings.log_level)
    for warning in environment_warnings():
        log.warning("%s", warning)
    _tune_gc()
    try:
        return asyncio.run(_dispatch(args, settings))
    except SettingsError as error:  # found once running: a bad OTEL_EXPORTER_OTLP_* value
        print(f"eventtrace: {error}", file=sys.stderr)
        return EXIT_USAGE
    except InputFileError as error:
        print(f"eventtrace: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `eventtrace demo | head`: the reader is gone. Quietly, as other tools do, and
        # with stdout on /dev/null so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """As parse_args, but a flag the command does not know is said by that command's
    parser, with its usage (argparse leaves it to the top-level one, whose usage does not
    help), and with the flag it may have meant."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        commands = _commands(parser)
        own = commands.get(args.command or "", parser)
        hints = [_hint(word, own, commands) for word in unknown if word.startswith("-")]
        hint = "".join(f"; {text}" for text in hints if text)
        own.error(f"unrecognized arguments: {' '.join(unknown)}{hint}")
    return args


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _hint(word: str, own: argparse.ArgumentParser, commands: dict[str, Any]) -> str:
    """Did you mean: the closest flag of this command, or the commands that have it."""
    flag = word.partition("=")[0]
    options = [option for action in own._actions for option in action.option_strings]
    close = difflib.get_close_matches(flag, options, n=1, cutoff=0.75)
    if close:
        return f"did you mean {close[0]}?"
    elsewhere = [
        name
        for name, command in commands.items()
        if command is not own and any(flag in action.option_strings for action in command._actions)
    ]
    if elsewhere:
        return f"{flag} is a flag of eventtrace {' and '.join(elsewhere)}"
    return ""


async def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    metrics = Metrics()
    if args.command == "run":
        from eventtrace.live import run

        return await run(settings, metrics)
    if args.command == "tree":
        from eventtrace.tree import TreeOptions, tree

        logging.getLogger().setLevel(logging.DEBUG if args.verbose else logging.WARNING)
        options = TreeOptions(
            words=[args.target, *([args.name] if args.name else [])],
            namespace=args.tree_namespace,
            all_namespaces=args.all_namespaces,
            since_seconds=args.since[0],
            since_text=args.since[1],
            watch=args.watch,
            output=settings.output or "console",
            wide=args.wide,
        )
        return await tree(options, settings, metrics)

    from eventtrace.replay import demo_paths, replay

    output = settings.output or "console"
    paths = args.files if args.command == "replay" else demo_paths()
    return await replay(paths, settings, metrics, output)


def _flags(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given as flags; None means "not given", so env and file still count."""
    names = [
        "cluster_name", "output", "otlp_endpoint", "otlp_protocol", "log_level", "trace_idle",
        "trace_max", "resolve_timeout", "startup_timeout", "kubeconfig", "context", "namespaces",
        "metrics_addr", "state", "leader_election",
        "include_types", "exclude_types", "include_reasons", "exclude_reasons",
        "include_kinds", "exclude_kinds", "exclude_namespaces",
    ]  # fmt: skip
    return {name: getattr(args, name, None) for name in names}


def _tune_gc() -> None:
    """eventtrace keeps hundreds of thousands of objects for hours (the object cache, event
    counts, open traces) and makes few reference cycles. Python's default thresholds walk
    all of them every few hundred thousand allocations: a quarter of the CPU under load.
    What startup made is never garbage (freeze it); collect the old generation rarely
    (`run` also collects at its housekeeping)."""
    gc.freeze()
    gc.set_threshold(100_000, 10, 100)


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
    )
    # The clients' own chatter is noise at INFO; their failures reach us as exceptions.
    for noisy in ("kubernetes_asyncio", "aiohttp.access", "grpc"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


# --- the command line's help ----------------------------------------------------------------


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and examples as written (lined up), flag help wrapped; a wider column
    for the flags, so most fit on the line of their help."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=34)


_SETTINGS_NOTE = """\
Every setting is also an environment variable, EVENTTRACE_<NAME>
(EVENTTRACE_TRACE_IDLE=2m), and a key in the YAML file given with --config
(trace_idle: 2m, or the Helm chart's spelling, traceIdle); a flag wins over the
environment, which wins over the file. Durations are seconds or 90s, 2m, 1h30m,
500ms; lists are comma-separated, or the flag repeated."""

_TOP_DESCRIPTION = """\
Kubernetes Events as OpenTelemetry traces: one trace per rollout, the
Deployment at the root, its ReplicaSets and Pods under the events that made
them, each Pod's events under it, Warnings in red. Exported over OTLP (Jaeger,
any OTLP backend) or printed."""

_TOP_EPILOG = f"""\
examples:
  eventtrace demo                        two built-in traces, no cluster needed
  eventtrace run --otlp-endpoint http://localhost:4317
  kubectl get events -A -o json | eventtrace replay -
  eventtrace tree deploy/web -n shop
  kubectl eventtrace deploy/web -n shop  the same, as a kubectl plugin

`eventtrace COMMAND --help` says more about each command.
{_SETTINGS_NOTE}"""

_RUN_DESCRIPTION = """\
Watch a cluster's Events and export them as traces, over OTLP by default,
until SIGTERM or Ctrl-C (then every open trace is closed and flushed).

Credentials as kubectl finds them: --kubeconfig, $KUBECONFIG, ~/.kube/config
(--context picks a context), else the pod's service account. It lists the
Events already there, then watches them, and watches Pods, ReplicaSets,
Deployments, StatefulSets, DaemonSets, Jobs, CronJobs and Nodes to resolve
owner chains. OTLP transport follows the standard OTEL_EXPORTER_OTLP_*
variables (endpoint, headers, TLS, compression, timeout); --otlp-endpoint and
--otlp-protocol win over them. /metrics, /healthz and /readyz are served on
--metrics-addr. Exit codes: 0 after a clean stop, 1 when it cannot start (one
line says why), 2 for a bad flag or setting."""

_RUN_EPILOG = """\
examples:
  eventtrace run --otlp-endpoint http://localhost:4317    OTLP/gRPC, plaintext
  eventtrace run --namespace shop --exclude-reasons Pulled,Created
  eventtrace run --output console                 the traces in the terminal
  EVENTTRACE_TRACE_IDLE=5m eventtrace run --config settings.yaml
"""

_REPLAY_DESCRIPTION = """\
Trace recorded Events, with no cluster: the same pipeline as `run`, on files.
The clock is the events' own time, so the order of files and documents does
not matter. A bad event is logged (file:line: what is wrong) and skipped; a
file that cannot be read stops it with exit code 2.

accepted input (any mix, one file or many; - is standard input):
  kubectl get events -o json|yaml  a List of Events (core/v1, events.k8s.io/v1)
  kubectl get events -w -o json    a watch's output: JSON objects in a row
  JSON lines of watch events       {"type": "ADDED", "object": {...}} a line
  object dumps                     kubectl get pods,rs,deploy -o json: owners,
                                   so that events find their Deployment
  YAML documents                   separated by ---, comment lines allowed"""

_REPLAY_EPILOG = """\
examples:
  kubectl get events -A -o json > events.json
  kubectl get pods,replicasets,deployments -A -o json > objects.json
  eventtrace replay events.json objects.json
  kubectl get events -A -o yaml | eventtrace replay - --output jsonl
  eventtrace replay *.yaml --output otlp --otlp-endpoint http://localhost:4317
"""

_DEMO_DESCRIPTION = """\
Trace two recordings shipped with eventtrace, with no cluster: deployment/web,
a rolling update, and deployment/api, a pod stuck on an image that does not
exist (Pulling, Failed, BackOff repeating; Warnings marked ✗). The same
pipeline and options as `replay`."""

_DEMO_EPILOG = """\
examples:
  eventtrace demo
  eventtrace demo --output jsonl > spans.jsonl
  eventtrace demo --output otlp --otlp-endpoint http://localhost:4317
"""

_TREE_DESCRIPTION = """\
The events of one object and of everything it owns (a Deployment's
ReplicaSets and their Pods, a StatefulSet's Pods, ...), as one waterfall per
episode, read from the cluster with field selectors: nothing to install,
nothing left running. Also the kubectl plugin: kubectl eventtrace TARGET."""

_TREE_EPILOG = """\
examples:
  {prog} deploy/web -n shop
  {prog} sts/db -n shop --since 6h -w
  {prog} node/kind-worker -o jsonl
"""

# Flags that are not settings' own (the settings' are named after them: flag_name).
_OUTPUTS = ["otlp", "console", "jsonl"]
_PROTOCOLS = ["grpc", "http/protobuf"]
_LOG_LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR"]


_DEFAULT_TEXT = {"identity": "the host name, a pod's name", "output": ""}


def _default(name: str) -> str:
    """A setting's default, as a user would write it: 2m, not 120.0."""
    if name in _DEFAULT_TEXT:
        return _DEFAULT_TEXT[name]
    info = Settings.model_fields[name]
    value = info.default
    if any(getattr(item, "func", None) is parse_duration for item in info.metadata):
        return format_duration(float(value))
    return str(value)


def _setting(group: Any, name: str, text: str, *, default: str | None = None, **kw: Any) -> None:
    """A flag for the setting `name`: --its-name, or None when not given (so that the
    environment and the file still count); its help ends with the default."""
    shown = _default(name) if default is None else default
    help_text = f"{text} (default: {shown})" if shown else text
    group.add_argument(flag_name(name), dest=name, help=help_text, **kw)


def _settings_flags(parser: argparse.ArgumentParser, command: str) -> None:
    """The settings flags of run, replay and demo, grouped as Settings groups them."""
    run = command == "run"
    titles = {name: title for name, (title, _) in GROUPS.items()}

    trace = parser.add_argument_group(titles["tracing"])
    _setting(
        trace,
        "cluster_name",
        "k8s.cluster.name on every span, part of every trace id",
        metavar="NAME",
    )
    _setting(
        trace,
        "trace_idle",
        "an episode (trace) closes after this long without an occurrence",
        metavar="DURATION",
    )
    _setting(trace, "trace_max", "the longest episode", metavar="DURATION")
    _setting(
        trace,
        "resolve_timeout",
        "how long arrivals wait for their owners and are reordered",
        metavar="DURATION",
    )

    if run:
        cluster = parser.add_argument_group(titles["watching"])
        _setting(
            cluster,
            "kubeconfig",
            "kubeconfig file",
            metavar="FILE",
            default="$KUBECONFIG, ~/.kube/config, in-cluster",
        )
        _setting(cluster, "context", "kubeconfig context", default="the current one")
        _setting(
            cluster,
            "startup_timeout",
            "keep trying to reach the API server this long at start",
            metavar="DURATION",
        )

    filters = parser.add_argument_group(titles["filtering"])
    _setting(
        filters,
        "namespaces",
        "only namespace NS (in run: watch only NS); repeatable",
        action="append",
        metavar="NS",
        default="all",
    )
    for name in ("types", "reasons", "kinds"):
        for verb in ("include", "exclude"):
            what = {
                "types": "of these types: Normal, Warning",
                "reasons": "with these reasons, e.g. Pulled,BackOff",
                "kinds": "about these kinds of object, e.g. Pod,Node",
            }[name]
            _setting(
                filters,
                f"{verb}_{name}",
                f"{'only' if verb == 'include' else 'leave out'} events {what}",
                action="append",
                metavar="A,B",
                default="all" if verb == "include" else "none",
            )
    _setting(
        filters,
        "exclude_namespaces",
        "leave out events in these namespaces",
        action="append",
        metavar="A,B",
        default="none",
    )

    spans = parser.add_argument_group(titles["export"])
    _setting(
        spans,
        "output",
        "otlp (to a backend), console (a tree a trace), jsonl (a JSON span a line)",
        choices=_OUTPUTS,
        default="otlp" if run else "console",
    )
    _setting(
        spans,
        "otlp_endpoint",
        "where OTLP goes; wins over OTEL_EXPORTER_OTLP_ENDPOINT",
        metavar="URL",
        default="from OTEL_EXPORTER_OTLP_*, else localhost",
    )
    _setting(
        spans,
        "otlp_protocol",
        "OTLP over gRPC or HTTP; wins over OTEL_EXPORTER_OTLP_PROTOCOL",
        choices=_PROTOCOLS,
        default="grpc",
    )

    if run:
        kept = parser.add_argument_group(titles["persistence"])
        _setting(
            kept,
            "state",
            "where progress is kept across restarts: configmap:NAMESPACE/NAME, file:PATH or none",
            metavar="WHERE",
            default="in a pod configmap:<its namespace>/eventtrace-state, else a file "
            "under $XDG_STATE_HOME/eventtrace/",
        )
        _setting(
            kept,
            "leader_election",
            "lease:NAMESPACE/NAME: only the replica holding this Lease exports",
            metavar="LEASE",
        )

    operating = parser.add_argument_group(titles["operating"])
    operating.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="YAML file of settings, setting: value a line (default: none)",
    )
    _setting(operating, "log_level", "logs go to stderr", choices=_LOG_LEVELS)
    if run:
        _setting(
            operating,
            "metrics_addr",
            "where /metrics, /healthz and /readyz are served; :8080 for all addresses",
            metavar="HOST:PORT",
        )


def _unflagged(command_flags: set[str]) -> str:
    """The settings with no flag, for `run --help`: only EVENTTRACE_* or --config."""
    names = [name for name in Settings.model_fields if name not in command_flags]
    items = []
    for name in names:
        shown = _default(name)
        items.append(f"{name} ({shown})" if shown else name)
    lines, line = [], " "
    for item in items:
        if len(line) + len(item) + 2 > 78:
            lines.append(line.rstrip())
            line = " "
        line += f" {item},"
    lines.append(line.rstrip(","))
    return "\n".join(lines)


def _parser(*, kubectl: bool = False) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eventtrace",
        description=_TOP_DESCRIPTION,
        epilog=_TOP_EPILOG,
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"eventtrace {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")

    run = commands.add_parser(
        "run",
        help="watch a cluster, export its events as traces (OTLP by default)",
        description=_RUN_DESCRIPTION,
        formatter_class=_Formatter,
    )
    _settings_flags(run, "run")
    flagged = {action.dest for action in run._actions}
    run.epilog = (
        f"{_RUN_EPILOG}\nsettings with no flag (EVENTTRACE_<NAME> or --config), with their "
        f"defaults:\n{_unflagged(flagged)}\n\n{_SETTINGS_NOTE}"
    )

    replay = commands.add_parser(
        "replay",
        help="trace recorded events (kubectl get events -o json|yaml, -w)",
        description=_REPLAY_DESCRIPTION,
        epilog=f"{_REPLAY_EPILOG}\n{_SETTINGS_NOTE}",
        formatter_class=_Formatter,
    )
    replay.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="recordings and object dumps, any of the formats above; - for standard input",
    )
    _settings_flags(replay, "replay")

    demo = commands.add_parser(
        "demo",
        help="trace built-in recordings: a rollout, a pod stuck on a bad image",
        description=_DEMO_DESCRIPTION,
        epilog=f"{_DEMO_EPILOG}\n{_SETTINGS_NOTE}",
        formatter_class=_Formatter,
    )
    _settings_flags(demo, "demo")
    _tree_parser(commands, kubectl)
    return parser


def _tree_parser(commands: Any, kubectl: bool) -> None:
    """`eventtrace tree TARGET`, also `kubectl eventtrace TARGET` (the plugin)."""
    prog = "kubectl eventtrace" if kubectl else "eventtrace tree"
    tree = commands.add_parser(
        "tree",
        prog=prog if kubectl else None,
        help="the waterfall of one object and what it owns: deploy/web, sts/db",
        description=_TREE_DESCRIPTION,
        epilog=_TREE_EPILOG.format(prog=prog),
        formatter_class=_Formatter,
    )
    tree.add_argument(
        "target",
        metavar="TYPE/NAME",
        help="as kubectl names objects: deployment/web, deploy/web, sts/db, pod/x, "
        "node/kind-worker, rollouts.argoproj.io/demo (or TYPE NAME)",
    )
    tree.add_argument("name", nargs="?", metavar="NAME", help=argparse.SUPPRESS)
    tree.add_argument(
        "-n",
        "--namespace",
        dest="tree_namespace",
        metavar="NS",
        help="the object's namespace (default: the kubeconfig context's)",
    )
    tree.add_argument(
        "-A",
        "--all-namespaces",
        action="store_true",
        help="find the object by name in whichever namespace holds it",
    )
    tree.add_argument("--context", help="kubeconfig context (default: the current one)")
    tree.add_argument(
        "--kubeconfig",
        metavar="FILE",
        help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster)",
    )
    tree.add_argument(
        "--since",
        type=_since,
        default=(3600.0, "1h"),
        metavar="DURATION",
        help="events whose last occurrence is newer than this; 0: all (default: 1h)",
    )
    tree.add_argument(
        "-w",
        "--watch",
        action="store_true",
        help="stay on the watch and redraw as events come (Ctrl-C quits)",
    )
    tree.add_argument(
        "-o",
        "--output",
        choices=["console", "jsonl", "otlp"],
        help="console (the waterfall), jsonl (one JSON span a line), or otlp to a backend "
        "(default: console)",
    )
    tree.add_argument(
        "--wide",
        action="store_true",
        help="print messages in full on a terminal too (piped they always are)",
    )
    tree.add_argument(
        "--cluster-name",
        metavar="NAME",
        help=f"k8s.cluster.name on every span (default: {_default('cluster_name')})",
    )
    tree.add_argument(
        "--trace-idle",
        metavar="DURATION",
        help=f"an episode ends after this quiet (default: {_default('trace_idle')})",
    )
    tree.add_argument(
        "--trace-max",
        metavar="DURATION",
        help=f"the longest episode (default: {_default('trace_max')})",
    )
    tree.add_argument(
        "--otlp-endpoint",
        metavar="URL",
        help="with -o otlp: where OTLP goes (default: from OTEL_EXPORTER_OTLP_*)",
    )
    tree.add_argument(
        "--otlp-protocol",
        choices=_PROTOCOLS,
        help="with -o otlp: OTLP over gRPC or HTTP (default: grpc)",
    )
    tree.add_argument(
        "--config", type=Path, metavar="FILE", help="YAML file of settings (default: none)"
    )
    tree.add_argument("-v", "--verbose", action="store_true", help="log what it does")


def _since(text: str) -> tuple[float, str]:
    from eventtrace.settings import parse_duration

    try:
        seconds = parse_duration(text)
    except ValueError:
        seconds = None
    if not isinstance(seconds, float | int) or seconds < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (e.g. 30m, 1h, 2h30m, 0)")
    return float(seconds), text


if __name__ == "__main__":  # pragma: no cover
    entry()
