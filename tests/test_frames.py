"""Watch lines and list pages read from their bytes: events decoded into the schema's
`Event` where they fit it, as plain JSON where they are no event, to the same states
either way."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_parse import EVENTS_V1, SCHEDULED_NEW_API_VIA_CORE

import eventtrace
from eventtrace.core.model import EventState, KubeObject, ObjectRef, Rejected
from eventtrace.source import frames
from eventtrace.source.frames import EventFrames, JsonFrames, ObjectFrames, Undecodable, too_deep
from eventtrace.source.parse import parse_event, parse_object
from eventtrace.source.schema import Event, Object

DEMO = Path(eventtrace.__file__).parent / "demo"


def demo_lines() -> list[bytes]:
    lines: list[bytes] = []
    for path in sorted(DEMO.glob("*.jsonl")):
        lines += [line for line in path.read_bytes().splitlines() if line.strip()]
    return lines


def test_recorded_frames_decode_to_the_states_plain_json_gives() -> None:
    lines = demo_lines() + [
        orjson.dumps({"type": "MODIFIED", "object": event})
        for event in (EVENTS_V1, SCHEDULED_NEW_API_VIA_CORE)
    ]
    assert len(lines) > 60
    for line in lines:
        typed, plain = EventFrames().frame(line), JsonFrames().frame(line)
        assert isinstance(typed.object, Event), line
        assert (typed.type, typed.resource_version) == (plain.type, plain.resource_version)
        assert typed.resource_version
        state = parse_event(typed.object, "t")
        assert isinstance(state, EventState)
        assert state == parse_event(plain.object, "t")


def test_error_and_bookmark_frames_are_read_as_plain_json() -> None:
    status = {"kind": "Status", "status": "Failure", "code": 410, "reason": "Expired",
              "message": "too old resource version: 1 (5)", "metadata": {}}  # fmt: skip
    error = EventFrames().frame(orjson.dumps({"type": "ERROR", "object": status}))
    assert (error.type, error.object, error.resource_version) == ("ERROR", status, "")
    bookmark = {"kind": "Event", "apiVersion": "v1", "metadata": {"resourceVersion": "77"}}
    frame = EventFrames().frame(orjson.dumps({"type": "BOOKMARK", "object": bookmark}))
    assert (frame.type, frame.object, frame.resource_version) == ("BOOKMARK", bookmark, "77")


def test_lax_values_are_decoded_as_the_dict_is_read() -> None:
    lax = copy.deepcopy(SCHEDULED_NEW_API_VIA_CORE)
    lax["count"] = "3"  # a number as a string
    lax["series"] = {"count": 4.0}  # a whole number as a float
    lax["metadata"]["resourceVersion"] = "12"
    frame = EventFrames().frame(orjson.dumps({"type": "ADDED", "object": lax}))
    assert isinstance(frame.object, Event)
    assert (frame.object.count, frame.resource_version) == (3, "12")
    state = parse_event(frame.object, "t")
    assert isinstance(state, EventState) and state.count == 4
    assert state == parse_event(lax, "t")


def test_an_event_that_does_not_fit_is_read_as_plain_json_and_named() -> None:
    unusable = copy.deepcopy(EVENTS_V1)
    del unusable["regarding"]["name"]
    frame = EventFrames().frame(orjson.dumps({"type": "ADDED", "object": unusable}))
    assert (frame.type, frame.object, frame.resource_version) == ("ADDED", unusable, "9")
    rejected = parse_event(frame.object, "watch")
    assert rejected == Rejected("watch", "event shop/web-0.17a: regarding.name is missing")


def test_a_page_reads_its_items_continue_token_and_version() -> None:
    listed = {"kind": "EventList", "apiVersion": "v1",
              "metadata": {"resourceVersion": "900", "continue": "next-1"},
              "items": [SCHEDULED_NEW_API_VIA_CORE, EVENTS_V1]}  # fmt: skip
    body = orjson.dumps(listed)
    typed, plain = EventFrames().page(body), JsonFrames().page(body)
    assert all(isinstance(item, Event) for item in typed.items)
    assert (typed.continue_token, typed.resource_version) == ("next-1", "900")
    assert (plain.continue_token, plain.resource_version) == ("next-1", "900")
    states = [parse_event(item, "t") for item in typed.items]
    assert all(isinstance(state, EventState) for state in states)
    assert states == [parse_event(item, "t") for item in plain.items]
    last = EventFrames().page(orjson.dumps({"metadata": {"resourceVersion": "901"}, "items": []}))
    assert (last.items, last.continue_token, last.resource_version) == ([], "", "901")
    empty = EventFrames().page(orjson.dumps({"kind": "EventList", "items": None}))
    assert (empty.items, empty.continue_token, empty.resource_version) == ([], "", "")


def test_an_item_that_does_not_fit_is_rejected_alone_by_its_position() -> None:
    odd = copy.deepcopy(EVENTS_V1)
    odd["series"]["count"] = 2.5
    body = orjson.dumps(
        {"metadata": {"resourceVersion": "5"}, "items": [EVENTS_V1, odd, "an event?", EVENTS_V1]}
    )
    page = EventFrames().page(body)
    assert page.resource_version == "5"
    assert [type(item) for item in page.items] == [Event, Rejected, Rejected, Event]
    states = [parse_event(item, "watch") for item in page.items]
    assert states == [
        parse_event(EVENTS_V1, "t"),
        Rejected(
            "page item 1", "event shop/web-0.17a: series.count = 2.5: expected int, got float"
        ),
        Rejected("page item 2", "expected an Event object, got str", "not_an_object"),
        parse_event(EVENTS_V1, "t"),
    ]


def test_a_page_of_no_list_shape_is_read_as_plain_json() -> None:
    body = orjson.dumps({"metadata": {"continue": 5}, "items": [EVENTS_V1]})
    page = EventFrames().page(body)
    assert (page.items, page.continue_token) == ([EVENTS_V1], "5")


READERS = pytest.mark.parametrize("reader", [EventFrames(), JsonFrames()], ids=["events", "json"])
DEEP = b"[" * 1000 + b"]" * 1000


def frame_of(event: dict[str, Any], version: str, *, message: bytes | None = None) -> bytes:
    event = {**copy.deepcopy(event), "message": "@@"}
    event["metadata"]["resourceVersion"] = version
    line = orjson.dumps({"type": "MODIFIED", "object": event})
    return line.replace(b'"@@"', message) if message is not None else line


@READERS
@pytest.mark.parametrize(
    ("message", "reason", "detail"),
    [
        (b'"\xff\xfe"', "bad_utf8", "not valid UTF-8"),
        (DEEP, "too_deep", "nested more than 100 levels deep"),
        (b"nonsense", "invalid_json", "invalid JSON"),
    ],
)
def test_a_line_that_cannot_be_decoded_says_why_and_still_its_version(
    reader: Any, message: bytes, reason: str, detail: str
) -> None:
    """Never an exception: the watch skips it, and moves past its resourceVersion when
    the bytes still say it (read without decoding them)."""
    frame = reader.frame(frame_of(EVENTS_V1, "41", message=message))
    assert (frame.object, frame.resource_version) == (None, "41")
    assert frame.invalid is not None
    assert (frame.invalid.reason, frame.invalid.detail[: len(detail)]) == (reason, detail)


@READERS
def test_a_line_past_the_size_limit_is_too_big(
    reader: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(frames, "MAX_BYTES", 1000)
    frame = reader.frame(frame_of(EVENTS_V1, "41", message=b'"' + b"x" * 2000 + b'"'))
    assert frame.invalid is not None and frame.invalid.reason == "too_big"
    assert frame.resource_version == "41"


@READERS
def test_a_page_reads_around_the_items_it_cannot_decode(reader: Any) -> None:
    items = [
        orjson.dumps(EVENTS_V1),
        b'{"metadata": {"name": "deep"}, "a": ' + DEEP + b"}",
        b'{"metadata": {"name": "\xff"}}',
        b'{"metadata": ',
    ]
    body = b'{"metadata": {"resourceVersion": "7", "continue": "c"}, "items": [%s]}' % b",".join(
        items[:3]
    )
    page = reader.page(body)
    assert (page.resource_version, page.continue_token) == ("7", "c")
    assert [(position, problem.reason) for position, problem in page.invalid] == [
        (1, "too_deep"),
        (2, "bad_utf8"),
    ]
    assert len(page.items) == 1
    with pytest.raises(Undecodable) as cut:  # the page's own frame cut short: retried
        reader.page(b'{"metadata": {"resourceVersion": "7"}, "items": [{"a": 1}, ')
    assert cut.value.reason == "invalid_json"


@pytest.mark.parametrize("limit", [1, 5, 100])
def test_the_depth_limit_is_exact_at_its_edge(limit: int) -> None:
    """Strings full of brackets, quotes and escapes all around: only structure counts."""
    for nesting in (limit, limit + 1):
        value: Any = {"s": '"]}[{\\'}
        for level in range(nesting - 1):
            value = [value, "]]"] if level % 2 else {"k[": value, "s": '"]}'}
        assert too_deep(orjson.dumps(value), limit) == (nesting > limit)


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


_BRACKETY = st.text(alphabet='[]{}"\\ab\u00e9\n', max_size=6)
_JSON = st.recursive(
    st.none() | st.integers(-9, 99) | _BRACKETY,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_BRACKETY, inner, max_size=3),
    max_leaves=40,
)


@given(_JSON, st.integers(min_value=0, max_value=12))
def test_the_depth_read_from_the_bytes_is_the_depth_decoded(value: Any, limit: int) -> None:
    """Brackets, quotes and backslashes inside strings do not count."""
    data = orjson.dumps(value)
    assert too_deep(data, limit) == (_depth(value) > limit)


def test_workload_objects_are_read_as_their_identity_and_owners_only() -> None:
    """A pod's frame and a page of pods decode into the schema's Object: its spec is never
    built; list items, which carry no kind, take the watch's when parsed."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web-1", "namespace": "shop", "uid": "p1", "resourceVersion": "9",
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                          "name": "web", "uid": "r1", "controller": True}]},
        "spec": {"containers": [{"name": "app", "image": "nginx", "env": [{"name": "SECRET"}]}]},
    }  # fmt: skip
    frames = ObjectFrames()
    frame = frames.frame(orjson.dumps({"type": "ADDED", "object": pod}))
    assert isinstance(frame.object, Object) and frame.resource_version == "9"
    assert not hasattr(frame.object, "spec")
    item = {key: value for key, value in pod.items() if key not in ("kind", "apiVersion")}
    page = frames.page(orjson.dumps({"metadata": {"resourceVersion": "10"}, "items": [item]}))
    (listed,) = page.items
    parsed = parse_object(listed, "list", kind="Pod", api_version="v1")
    assert isinstance(parsed, KubeObject)
    assert (parsed.ref.kind, parsed.ref.api_version, parsed.controller) == (
        "Pod",
        "v1",
        ObjectRef("ReplicaSet", "web", "shop", "r1", "apps/v1"),
    )


def test_a_pod_as_metadata_only_is_the_same_object_as_the_whole_pod() -> None:
    """The API server answers ObjectFrames' Accept with PartialObjectMetadata, or, where it
    cannot (an aggregated API), the whole object: both parse to the same KubeObject, with
    the kind and apiVersion of the watch, never meta.k8s.io's."""
    meta = {"name": "web-1", "namespace": "shop", "uid": "p1", "resourceVersion": "9",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                 "name": "web", "uid": "r1", "controller": True}]}  # fmt: skip
    whole = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": {"containers": []}}
    partial = {"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": meta}
    frames = ObjectFrames()
    parsed = []
    for body in (whole, partial):
        frame = frames.frame(orjson.dumps({"type": "MODIFIED", "object": body}))
        page = frames.page(orjson.dumps({"metadata": {}, "items": [body]}))
        for read in (frame.object, page.items[0]):
            parsed.append(parse_object(read, "watch", kind="Pod", api_version="v1"))
    assert all(obj == parsed[0] for obj in parsed)
    assert isinstance(parsed[0], KubeObject)
    assert (parsed[0].ref.kind, parsed[0].ref.api_version) == ("Pod", "v1")
    # Without the watch's kind, a partial object cannot say what it is (nor can a dump
    # of a PartialObjectMetadataList, whose items replay would call that kind).
    assert isinstance(parse_object(partial, "get"), Rejected)
    assert parse_object(partial, "f:3", kind="PartialObjectMetadata") == Rejected(
        "f:3", "object web-1: metadata only, its kind is not said"
    )
