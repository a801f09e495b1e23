"""`eventtrace replay` and `demo` as a user runs them: real files, real process, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import yaml

from helpers import KIND_CAPTURE, core_event, kube_object, ref


def eventtrace(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    import os

    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("EVENTTRACE_", "OTEL_"))}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "eventtrace", *args],
        input=stdin, capture_output=True, text=True, timeout=60, env=full_env,
    )  # fmt: skip


def jsonl_spans(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def rollout_events() -> list[dict]:
    deploy = ref("Deployment", "web", api="apps/v1")
    rs = ref("ReplicaSet", "web-abc12", api="apps/v1")
    pod = ref("Pod", "web-abc12-x1y2z")
    return [
        core_event("web.1", deploy, "ScalingReplicaSet", "Scaled up replica set web-abc12 to 1", component="deployment-controller"),
        core_event("web-abc12.1", rs, "SuccessfulCreate", "Created pod: web-abc12-x1y2z", at=1, component="replicaset-controller"),
        core_event("web-abc12-x1y2z.1", pod, "Pulling", 'Pulling image "nginx"', at=2, host="node-a"),
        core_event("web-abc12-x1y2z.2", pod, "BackOff", "Back-off restarting failed container", at=3, last=40, count=5, type="Warning"),
    ]  # fmt: skip


def objects_list() -> dict:
    deploy = ref("Deployment", "web", api="apps/v1")
    rs = ref("ReplicaSet", "web-abc12", api="apps/v1")
    return {"apiVersion": "v1", "kind": "List", "items": [
        kube_object("Deployment", "web", api="apps/v1"),
        kube_object("ReplicaSet", "web-abc12", deploy, api="apps/v1"),
        kube_object("Pod", "web-abc12-x1y2z", rs)]}  # fmt: skip


def test_demo_shows_the_rollout_and_the_failing_pod_as_trees() -> None:
    result = eventtrace("demo")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert sum(" trace " in line for line in out.splitlines()) == 2
    assert "deployment/web" in out and "deployment/api" in out
    assert "└─ pod/api-6f7d8c9b5-x7k2p  replicaset-controller" in out
    assert "✗ Failed  Error: ImagePullBackOff" in out
    assert "BackOff (x2)" in out  # the count jump the watch missed
    # Piped, messages are printed whole (a terminal's width cuts them only on a terminal).
    image = "ghcr.io/example/api:v2.3.0-rc1"
    assert f'✗ Failed  Failed to pull image "{image}": rpc error: code = NotFound' in out
    assert f'"{image}": {image}: not found\n' in out
    assert "…" not in out and "\033[" not in out


def test_replay_of_the_kind_capture_prints_one_trace_rooted_at_deployment_px() -> None:
    result = eventtrace("replay", str(KIND_CAPTURE), "--output", "console")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert sum(" trace " in line for line in lines) == 1
    assert lines[0].startswith("deployment/px  trace ")
    assert lines[2].split()[2] == "deployment/px"
    assert "replayed 19 events and 7 objects into 26 spans" in result.stderr


@pytest.mark.parametrize("form", ["json-list", "yaml-list", "watch-stream", "jsonl-watch", "stdin"])
def test_every_recorded_form_gives_the_same_spans(tmp_path: Path, form: str) -> None:
    events = rollout_events()
    objects = tmp_path / "objects.json"
    objects.write_text(json.dumps(objects_list()))
    if form == "json-list":
        text = json.dumps({"apiVersion": "v1", "kind": "EventList", "items": events}, indent=2)
    elif form == "yaml-list":
        text = yaml.safe_dump({"apiVersion": "v1", "kind": "EventList", "items": events})
    elif form == "watch-stream":  # kubectl get events -w -o json: pretty objects back to back
        text = "".join(json.dumps(event, indent=4) + "\n" for event in events)
    else:
        text = "".join(json.dumps({"type": "ADDED", "object": event}) + "\n" for event in events)
    path = tmp_path / "events.txt"
    path.write_text(text)
    if form == "stdin":
        result = eventtrace("replay", "-", str(objects), "--output", "jsonl", stdin=text)
    else:
        result = eventtrace("replay", str(path), str(objects), "--output", "jsonl")
    assert result.returncode == 0, result.stderr
    spans = jsonl_spans(result.stdout)
    names = sorted(span["name"] for span in spans)
    assert names == sorted(["ScalingReplicaSet", "SuccessfulCreate", "Pulling", "BackOff",
                            "deployment/web", "replicaset/web-abc12", "pod/web-abc12-x1y2z"])  # fmt: skip
    assert len({span["trace_id"] for span in spans}) == 1
    backoff = next(span for span in spans if span["name"] == "BackOff")
    assert backoff["status"] == "ERROR"
    assert backoff["attributes"]["eventtrace.occurrences"] == 5
    assert backoff["end_ns"] - backoff["start_ns"] == 37 * 10**9


def test_events_alone_still_make_one_tree_from_the_controllers_messages(tmp_path: Path) -> None:
    """`kubectl get events -o json` has no owner references: the controllers' own
    messages ("Created pod: NAME") still say who made whom."""
    path = tmp_path / "events.json"
    path.write_text(json.dumps({"kind": "EventList", "items": rollout_events()}))
    result = eventtrace("replay", str(path), "--output", "jsonl")
    spans = jsonl_spans(result.stdout)
    assert len({span["trace_id"] for span in spans}) == 1
    root = next(span for span in spans if span["parent_id"] is None)
    assert root["name"] == "deployment/web"
    pod = next(span for span in spans if span["name"] == "pod/web-abc12-x1y2z")
    assert pod["attributes"]["eventtrace.object.unresolved"] is True


def test_a_bad_event_is_reported_and_the_rest_go_on(tmp_path: Path) -> None:
    events = rollout_events()
    broken = dict(events[2])
    broken.pop("involvedObject")
    lines = [orjson.dumps(event).decode() for event in [events[0], broken, events[1]]]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n")
    result = eventtrace("replay", str(path), "--output", "jsonl")
    assert result.returncode == 0
    assert f"{path}:2: event default/web-abc12-x1y2z.1: involvedObject is missing" in result.stderr
    assert sorted(span["name"] for span in jsonl_spans(result.stdout) if span["kind"] == "event") == [
        "ScalingReplicaSet", "SuccessfulCreate"]  # fmt: skip


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            '{"kind": "EventList", "items": [\n  {"a": 1},\n  {"b": \n}',
            ":4: invalid JSON: Expecting value",
        ),
        ("kind: EventList\nitems:\n  - a: [1, 2\n", ":3: invalid YAML"),
        ("[1, 2]\n", ":1: expected a Kubernetes object, got list"),
    ],
)
def test_a_bad_file_says_file_and_line_and_exits_2(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "bad.txt"
    path.write_text(content)
    result = eventtrace("replay", str(path))
    assert result.returncode == 2
    assert result.stderr.strip() == f"eventtrace: {path}{message}" or result.stderr.startswith(
        f"eventtrace: {path}{message}"
    )
    assert "Traceback" not in result.stderr


def test_a_missing_file_exits_2() -> None:
    result = eventtrace("replay", "/nonexistent/events.json")
    assert result.returncode == 2
    assert result.stderr.strip() == "eventtrace: /nonexistent/events.json: no such file"


def test_replay_over_otlp_delivers_exactly_what_the_pipeline_made(otlp_receiver) -> None:
    """The kind capture through the real OTLP exporter: the protobuf decoded at the receiver
    says the same as the JSON-lines output of the same replay (ids, parents, times,
    attributes, resources)."""
    expected = jsonl_spans(eventtrace("replay", str(KIND_CAPTURE), "--output", "jsonl").stdout)
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.http_endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    }
    result = eventtrace("replay", str(KIND_CAPTURE), "--output", "otlp", env=env)
    assert result.returncode == 0, result.stderr
    received = otlp_receiver.wait_for_spans_blocking(26, within=10)
    assert len(received) == len(expected) == 26
    got = {
        span.span_id: (span.trace_id, span.parent_id, span.name, span.start_ns, span.end_ns,
                       span.status_code, span.attributes, span.resource)
        for span in received
    }  # fmt: skip
    want = {
        span["span_id"]: (span["trace_id"], span["parent_id"], span["name"], span["start_ns"], span["end_ns"],
                          span["status"], span["attributes"], span["resource"])
        for span in expected
    }  # fmt: skip
    assert got == want


def test_spans_that_could_not_be_delivered_make_the_exit_code_1() -> None:
    """No backend listens: the shutdown flush gives up after its deadline, says how many
    spans were lost, and the exit code says the job was not done."""
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
    }
    result = eventtrace("replay", str(KIND_CAPTURE), "--output", "otlp", env=env)
    assert result.returncode == 1
    assert "eventtrace: 26 of 26 spans could not be delivered" in result.stderr.splitlines()
    assert "Traceback" not in result.stderr


def test_a_bad_otlp_variable_is_one_line_naming_it() -> None:
    env = {"OTEL_EXPORTER_OTLP_COMPRESSION": "brotli"}
    result = eventtrace("replay", str(KIND_CAPTURE), "--output", "otlp", env=env)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("eventtrace: ") and "OTEL_EXPORTER_OTLP_COMPRESSION" in line


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_times_no_span_can_have_are_left_out_not_the_batch(
    tmp_path: Path, otlp_receiver, protocol: str
) -> None:
    """Kubernetes' zero time (0001-01-01, some clients' "unset") and a time past 2262
    cannot be OTLP times (nanoseconds since 1970 in 64 bits): they count as null, the
    event's other times are used, and the rest of the batch is not lost with it."""
    events = rollout_events()
    events[2]["firstTimestamp"] = "0001-01-01T00:00:00Z"
    events[3]["lastTimestamp"] = "9999-12-31T23:59:59Z"
    recording = tmp_path / "events.jsonl"
    recording.write_bytes(b"\n".join(orjson.dumps(event) for event in events) + b"\n")
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.endpoint(protocol),
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
    }
    result = eventtrace("replay", str(recording), "--output", "otlp", env=env)
    assert result.returncode == 0, result.stderr
    received = otlp_receiver.wait_for_spans_blocking(7, within=10)  # 4 events, 3 objects
    by_name = {span.name: span for span in received}
    assert len(received) == 7, sorted(by_name)
    pulling, backoff = by_name["Pulling"], by_name["BackOff"]
    assert pulling.start_ns == pulling.end_ns == whole_seconds_ns(events[2]["lastTimestamp"])
    assert backoff.start_ns == backoff.end_ns == whole_seconds_ns(events[3]["firstTimestamp"])


def whole_seconds_ns(stamp: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(stamp).timestamp()) * 10**9


def many_pod_events(path: Path, pods: int) -> Path:
    """One Pulling event for each of `pods` pods, a JSON line each."""
    lines = [
        orjson.dumps(
            core_event(f"p{i}.1", ref("Pod", f"p{i}"), "Pulling", 'Pulling image "nginx"', at=i)
        )
        for i in range(pods)
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


# Both ways in: `python -m eventtrace`, and the `eventtrace` script pip installs (the image's).
COMMANDS = [
    pytest.param([sys.executable, "-m", "eventtrace"], id="python-m"),
    pytest.param([str(Path(sys.executable).with_name("eventtrace"))], id="script"),
]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_span_is_written_before_the_process_exits(tmp_path: Path, command: list[str]) -> None:
    # eventtrace leaves the freeing of its heap to the OS at exit (cli.entry): what it
    # wrote must all be out first. 2 000 pods: an event span and an object span each.
    recording = many_pod_events(tmp_path / "events.jsonl", 2000)
    result = subprocess.run(
        [*command, "replay", str(recording), "--output", "jsonl"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    spans = jsonl_spans(result.stdout)
    assert len(spans) == 4000
    assert len({span["span_id"] for span in spans}) == 4000


@pytest.mark.parametrize("command", COMMANDS)
def test_a_reader_that_goes_away_ends_it_quietly_with_141(
    tmp_path: Path, command: list[str]
) -> None:
    recording = many_pod_events(tmp_path / "events.jsonl", 2000)  # far more than a pipe holds
    process = subprocess.Popen(
        [*command, "replay", str(recording), "--output", "jsonl"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.readline()  # `| head -1`
    process.stdout.close()
    assert process.wait(timeout=60) == 141
    assert process.stderr.read() == b""  # no traceback
