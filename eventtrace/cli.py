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
import gc
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from eventtrace import __version__
from eventtrace.metrics import Metrics
from eventtrace.settings import Settings, SettingsError, load_settings
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
    args = parser.parse_args(argv)
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


def _parser(*, kubectl: bool = False) -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("settings (each also EVENTTRACE_<NAME> or --config)")
    group.add_argument("--config", type=Path, metavar="FILE", help="YAML file of settings")
    group.add_argument("--cluster-name", help="k8s.cluster.name on every span")
    group.add_argument("--output", choices=["otlp", "console", "jsonl"], help="where spans go")
    group.add_argument(
        "--otlp-endpoint", metavar="URL", help="overrides OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    group.add_argument("--otlp-protocol", choices=["grpc", "http/protobuf"])
    group.add_argument(
        "--trace-idle", metavar="DURATION", help="close a trace after this quiet (120s)"
    )
    group.add_argument("--trace-max", metavar="DURATION", help="longest trace (30m)")
    group.add_argument("--resolve-timeout", metavar="DURATION", help="reorder/owner wait (5s)")
    group.add_argument("--namespace", dest="namespaces", action="append", metavar="NS",
                       help="only events in NS (repeatable; default all)")  # fmt: skip
    for name in ("types", "reasons", "kinds"):
        for verb in ("include", "exclude"):
            group.add_argument(
                f"--{verb}-{name}", dest=f"{verb}_{name}", action="append", metavar="A,B",
                help=f"{verb} events by {name[:-1]} (comma-separated, repeatable)",
            )  # fmt: skip
    group.add_argument("--exclude-namespaces", action="append", metavar="A,B")
    group.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])

    parser = argparse.ArgumentParser(
        prog="eventtrace",
        description="Kubernetes Events as OpenTelemetry traces: one trace per rollout.",
    )
    parser.add_argument("--version", action="version", version=f"eventtrace {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser(
        "run", parents=[common], help="watch a cluster and export traces (OTLP by default)"
    )
    run.add_argument(
        "--kubeconfig", metavar="FILE", help="default: $KUBECONFIG, ~/.kube/config, in-cluster"
    )
    run.add_argument("--context", help="kubeconfig context (default: current)")
    run.add_argument(
        "--startup-timeout", metavar="DURATION", help="keep trying the API server this long (30s)"
    )
    run.add_argument(
        "--metrics-addr", metavar="HOST:PORT", help="/metrics, /healthz, /readyz (127.0.0.1:8080)"
    )
    run.add_argument(
        "--state",
        metavar="WHERE",
        help="configmap:NAMESPACE/NAME, file:PATH or none: what was exported, kept across "
        "restarts (default: in a pod, configmap:<its namespace>/eventtrace-state; "
        "elsewhere a file under $XDG_STATE_HOME/eventtrace/)",
    )
    run.add_argument(
        "--leader-election",
        metavar="LEASE",
        help="lease:NAMESPACE/NAME: only the replica holding the Lease exports (default none)",
    )

    replay = commands.add_parser(
        "replay",
        parents=[common],
        help="trace recorded events: kubectl get events -o json|yaml, -w, watch JSON lines",
    )
    replay.add_argument(
        "files", nargs="+", metavar="FILE", help="recordings and object dumps; - for stdin"
    )

    commands.add_parser(
        "demo",
        parents=[common],
        help="trace a built-in recording (a rollout, a pod stuck on a bad image)",
    )
    _tree_parser(commands, kubectl)
    return parser


def _tree_parser(commands: Any, kubectl: bool) -> None:
    """`eventtrace tree TARGET`, also `kubectl eventtrace TARGET` (the plugin)."""
    tree = commands.add_parser(
        "tree",
        prog="kubectl eventtrace" if kubectl else None,
        help="the causal waterfall of one object and what it owns: deploy/web, sts/db, node/x",
        description="The events of one object and of everything it owns (a Deployment's "
        "ReplicaSets and their Pods, a StatefulSet's Pods, ...), as one waterfall per "
        "episode, read from the cluster with field selectors. As a kubectl plugin: "
        "kubectl eventtrace deploy/web -n shop.",
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
    tree.add_argument("--context", help="kubeconfig context (default: current)")
    tree.add_argument(
        "--kubeconfig", metavar="FILE", help="default: $KUBECONFIG, ~/.kube/config, in-cluster"
    )
    tree.add_argument(
        "--since",
        type=_since,
        default=(3600.0, "1h"),
        metavar="DURATION",
        help="events whose last occurrence is newer than this (default 1h; 0: all)",
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
        help="the waterfall (default), JSON lines, or OTLP to a backend",
    )
    tree.add_argument(
        "--wide",
        action="store_true",
        help="print messages in full on a terminal too (piped they always are)",
    )
    tree.add_argument("--cluster-name", help="k8s.cluster.name on every span")
    tree.add_argument(
        "--trace-idle", metavar="DURATION", help="an episode ends after this quiet (120s)"
    )
    tree.add_argument("--trace-max", metavar="DURATION", help="longest episode (30m)")
    tree.add_argument("--otlp-endpoint", metavar="URL", help="with -o otlp")
    tree.add_argument("--otlp-protocol", choices=["grpc", "http/protobuf"])
    tree.add_argument("--config", type=Path, metavar="FILE", help="YAML file of settings")
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
