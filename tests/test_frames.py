"""Watch lines and list pages read from their bytes: events into their shape where they
fit it, as plain JSON where they do not, to the same states either way."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
import pytest
from test_parse import EVENTS_V1, SCHEDULED_NEW_API_VIA_CORE

import eventtrace
from eventtrace.core.model import Rejected
from eventtrace.source.frames import EventFrames, JsonFrames
from eventtrace.source.parse import parse_event
from eventtrace.source.shapes import EventShape

DEMO = Path(eventtrace.__file__).parent / "demo"


def demo_lines() -> list[bytes]:
    lines: list[bytes] = []
    for path in sorted(DEMO.glob("*.jsonl")):
        lines += [line for line in path.read_bytes().splitlines() if line.strip()]
    return lines


def test_recorded_frames_read_as_shapes_give_the_states_plain_json_gives() -> None:
    lines = demo_lines() + [
        orjson.dumps({"type": "MODIFIED", "object": event})
        for event in (EVENTS_V1, SCHEDULED_NEW_API_VIA_CORE)
    ]
    assert len(lines) > 60
    for line in lines:
        typed, plain = EventFrames().frame(line), JsonFrames().frame(line)
        assert isinstance(typed.object, EventShape), line  # the fast way was taken
        assert (typed.type, typed.resource_version) == (plain.type, plain.resource_version)
        assert typed.resource_version
        state = parse_event(typed.object, "t")
        assert not isinstance(state, Rejected)
        assert state == parse_event(plain.object, "t")


def test_error_and_bookmark_frames_are_read_as_plain_json() -> None:
    status = {"kind": "Status", "status": "Failure", "code": 410, "reason": "Expired",
              "message": "too old resource version: 1 (5)", "metadata": {}}  # fmt: skip
    error = EventFrames().frame(orjson.dumps({"type": "ERROR", "object": status}))
    assert (error.type, error.object) == ("ERROR", status)
    bookmark = {"kind": "Event", "apiVersion": "v1", "metadata": {"resourceVersion": "77"}}
    frame = EventFrames().frame(orjson.dumps({"type": "BOOKMARK", "object": bookmark}))
    assert (frame.type, frame.resource_version) == ("BOOKMARK", "77")


def test_an_event_of_another_shape_is_judged_by_the_models_as_before() -> None:
    odd = copy.deepcopy(SCHEDULED_NEW_API_VIA_CORE)
    odd["count"] = "3"  # pydantic reads a numeric string; the shape does not
    odd["metadata"]["resourceVersion"] = "12"
    frame = EventFrames().frame(orjson.dumps({"type": "ADDED", "object": odd}))
    assert isinstance(frame.object, dict)
    assert frame.resource_version == "12"
    state = parse_event(frame.object, "t")
    assert not isinstance(state, Rejected) and state.count == 3
    unusable = copy.deepcopy(EVENTS_V1)
    del unusable["regarding"]["name"]
    frame = EventFrames().frame(orjson.dumps({"type": "ADDED", "object": unusable}))
    rejected = parse_event(frame.object, "t")
    assert isinstance(rejected, Rejected) and rejected.category == "schema"
    assert "regarding.name is missing" in str(rejected)  # the models' words, not msgspec's


def test_a_page_reads_its_items_continue_token_and_version() -> None:
    listed = {"kind": "EventList", "apiVersion": "v1",
              "metadata": {"resourceVersion": "900", "continue": "next-1"},
              "items": [SCHEDULED_NEW_API_VIA_CORE, EVENTS_V1]}  # fmt: skip
    body = orjson.dumps(listed)
    typed, plain = EventFrames().page(body), JsonFrames().page(body)
    assert all(isinstance(item, EventShape) for item in typed.items)
    assert (typed.continue_token, typed.resource_version) == ("next-1", "900")
    assert (plain.continue_token, plain.resource_version) == ("next-1", "900")
    assert [parse_event(item, "t") for item in typed.items] == [
        parse_event(item, "t") for item in plain.items
    ]
    last = EventFrames().page(orjson.dumps({"metadata": {"resourceVersion": "901"}, "items": []}))
    assert (last.items, last.continue_token, last.resource_version) == ([], "", "901")


def test_a_page_with_one_odd_item_is_read_as_plain_json_whole() -> None:
    odd = copy.deepcopy(EVENTS_V1)
    odd["series"]["count"] = 2.0
    body = orjson.dumps({"metadata": {"resourceVersion": "5"}, "items": [EVENTS_V1, odd]})
    page = EventFrames().page(body)
    assert [type(item) for item in page.items] == [dict, dict]
    assert page.resource_version == "5"
    states = [parse_event(item, "t") for item in page.items]
    assert states == [parse_event(EVENTS_V1, "t"), parse_event(odd, "t")]
    assert not isinstance(states[1], Rejected) and states[1].count == 2  # pydantic's reading


@pytest.mark.parametrize("reader", [EventFrames(), JsonFrames()], ids=["events", "json"])
def test_a_malformed_line_or_page_raises_orjsons_error(reader: Any) -> None:
    """The watch retries on it, as it always has (watch.py `_should_retry`)."""
    with pytest.raises(orjson.JSONDecodeError):
        reader.frame(b'{"type":"ADDED","object":{"metadata":')
    with pytest.raises(orjson.JSONDecodeError):
        reader.page(b'{"items": [')
