"""Property tests of the pure core: arrival order never leaks into the spans."""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from eventtrace.core.episodes import TraceRules
from eventtrace.core.model import EventState, KubeObject, Span, SpanKind
from eventtrace.core.owners import names
from eventtrace.core.pipeline import Pipeline, trace_recording
from eventtrace.source.parse import parse_event, parse_object
from helpers import T0, core_event, flat, kube_object, ref, uid_of

RULES = TraceRules("prop", trace_idle_ns=120 * 10**9, trace_max_ns=900 * 10**9)


@st.composite
def clusters(draw: st.DrawFn, all_known: bool = False) -> tuple[list[EventState], list[KubeObject]]:
    """A few Deployments with ReplicaSets and Pods, some objects unknown (deleted) unless
    `all_known`, pod events repeating as count bumps with some updates missed, and
    kubelet Node events."""
    raws: list[dict[str, Any]] = []
    objects: list[dict[str, Any]] = []
    time = st.integers(min_value=0, max_value=1200)
    for d in range(draw(st.integers(1, 2))):
        deploy = ref("Deployment", f"app{d}", api="apps/v1")
        objects.append(kube_object("Deployment", f"app{d}", api="apps/v1"))
        for r in range(draw(st.integers(1, 2))):
            rs_name = f"app{d}-rs{r}"
            rs = ref("ReplicaSet", rs_name, api="apps/v1")
            if all_known or draw(st.booleans()):
                objects.append(kube_object("ReplicaSet", rs_name, deploy, api="apps/v1"))
            verb = draw(st.sampled_from(["up", "down"]))
            raws.append(core_event(f"{rs_name}.scale", deploy, "ScalingReplicaSet",
                                   f"Scaled {verb} replica set {rs_name} to 1",
                                   at=draw(time), component="deployment-controller"))  # fmt: skip
            for p in range(draw(st.integers(1, 3))):
                pod_name = f"{rs_name}-p{p}"
                pod = ref("Pod", pod_name)
                if all_known or draw(st.booleans()):
                    objects.append(kube_object("Pod", pod_name, rs))
                raws.append(core_event(f"{pod_name}.create", rs, "SuccessfulCreate",
                                       f"Created pod: {pod_name}", at=draw(time),
                                       component="replicaset-controller"))  # fmt: skip
                for reason in draw(
                    st.lists(
                        st.sampled_from(["Pulling", "BackOff", "Started"]), max_size=3, unique=True
                    )
                ):
                    first = draw(time)
                    counts = draw(st.lists(st.integers(1, 6), min_size=1, max_size=4, unique=True))
                    for count in counts:  # the states the watch happened to deliver
                        raws.append(core_event(f"{pod_name}.{reason}", pod, reason, f"{reason} {pod_name}",
                                               at=first, last=first + 7 * (count - 1), count=count,
                                               host="node-a", type="Warning" if reason == "BackOff" else "Normal"))  # fmt: skip
    node = {"kind": "Node", "name": "node-a", "uid": "node-a", "apiVersion": "v1"}
    for n in range(draw(st.integers(0, 2))):
        raws.append(
            core_event(
                f"node-a.{n}",
                node,
                "NodeReady",
                "Node node-a status is now: NodeReady",
                at=draw(time),
            )
        )
    states = [parse_event(raw, "test") for raw in raws]
    parsed = [parse_object(raw, "test") for raw in objects]
    assert all(isinstance(state, EventState) for state in states)
    assert all(isinstance(obj, KubeObject) for obj in parsed)
    return states, parsed  # type: ignore[return-value]


def _run(states: list[EventState], objects: list[KubeObject]) -> list:
    spans, _ = trace_recording(states, objects, RULES)
    return sorted(spans, key=lambda span: span.span_id)


@settings(max_examples=150, deadline=None)
@given(clusters(), st.randoms(use_true_random=False))
def test_any_permutation_gives_byte_identical_spans(cluster, rnd) -> None:
    states, objects = cluster
    reference = _run(states, objects)
    shuffled_states, shuffled_objects = list(states), list(objects)
    rnd.shuffle(shuffled_states)
    rnd.shuffle(shuffled_objects)
    assert _run(shuffled_states, shuffled_objects) == reference
    assert _run(states[::-1], objects[::-1]) == reference


@settings(max_examples=150, deadline=None)
@given(clusters())
def test_every_occurrence_gives_exactly_one_span_and_ids_are_unique(cluster) -> None:
    states, objects = cluster
    spans = _run(states, objects)
    assert len({span.span_id for span in spans}) == len(spans)
    highest: dict[str, int] = defaultdict(int)
    for state in states:
        highest[state.uid] = max(highest[state.uid], state.count)
    covered: dict[str, int] = defaultdict(int)
    for span in spans:
        if span.kind is SpanKind.EVENT:
            covered[str(span.attribute("k8s.event.uid"))] += int(
                span.attribute("eventtrace.occurrences") or 0
            )
    assert covered == highest


@settings(max_examples=100, deadline=None)
@given(clusters())
def test_every_parent_is_in_the_same_trace_and_each_trace_has_one_root(cluster) -> None:
    states, objects = cluster
    spans = _run(states, objects)
    by_id = {span.span_id: span for span in spans}
    roots: dict[str, int] = defaultdict(int)
    for span in spans:
        if span.parent_id is None:
            roots[span.trace_id] += 1
            assert span.kind is SpanKind.OBJECT
        else:
            assert by_id[span.parent_id].trace_id == span.trace_id
    assert set(roots.values()) == {1}
    root_of = {span.trace_id: span for span in spans if span.parent_id is None}
    for span in spans:
        root = root_of[span.trace_id]
        assert root.start_ns <= span.start_ns <= span.end_ns <= root.end_ns


@settings(max_examples=100, deadline=None)
@given(clusters())
def test_episodes_respect_the_idle_gap_and_trace_max(cluster) -> None:
    """Within a trace, the occurrence ranges of its event spans, in order, each begin less
    than trace_idle after the furthest reach of those before; no trace spans more than
    trace_max, however far back a count reaches."""
    states, objects = cluster
    spans = _run(states, objects)
    ranges: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for span in spans:
        if span.kind is SpanKind.EVENT:
            ranges[span.trace_id].append((span.start_ns, span.end_ns))
    for trace in ranges.values():
        trace.sort()
        reach = trace[0][1]
        for start, end in trace[1:]:
            assert start - reach < RULES.trace_idle_ns
            reach = max(reach, end)
    for trace_id in ranges:
        in_trace = [span for span in spans if span.trace_id == trace_id]
        length = max(s.end_ns for s in in_trace) - min(s.start_ns for s in in_trace)
        assert length <= RULES.trace_max_ns


@settings(max_examples=100, deadline=None)
@given(clusters(all_known=True), st.randoms(use_true_random=False))
def test_live_arrivals_out_of_order_within_the_reorder_window_change_nothing(cluster, rnd) -> None:
    """Live, each state arrives up to one reorder window late relative to its place in
    occurrence order; releasing as the window passes gives exactly the replay's spans.
    (Objects are known, as the workload watches make them live. Owners learned from a
    controller's message can only be used live once that message has arrived.)"""
    states, objects = cluster
    reference = _run(states, objects)
    window, step = 50_000_000, 1_000_000
    natural = sorted(states, key=lambda state: state.sort_key)
    arrivals = sorted(
        (rank * step + rnd.randrange(window), position, state)
        for position, (rank, state) in enumerate(enumerate(natural))
    )
    pipeline = Pipeline(RULES, reorder_window_ns=window)
    for obj in objects:
        pipeline.add_object(obj)
    spans = []
    for arrived, _, state in arrivals:
        spans += flat(pipeline.release(arrived))
        pipeline.offer(state, arrived)
    spans += flat(pipeline.drain(now=arrivals[-1][0] + window))
    assert sorted(spans, key=lambda span: span.span_id) == reference


@settings(max_examples=100, deadline=None)
@given(clusters(), st.randoms(use_true_random=False))
def test_a_settled_list_needs_no_reorder_window(cluster, rnd) -> None:
    """A list comes in the API server's order (by name), not by time. Once it is complete
    and settled, releasing it at the instant it came in, far inside the window, gives
    exactly the replay's spans; before the settle nothing is due."""
    states, objects = cluster
    reference = _run(states, objects)
    listed = list(states)
    rnd.shuffle(listed)
    window, listed_at = 3600 * 10**9, 7
    pipeline = Pipeline(RULES, reorder_window_ns=window)
    for obj in objects:
        pipeline.add_object(obj)
    for state in listed:
        pipeline.offer(state, listed_at)
    assert flat(pipeline.release(listed_at)) == []
    pipeline.settle(pipeline.arrivals)
    spans = flat(pipeline.release(listed_at))
    assert pipeline.pending == 0
    spans += flat(pipeline.drain(now=listed_at))
    assert sorted(spans, key=lambda span: span.span_id) == reference


@settings(max_examples=2000, deadline=None)
@given(
    st.text(alphabet="ab1-._ :/é\t", max_size=24),
    st.text(alphabet="ab1-.", min_size=1, max_size=4),
)
def test_names_is_the_whole_word_rule(message: str, name: str) -> None:
    """`names` (hand-written for speed) agrees with the rule as a regular expression:
    NAME not preceded by a word character, '.' or '-', and not followed by a word
    character, '-', or a '.' that goes on with a word character."""
    rule = re.search(rf"(?<![\w.-]){re.escape(name)}(?![\w-]|\.\w)", message) is not None
    assert names(message, name) == rule


# -- identity by uid, counts reaching far back, order within a second (DESIGN §1) ------------

DAY = 86_400


@st.composite
def recreated_pods(draw: st.DrawFn) -> tuple[list[EventState], list[KubeObject]]:
    """A StatefulSet whose pods are deleted and recreated under the same names (a new uid
    each time), the newest incarnation known or not; its controller's events counted
    over days; kubelet's events of one container within one second, named as the
    recorder names them (`<pod>.<hex UnixNano>`)."""
    sts = ref("StatefulSet", "db", api="apps/v1")
    raws: list[dict[str, Any]] = []
    objects = [kube_object("StatefulSet", "db", api="apps/v1")]
    start = 10 * DAY
    for p in range(draw(st.integers(1, 2))):
        name = f"db-{p}"
        lives = draw(st.integers(1, 3))
        created_at = [start + draw(st.integers(0, 600)) + 300 * life for life in range(lives)]
        for life, at in enumerate(created_at):
            pod = {**ref("Pod", name), "uid": uid_of("Pod", name, str(life))}
            if life == lives - 1 and draw(st.booleans()):
                obj = kube_object("Pod", name, sts)
                obj["metadata"]["uid"] = pod["uid"]
                objects.append(obj)
            second = at + 1
            nanos = sorted(draw(st.lists(st.integers(0, 999_999_999), min_size=3, max_size=3,
                                         unique=True)))  # fmt: skip
            order = draw(st.permutations(["Pulled", "Created", "Started"]))
            for reason, nano in zip(order, nanos, strict=True):
                stamp_ns = (int(T0.timestamp()) + second) * 10**9 + nano
                raws.append(core_event(f"{name}.{stamp_ns:x}", pod, reason, f"{reason} {life}",
                                       at=second))  # fmt: skip
            if draw(st.booleans()):
                raws.append(core_event(f"{name}-{life}.kill", pod, "Killing", "Stopping",
                                       at=at + 200))  # fmt: skip
        first_back = draw(st.integers(1, 12)) * DAY
        for verb, when in (("create", created_at[-1]), ("delete", created_at[-1] - 2)):
            raws.append(core_event(f"db.{verb}-{name}", sts,
                                   "SuccessfulCreate" if verb == "create" else "SuccessfulDelete",
                                   f"{verb} Pod {name} in StatefulSet db successful",
                                   at=when - first_back, last=when, count=lives + 5,
                                   component="statefulset-controller"))  # fmt: skip
    states = [parse_event(raw, "test") for raw in raws]
    parsed = [parse_object(raw, "test") for raw in objects]
    assert all(isinstance(state, EventState) for state in states)
    assert all(isinstance(obj, KubeObject) for obj in parsed)
    return states, parsed  # type: ignore[return-value]


@settings(max_examples=100, deadline=None)
@given(recreated_pods(), st.randoms(use_true_random=False))
def test_recreated_pods_any_permutation_gives_byte_identical_spans(cluster, rnd) -> None:
    states, objects = cluster
    reference = _run(states, objects)
    shuffled_states, shuffled_objects = list(states), list(objects)
    rnd.shuffle(shuffled_states)
    rnd.shuffle(shuffled_objects)
    assert _run(shuffled_states, shuffled_objects) == reference


@settings(max_examples=100, deadline=None)
@given(recreated_pods())
def test_each_incarnation_is_its_own_object_span_and_events_keep_their_uid(cluster) -> None:
    states, objects = cluster
    spans = _run(states, objects)
    involved = {state.uid: state.involved for state in states}
    by_id = {span.span_id: span for span in spans}
    for span in spans:
        if span.kind is SpanKind.EVENT:
            uid = involved[str(span.attribute("k8s.event.uid"))].uid
            assert span.attribute("k8s.object.uid") == uid
            assert by_id[str(span.parent_id)].attribute("k8s.object.uid") == uid
    pods = [(s.trace_id, s.attribute("k8s.object.uid")) for s in spans if s.name.startswith("pod/")]
    assert len(pods) == len(set(pods))


@settings(max_examples=100, deadline=None)
@given(recreated_pods())
def test_counts_from_days_back_are_clipped_to_trace_max_and_say_when_they_began(cluster) -> None:
    states, objects = cluster
    spans = _run(states, objects)
    first = {state.uid: state.first_ns for state in states}
    for trace_id in {span.trace_id for span in spans}:
        in_trace = [span for span in spans if span.trace_id == trace_id]
        assert max(s.end_ns for s in in_trace) - min(s.start_ns for s in in_trace) <= (
            RULES.trace_max_ns
        )
    for span in spans:
        if span.kind is SpanKind.EVENT and span.name.startswith("Successful"):
            began = str(span.attribute("k8s.event.start_time"))
            assert (
                began.endswith("Z") and span.start_ns >= first[str(span.attribute("k8s.event.uid"))]
            )


@settings(max_examples=100, deadline=None)
@given(recreated_pods())
def test_same_second_events_come_in_the_order_their_names_say(cluster) -> None:
    states, objects = cluster
    spans = _run(states, objects)
    named = {state.uid: state.name for state in states}
    below: dict[str | None, list[Span]] = defaultdict(list)
    for span in spans:
        if span.kind is SpanKind.EVENT and span.name in ("Pulled", "Created", "Started"):
            below[span.parent_id].append(span)
    for siblings in below.values():
        siblings.sort(key=lambda span: span.start_ns)
        created = [int(named[str(s.attribute("k8s.event.uid"))].rpartition(".")[2], 16)
                   for s in siblings]  # fmt: skip
        assert created == sorted(created)
        assert [s.start_ns for s in siblings] == created


def test_pods_are_no_causes_controllers_and_nodes_are() -> None:
    """An executor pod owned by its driver pod hangs under the driver's span even when a
    driver event names it (pods are no controllers: their events are not kept as causes);
    a mirror pod (owned by its Node) under the Node event naming it, and a pod under the
    ReplicaSet event that created it (DESIGN §1, cause)."""
    node = ref("Node", "cp-1", namespace="")
    mirror = ref("Pod", "kube-apiserver-cp-1", namespace="kube-system")
    rs = ref("ReplicaSet", "web-1", api="apps/v1")
    driver = ref("Pod", "spark-driver")
    objects = [
        kube_object("Node", "cp-1", namespace=""),
        kube_object("Pod", "kube-apiserver-cp-1", node, namespace="kube-system"),
        kube_object("Deployment", "web", api="apps/v1"),
        kube_object("ReplicaSet", "web-1", ref("Deployment", "web", api="apps/v1"), api="apps/v1"),
        kube_object("Pod", "web-1-a", rs),
        kube_object("Pod", "spark-driver"),
        kube_object("Pod", "spark-exec-1", driver),
    ]
    raws = [
        core_event("cp-1.a", node, "Mirrored", "Mirrored kube-apiserver-cp-1", at=1, namespace=""),
        core_event("mirror.b", mirror, "Started", "Started container", at=2,
                   namespace="kube-system"),
        core_event("web-1.c", rs, "SuccessfulCreate", "Created pod: web-1-a", at=1,
                   component="replicaset-controller"),
        core_event("web-1-a.d", ref("Pod", "web-1-a"), "Started", "Started container", at=2),
        core_event("driver.e", driver, "Note", "Requested spark-exec-1", at=1),
        core_event("exec.f", ref("Pod", "spark-exec-1"), "Started", "Started container", at=2),
    ]  # fmt: skip
    states = [parse_event(raw, "t") for raw in raws]
    kube = [parse_object(raw, "t") for raw in objects]
    spans, _ = trace_recording(states, kube, RULES)  # type: ignore[arg-type]
    by_name = {span.name: span for span in spans}
    assert by_name["pod/spark-exec-1"].parent_id == by_name["pod/spark-driver"].span_id
    assert by_name["pod/kube-apiserver-cp-1"].parent_id == by_name["Mirrored"].span_id
    assert by_name["pod/web-1-a"].parent_id == by_name["SuccessfulCreate"].span_id
