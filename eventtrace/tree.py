"""`eventtrace tree TARGET`, also `kubectl eventtrace TARGET`: the causal waterfall of one
object and what it owns.

It reads only that object's tree, never the whole cluster's events: the object (found
through discovery, custom resources included), its owners up to the root (GET), what it
owns (ReplicaSets, Jobs, Pods of its namespace whose ownerReferences lead to it, the list
narrowed by its selector where it has one), then the events of each of those objects, by
field selector (`involvedObject.kind=…,involvedObject.name=…`, or `regarding.…` on
events.k8s.io). Objects that are gone (a Pod deleted by a rollout) are still found from
their controllers' messages ("Deleted pod: NAME"), and their events listed by name too.
Everything then goes through the same pipeline as `replay` (`trace_recording`), and out
as the console waterfall, JSON lines or OTLP.

With `--watch` it stays on a watch of events in the object's namespace (of the object
itself if it has none), keeps those of its tree and redraws: in place on a terminal, by
appending the episodes that changed on a pipe.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import signal
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml

from eventtrace.core.model import EventState, KubeObject, ObjectRef, Rejected, Span
from eventtrace.core.owners import ObjectIndex, owner_hint
from eventtrace.core.pipeline import trace_recording
from eventtrace.export import open_sink
from eventtrace.export.console import Style, plural, render_trace, style_for
from eventtrace.metrics import Metrics
from eventtrace.settings import Settings
from eventtrace.source.discovery import Discovery, TargetError, split_target
from eventtrace.source.frames import JSON, METADATA, METADATA_LIST, JsonFrames
from eventtrace.source.kube import (
    CORE_EVENTS,
    TRANSPORT_ERRORS,
    WORKLOADS,
    ApiError,
    Expired,
    KubeApi,
    KubeConfigError,
    Resource,
    StreamStalled,
    _kubeconfig_path,
    error_from_status,
    load_client,
)
from eventtrace.source.parse import parse_event, parse_object

log = logging.getLogger("eventtrace.tree")

LIST_PAGE = 500
CONCURRENT_REQUESTS = 8
WATCH_SECONDS = 300  # one watch request; then it goes on from where it was
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")

# What each kind owns that has events worth showing. Kinds not named here (custom
# resources: an Argo Rollout owns ReplicaSets, an operator's CR owns a StatefulSet) are
# looked at for every namespaced workload kind.
_CHILD_KINDS: dict[str, tuple[str, ...]] = {
    "Deployment": ("ReplicaSet", "Pod"),
    "ReplicaSet": ("Pod",),
    "StatefulSet": ("Pod",),
    "DaemonSet": ("Pod",),
    "Job": ("Pod",),
    "CronJob": ("Job", "Pod"),
    "Pod": (),
    "Node": (),
    "Namespace": (),
}
# Kinds whose spec.selector selects what they own (narrowing the lists).
_SELECTING = frozenset({"Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job"})
_WORKLOAD_BY_KIND = {resource.kind: resource for resource in WORKLOADS}

Key = tuple[str, str, str]  # kind, namespace, name


@dataclass(frozen=True, slots=True)
class TreeOptions:
    words: list[str]
    namespace: str | None = None  # None: the kubeconfig context's
    all_namespaces: bool = False
    since_seconds: float = 3600.0  # 0: every event the server still has
    since_text: str = "1h"
    watch: bool = False
    output: str = "console"
    wide: bool = False


@dataclass(slots=True)
class Target:
    resource: Resource
    ref: ObjectRef  # with its uid when it exists
    raw: dict[str, Any] | None  # None: not found (deleted?)
    missing: str = ""  # the API server's NotFound, when it is gone

    @property
    def label(self) -> str:
        return self.ref.display_name


class TreeFailed(Exception):
    """The one line to print (kubectl's wording where kubectl has one); exit 1."""


async def tree(options: TreeOptions, settings: Settings, metrics: Metrics) -> int:
    """The `tree` command; its exit code."""
    if options.watch and options.output != "console":
        print(
            "error: --watch draws the tree in a terminal: use it with -o console", file=sys.stderr
        )
        return 2
    try:
        client, _ = await load_client(settings.kubeconfig, settings.context)
    except KubeConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    api = KubeApi(client)
    try:
        return await _tree(api, options, settings, metrics)
    except (TreeFailed, TargetError) as error:
        print(str(error), file=sys.stderr)
        return 1
    except ApiError as error:
        print(server_error(error), file=sys.stderr)
        return 1
    except TRANSPORT_ERRORS as error:
        print(
            f"error: cannot reach the API server at {api.server}: {_short(error)}", file=sys.stderr
        )
        return 1
    finally:
        await api.close()


async def _tree(api: KubeApi, options: TreeOptions, settings: Settings, metrics: Metrics) -> int:
    namespace = options.namespace or default_namespace(settings.kubeconfig, settings.context)
    discovery = Discovery(api)
    kind_word, name = split_target(options.words)
    resource = await discovery.resource(kind_word)
    # core/v1: its involvedObject.* field selectors work on every server version.
    events = CORE_EVENTS
    target = await find_target(api, resource, name, namespace, options.all_namespaces)
    collector = Collector(api, discovery, events, target, settings)
    await collector.collect()
    if target.raw is None and not collector.tree_states(0):
        raise TreeFailed(f"Error from server (NotFound): {target.missing}")
    if target.raw is None:
        print(
            f"note: {target.label} is gone ({target.missing}); "
            "its tree as the events it left tell it",
            file=sys.stderr,
        )
    if options.watch:
        return await Watch(collector, options).run()
    spans = collector.spans(options.since_seconds)
    if not spans:
        window = f" in the last {options.since_text}" if options.since_seconds else ""
        where = f" in namespace {target.ref.namespace}" if target.ref.namespace else ""
        print(f"No events for {target.label}{where}{window}.", file=sys.stderr)
        return 0
    if options.output == "console":
        style = style_for(sys.stdout, wide=options.wide)
        for _, text in render_traces(spans, style):
            sys.stdout.write(text + "\n")
        sys.stdout.flush()
        return 0
    return await _export(spans, options.output, settings, metrics)


async def _export(spans: list[Span], output: str, settings: Settings, metrics: Metrics) -> int:
    """JSON lines or OTLP, through the same sink as `run` and `replay`."""
    async with open_sink(output, settings, metrics) as sink:
        await sink.submit_burst(spans)
    if sink.lost:
        print(f"error: {sink.lost} of {len(spans)} spans could not be delivered", file=sys.stderr)
        return 1
    return 0


def server_error(error: ApiError) -> str:
    """As kubectl says it: `Error from server (Forbidden): pods "x" is forbidden: …`."""
    return f"Error from server ({error.reason or error.status}): {error.message}"


def default_namespace(kubeconfig: str | None, context: str | None) -> str:
    """The namespace of the kubeconfig's context (`--context`, else the current one), the
    pod's own in a cluster, else `default`: as kubectl chooses."""
    try:
        path = _kubeconfig_path(kubeconfig)
    except KubeConfigError:
        return "default"  # load_client says what is wrong
    try:
        if path is None:
            return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "default"
        config = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return "default"
    if not isinstance(config, dict):
        return "default"
    chosen = context or config.get("current-context")
    for entry in config.get("contexts") or []:
        if isinstance(entry, dict) and entry.get("name") == chosen:
            return str((entry.get("context") or {}).get("namespace") or "default")
    return "default"


async def find_target(
    api: KubeApi, resource: Resource, name: str, namespace: str, all_namespaces: bool
) -> Target:
    """The object, from a GET (or, with -A, a list by name across namespaces)."""
    missing = f'{resource.label} "{name}" not found'
    if all_namespaces and resource.namespaced:
        items, _ = await list_all(
            api, resource.collection(None), {"fieldSelector": f"metadata.name={name}"}
        )
        if len(items) > 1:
            found_in = ", ".join(sorted(str(i["metadata"].get("namespace")) for i in items))
            raise TreeFailed(
                f"error: {resource.kind.lower()}/{name} is in several namespaces ({found_in}): "
                "choose one with -n NAMESPACE"
            )
        if not items:
            ref = ObjectRef(resource.kind, name, "", "", resource.api_version)
            return Target(resource, ref, None, missing)
        raw = items[0]
    else:
        scope = namespace if resource.namespaced else ""
        try:
            raw = await api.get(resource.item(scope, name))
        except ApiError as error:
            if error.status != 404:
                raise
            ref = ObjectRef(resource.kind, name, scope, "", resource.api_version)
            return Target(resource, ref, None, error.message or missing)
    obj = parse_object(raw, "get", kind=resource.kind)
    if isinstance(obj, Rejected):
        raise TreeFailed(f"error: {obj}")
    return Target(resource, obj.ref, raw)


async def list_all(
    api: KubeApi, path: str, query: dict[str, str], *, accept: str = JSON
) -> tuple[list[dict[str, Any]], int]:
    """Every item of a list, page by page; and the list's resourceVersion."""
    items: list[dict[str, Any]] = []
    page_query = {**query, "limit": str(LIST_PAGE)}
    version = 0
    while True:
        body = await api.get(path, page_query, accept=accept)
        meta = body.get("metadata") or {}
        items.extend(item for item in body.get("items") or [] if isinstance(item, dict))
        text = str(meta.get("resourceVersion") or "")
        version = int(text) if text.isdigit() else version
        token = meta.get("continue")
        if not token:
            return items, version
        page_query = {**query, "limit": str(LIST_PAGE), "continue": str(token)}


class Collector:
    """The target's tree: its objects in an ObjectIndex, and the events of each."""

    def __init__(
        self,
        api: KubeApi,
        discovery: Discovery,
        events: Resource,
        target: Target,
        settings: Settings,
    ) -> None:
        self.api = api
        self.discovery = discovery
        self.events = events
        self.target = target
        self.settings = settings
        self.index = ObjectIndex()
        self.objects: dict[str, KubeObject] = {}  # by uid
        self.states: dict[str, EventState] = {}  # the newest state of each event, by uid
        self.listed: set[Key] = set()  # objects whose events have been listed
        self.missing: set[Key] = set()  # objects a GET did not find (or may not read)
        self.resource_version = 0  # from which a watch misses nothing of the lists
        self._requests = asyncio.Semaphore(CONCURRENT_REQUESTS)
        self._warned: set[str] = set()

    # -- the initial lists ----------------------------------------------------------------

    async def collect(self) -> None:
        target = self.target
        if target.raw is not None:
            obj = self.keep(target.raw, target.resource)
            if obj is not None:
                await self.resolve(obj.ref)  # its owners, up to the root of its traces
            await self.descendants(target.raw)
        await self.list_tree_events()

    async def list_tree_events(self) -> None:
        """The events of the tree's objects; then of the objects that are gone, which
        their controllers' messages name ("Deleted pod: X"), and so on down."""
        await self.list_events(self.tree_keys())
        while True:
            named = {
                hint[0]
                for state in list(self.states.values())
                if (hint := owner_hint(state)) is not None and self.owned(state.involved)
            }
            new = sorted(named - self.listed)
            if not new:
                return
            await self.list_events(new)

    def tree_keys(self) -> list[Key]:
        """The objects of the tree known from the API: the target and what it owns."""
        keys = [self.target.ref.key]
        keys += [obj.ref.key for obj in self.objects.values() if self.owned(obj.ref)]
        return sorted(set(keys))

    async def descendants(self, raw: dict[str, Any]) -> None:
        """What the target owns, through ownerReferences, from lists of its namespace."""
        ref = self.target.ref
        if not ref.namespace:
            return
        kinds = _CHILD_KINDS.get(ref.kind)
        if kinds is None:  # a custom resource, or a kind without a rule: look at them all
            kinds = tuple(r.kind for r in WORKLOADS if r.namespaced and r.kind != ref.kind)
        query = {}
        if ref.kind in _SELECTING and (selector := label_selector(raw)):
            query["labelSelector"] = selector
        listed = await asyncio.gather(
            *(self._list_objects(_WORKLOAD_BY_KIND[kind], ref.namespace, query) for kind in kinds)
        )
        candidates = [obj for objects in listed for obj in objects]
        tree = {ref.uid}
        while True:  # owners before what they own, whatever order the lists came in
            found = [
                obj
                for obj in candidates
                if obj.ref.uid not in tree and any(o.ref.uid in tree for o in obj.owners)
            ]
            if not found:
                break
            for obj in found:
                tree.add(obj.ref.uid)
                self.put(obj)

    async def _list_objects(
        self, resource: Resource, namespace: str, query: dict[str, str]
    ) -> list[KubeObject]:
        async with self._requests:
            try:
                path = resource.collection(namespace)  # what they own: their metadata
                items, _ = await list_all(self.api, path, query, accept=METADATA_LIST)
            except ApiError as error:
                if error.status not in (401, 403, 404):
                    raise
                self._warn_once(
                    resource.label,
                    f"warning: cannot list {resource.label} ({error.message}): their events "
                    "are found from their controllers' messages only",
                )
                return []
        objects = []
        for item in items:
            obj = parse_object(item, "list", kind=resource.kind, api_version=resource.api_version)
            if isinstance(obj, Rejected):
                log.warning("%s", obj)
            else:
                objects.append(obj)
        return objects

    async def list_events(self, keys: Iterable[Key]) -> None:
        """The events of each object, by field selector, concurrently."""
        todo = [key for key in keys if key not in self.listed]
        self.listed.update(todo)
        await asyncio.gather(*(self._list_events_of(key) for key in todo))

    async def _list_events_of(self, key: Key) -> None:
        kind, namespace, name = key
        query = {"fieldSelector": about(self.events, kind, name)}
        async with self._requests:
            items, version = await list_all(
                self.api, self.events.collection(namespace or None), query
            )
        if version:
            self.resource_version = min(self.resource_version or version, version)
        for item in items:
            self.take(item, "list")

    def take(self, raw: Any, where: str) -> EventState | None:
        state = self.parse(raw, where)
        if state is not None:
            self.add(state)
        return state

    def parse(self, raw: Any, where: str) -> EventState | None:
        state = parse_event(raw, where, max_message_bytes=self.settings.max_message_bytes)
        if isinstance(state, Rejected):
            log.warning("%s", state)
            return None
        return state

    def add(self, state: EventState) -> None:
        """Keep the newest state of each event; learn who made whom from its message."""
        current = self.states.get(state.uid)
        if current is None or state.sort_key > current.sort_key:
            self.states[state.uid] = state
        self.index.learn_from(state)

    # -- objects ----------------------------------------------------------------------------

    def keep(self, raw: dict[str, Any], resource: Resource) -> KubeObject | None:
        obj = parse_object(raw, "get", kind=resource.kind, api_version=resource.api_version)
        if isinstance(obj, Rejected):
            log.warning("%s", obj)
            return None
        self.put(obj)
        return obj

    def put(self, obj: KubeObject) -> None:
        self.index.put(obj)
        self.objects[obj.ref.uid or "/".join(obj.ref.key)] = obj

    async def resolve(self, ref: ObjectRef) -> None:
        """GET what the owner chain of `ref` lacks, as `run`'s resolver does: each object
        once (a 404 or 403 is remembered)."""
        for _ in range(32):  # each round reads one more level up: the depth of a chain
            unknown = [u for u in self.index.unknown_owners(ref) if u.key not in self.missing]
            if not unknown:
                return
            for wanted in unknown:
                await self._fetch(wanted)

    async def _fetch(self, ref: ObjectRef) -> None:
        resource = await self.discovery.for_kind(ref.api_version, ref.kind)
        if resource is None:
            self.missing.add(ref.key)
            return
        try:
            async with self._requests:
                item = resource.item(ref.namespace, ref.name)
                raw = await self.api.get(item, accept=METADATA)  # an owner: its metadata
        except ApiError as error:
            self.missing.add(ref.key)
            if error.status == 403:
                self._warn_once(resource.label, f"warning: {error.message}")
            return
        except TRANSPORT_ERRORS as error:
            log.debug("GET %s/%s failed: %s", resource.label, ref.name, error)
            self.missing.add(ref.key)  # not asked again: one object is not worth a wait
            return
        obj = self.keep(raw, resource)
        if obj is None or (ref.uid and obj.ref.uid != ref.uid and ref.uid != ref.name):
            self.missing.add(ref.key)  # another object of that name: the one meant is gone

    def _warn_once(self, what: str, message: str) -> None:
        if what not in self._warned:
            self._warned.add(what)
            print(message, file=sys.stderr)

    # -- the tree's events ------------------------------------------------------------------

    def owned(self, ref: ObjectRef) -> bool:
        """Is the target on the owner chain of `ref` (the target itself included)? When it
        is gone, any object of its kind and name is it (in any namespace, with -A)."""
        target = self.target.ref
        for link in self.index.chain(ref):
            if target.uid:
                if link.ref.uid == target.uid:
                    return True
            elif (link.ref.kind, link.ref.name) == (target.kind, target.name) and (
                link.ref.namespace == target.namespace or not target.namespace
            ):
                return True
        return False

    def tree_states(self, since_seconds: float, now_ns: int | None = None) -> list[EventState]:
        oldest = 0
        if since_seconds:
            oldest = (now_ns or time.time_ns()) - int(since_seconds * 1e9)
        return [
            state
            for state in self.states.values()
            if state.last_ns >= oldest and self.owned(state.involved)
        ]

    def spans(self, since_seconds: float, now_ns: int | None = None) -> list[Span]:
        states = self.tree_states(since_seconds, now_ns)
        if not states:
            return []
        spans, _ = trace_recording(states, list(self.objects.values()), self.settings.trace_rules)
        return spans


def about(events: Resource, kind: str, name: str) -> str:
    """The field selector of the events about one object (by name: every incarnation)."""
    field = "regarding" if events.group == "events.k8s.io" else "involvedObject"
    return f"{field}.kind={kind},{field}.name={name}"


def label_selector(raw: dict[str, Any]) -> str:
    """spec.selector as a label selector's text (`app=web,tier in (a,b)`), or ""."""
    selector = (raw.get("spec") or {}).get("selector")
    if not isinstance(selector, dict):
        return ""
    terms = [f"{key}={value}" for key, value in sorted((selector.get("matchLabels") or {}).items())]
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression.get("key"), expression.get("operator")
        values = ",".join(str(value) for value in expression.get("values") or [])
        if operator == "In":
            terms.append(f"{key} in ({values})")
        elif operator == "NotIn":
            terms.append(f"{key} notin ({values})")
        elif operator == "Exists":
            terms.append(str(key))
        elif operator == "DoesNotExist":
            terms.append(f"!{key}")
        else:
            return ""  # unknown: do not narrow rather than miss
    return ",".join(terms)


def render_traces(spans: list[Span], style: Style) -> list[tuple[str, str]]:
    """(trace id, waterfall) of each episode, oldest first: the newest is last, nearest
    the prompt."""
    traces: dict[str, list[Span]] = {}
    for span in spans:
        traces.setdefault(span.trace_id, []).append(span)
    ordered = sorted(traces.items(), key=lambda item: (min(s.start_ns for s in item[1]), item[0]))
    return [
        (trace_id, render_trace(members, width=style.width, color=style.color))
        for trace_id, members in ordered
    ]


@dataclass(slots=True)
class Watch:
    """`--watch`: the tree, redrawn as its events come."""

    collector: Collector
    options: TreeOptions
    out: TextIO = field(default_factory=lambda: sys.stdout)
    _printed: dict[str, str] = field(default_factory=dict)
    _said_waiting: bool = False

    async def run(self) -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        self.draw()
        watching = asyncio.create_task(self._watch())
        stopping = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({watching, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (watching, stopping):
                task.cancel()
            await asyncio.gather(watching, stopping, return_exceptions=True)
        failed = watching.exception() if watching.done() and not watching.cancelled() else None
        if failed is not None:
            raise failed
        if self.tty:
            self.out.write("\n")
        self.out.flush()
        return 0

    @property
    def tty(self) -> bool:
        try:
            return self.out.isatty()
        except ValueError:
            return False

    def draw(self) -> None:
        options, collector = self.options, self.collector
        style = style_for(self.out, wide=options.wide)
        traces = render_traces(collector.spans(options.since_seconds), style)
        target = collector.target
        where = f" in {target.ref.namespace}" if target.ref.namespace else ""
        if self.tty:
            rows = shutil.get_terminal_size().lines
            lines = "".join(text + "\n" for _, text in traces).splitlines()
            if not traces:
                lines = [f"No events for {target.label}{where} yet; waiting for them."]
            shown = lines[-max(1, rows - 2) :]
            status = (
                f"watching {target.label}{where} "
                f"({plural(len(traces), 'episode')}) · Ctrl-C to quit"
            )
            if style.color:
                status = f"\033[2m{status}\033[0m"
            self.out.write("\033[H\033[2J" + "\n".join(shown) + "\n" + status)
        else:
            for trace_id, text in traces:
                if self._printed.get(trace_id) != text:
                    self.out.write(text + "\n")
                    self._printed[trace_id] = text
            if not traces and not self._said_waiting:
                print(f"No events for {target.label}{where} yet; watching.", file=sys.stderr)
                self._said_waiting = True
        self.out.flush()

    async def _watch(self) -> None:
        collector = self.collector
        ref = collector.target.ref
        query = {"watch": "true", "timeoutSeconds": str(WATCH_SECONDS)}
        if not ref.namespace:  # a Node: its own events, wherever they are
            query["fieldSelector"] = about(collector.events, ref.kind, ref.name)
        path = collector.events.collection(ref.namespace or None)
        frames = JsonFrames()
        failures = 0
        while True:
            if collector.resource_version:
                query["resourceVersion"] = str(collector.resource_version)
            try:
                batches = self.collector.api.stream(
                    path, query, inactivity=WATCH_SECONDS + 60, deadline=WATCH_SECONDS + 60
                )
                async for lines in batches:
                    changed = False
                    for line in lines:
                        if not line.strip():
                            continue
                        frame = frames.frame(line)
                        if frame.type == "ERROR":
                            raise error_from_status(frame.object)
                        if frame.resource_version.isdigit():
                            collector.resource_version = int(frame.resource_version)
                        if frame.type in ("ADDED", "MODIFIED") and frame.object is not None:
                            changed = await self._take(frame.object) or changed
                    failures = 0
                    if changed:
                        self.draw()
            except Expired:
                collector.resource_version = 0
                collector.listed.clear()
                await collector.list_tree_events()
                self.draw()
            except ApiError as error:
                if error.status in (401, 403):
                    raise
                failures += 1
                pause = min(30, 2**failures)
                log.warning("watch of events: %s; again in %ds", error, pause)
                await asyncio.sleep(pause)
            except (StreamStalled, *TRANSPORT_ERRORS) as error:
                failures += 1
                pause = min(30, 2**failures)
                log.warning("watch of events: %s; again in %ds", _short(error), pause)
                await asyncio.sleep(pause)

    async def _take(self, raw: Any) -> bool:
        collector = self.collector
        state = collector.parse(raw, "watch")
        if state is None:
            return False
        collector.index.learn_from(state)
        await collector.resolve(state.involved)
        if not collector.owned(state.involved):
            return False  # another object's: not kept (a busy namespace, a long watch)
        collector.add(state)
        return True


def _short(error: BaseException) -> str:
    text = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
