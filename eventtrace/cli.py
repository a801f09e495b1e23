"""The command line: `eventtrace run | replay FILE… | demo`.

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
    code = main()
    # Every span is flushed and every file closed by now. Freeing the heap object by object
    # at interpreter exit (the object cache, the event counts: hundreds of thousands) only
    # delays the pod's exit (measured: 0.4 s with 30 000 objects): leave that to the OS.
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing more to say
            stream.flush()
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
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


def _parser() -> argparse.ArgumentParser:
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
    return parser


if __name__ == "__main__":  # pragma: no cover
    entry()
