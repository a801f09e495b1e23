"""The image and the compose file, checked without a Docker engine (there is none in CI).

The Dockerfile is read instruction by instruction; the compose file is parsed as YAML
(and run through `docker compose config` where that plugin exists).
"""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import re
import shlex
import shutil
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from eventtrace.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
LOCK = ROOT / "requirements.lock"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "docker-compose.jaeger.yaml"

PINNED_PYTHON = re.compile(r"^python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?$")
PINNED_JAEGER = re.compile(r"^cr\.jaegertracing\.io/jaegertracing/jaeger:2\.\d+\.\d+$")
BUILD_TOOLS = ("gcc", "g++", "build-essential", "make", "clang", "python3-dev", "libc6-dev")


# --- a small Dockerfile reader ----------------------------------------------------------------


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [rest for kw, rest in self.instructions if kw == keyword]


def _instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) with comments dropped and continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, rest = full.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    assert not pending, "Dockerfile ends inside a continued line"
    return out


def _stages(text: str) -> list[Stage]:
    stages: list[Stage] = []
    for keyword, rest in _instructions(text):
        if keyword == "FROM":
            words = rest.split()
            words = [w for w in words if not w.startswith("--platform")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(image=words[0], name=name))
        else:
            assert stages, f"{keyword} before the first FROM"
            stages[-1].instructions.append((keyword, rest))
    return stages


def _env(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for rest in stage.args("ENV"):
        for word in shlex.split(rest):
            key, sep, value = word.partition("=")
            assert sep, f"use ENV KEY=value, not the legacy form: {rest}"
            env[key] = value
    return env


_PIP = re.compile(r"(?i)(^|[/(])pip3?(\.\d+)?\)?$")  # pip, pip3.11, .venv/bin/pip, $(PIP)


def _pip_commands(text: str, verb: str) -> list[list[str]]:
    """Every `pip <verb>` command (also `python -m pip <verb>`) in shell text, whole: env
    assignments before the pip kept (`FOO=1 /opt/build/bin/pip wheel ...`)."""
    found = []
    for command in re.split(r"&&|\|\||;|\n", text):
        if verb not in command:
            continue
        try:
            words = shlex.split(command, comments=True)
        except ValueError:  # an unbalanced quote elsewhere on the line (`python -c "...; ..."`)
            words = command.split()
        if _verb_at(words, verb) is not None:
            found.append(words)
    return found


def _verb_at(words: list[str], verb: str) -> int | None:
    """Where `verb` follows a pip in a command's words, if it does."""
    for i in range(1, len(words)):
        if words[i] == verb and _PIP.search(words[i - 1]):
            return i
    return None


def _pip_installs(text: str) -> list[list[str]]:
    """The arguments of every `pip install` in shell text."""
    installs = []
    for words in _pip_commands(text, "install"):
        at = _verb_at(words, "install")
        assert at is not None
        installs.append(words[at + 1 :])
    return installs


_OPTIONS_WITH_VALUE = {
    "-r",
    "-c",
    "-t",
    "-w",
    "--requirement",
    "--constraint",
    "--target",
    "--prefix",
    "--wheel-dir",
}


def _targets(args: list[str]) -> list[str]:
    """The package arguments of a pip install: what is neither an option nor its value."""
    targets, skip = [], False
    for word in args:
        if skip:
            skip = False
            continue
        if word in _OPTIONS_WITH_VALUE:
            skip = True
            continue
        if word.startswith("-") and word not in {"-e"}:
            continue
        targets.append(word)
    return targets


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return _stages(DOCKERFILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


# --- Dockerfile ---------------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_and_pinned(stages: list[Stage]) -> None:
    assert len(stages) >= 2
    for stage in stages:
        assert PINNED_PYTHON.match(stage.image), f"FROM {stage.image}: pin an exact version"
    # One base for both: the venv copied from the builder points at its python.
    assert len({s.image for s in stages}) == 1


def test_builder_installs_the_repo_into_a_venv(stages: list[Stage]) -> None:
    builder = stages[0]
    runs = builder.args("RUN")
    # The dependencies exactly as locked, each file checked against its hash; then the
    # project itself, once, from the repo root: not editable, no dev extra, nothing else.
    installs = [args for run in runs for args in _pip_installs(run)]
    assert installs == [
        ["--require-hashes", "--no-deps", "-r", "requirements.lock"],
        ["--no-deps", "."],
    ], installs
    # Into a virtualenv, which is all the final stage takes.
    assert any("venv /opt/eventtrace" in run for run in runs)
    assert _env(builder)["PATH"].startswith("/opt/eventtrace/bin:")
    # What the build reads is copied in.
    copied = " ".join(builder.args("COPY"))
    for needed in ("requirements.lock", "pyproject.toml", "README.md", "eventtrace"):
        assert needed in copied


def test_every_image_is_pinned_by_digest(stages: list[Stage]) -> None:
    for stage in stages:
        assert "@sha256:" in stage.image, f"FROM {stage.image}: pin the digest, not only the tag"


def _locked() -> dict[str, tuple[str, list[str]]]:
    """requirements.lock as {name: (version, hashes)}."""
    locked: dict[str, tuple[str, list[str]]] = {}
    name = ""
    for line in LOCK.read_text(encoding="utf-8").splitlines():
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if not line.startswith(" "):
            requirement = Requirement(text.rstrip(" \\"))
            (spec,) = requirement.specifier
            assert spec.operator == "==", f"{text}: pin exactly"
            name = canonicalize_name(requirement.name)
            locked[name] = (spec.version, [])
        elif text.startswith("--hash=sha256:"):
            locked[name][1].append(text.removeprefix("--hash=sha256:").rstrip(" \\"))
    return locked


def test_the_lock_pins_every_dependency_within_pyprojects_ranges_with_hashes() -> None:
    """`python3 dev.py lock` writes requirements.lock; this says when it is stale."""
    locked = _locked()
    assert locked, "requirements.lock pins nothing"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    for text in pyproject["project"]["dependencies"]:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{requirement.name} is not in requirements.lock"
        version = locked[name][0]
        assert requirement.specifier.contains(version), f"locked {name}=={version}: not {text}"
    for name, (version, hashes) in locked.items():
        assert hashes and all(len(h) == 64 for h in hashes), f"{name}=={version}: no hashes"
    assert "file:" not in LOCK.read_text(encoding="utf-8"), "no path of the machine it was made on"


def test_dev_script_installs_the_same_package() -> None:
    # dev.py (`python3 dev.py demo|test`) installs -e '.[dev]' for development; the image
    # installs the same project root without -e and without the dev extra.
    spec = importlib.util.spec_from_file_location("dev", ROOT / "dev.py")
    assert spec is not None and spec.loader is not None
    dev = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dev)
    assert dev.INSTALL[0] == "install"
    roots = [t for t in _targets(dev.INSTALL[1:]) if t != "-e"]
    assert {re.sub(r"\[.*\]$", "", t) for t in roots} == {"."}


def test_the_script_and_python_m_run_the_same_entry() -> None:
    # The image runs the `eventtrace` script pip writes; the benchmark and the README's
    # `python -m eventtrace`. Both must take the same way out (cli.entry: flush, then exit
    # without tearing down the heap), or the benchmark measures what users do not run.
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {
        "eventtrace": "eventtrace.cli:entry",
        "kubectl-eventtrace": "eventtrace.cli:kubectl_entry",  # the kubectl plugin
    }
    main_module = (ROOT / "eventtrace" / "__main__.py").read_text()
    assert "from eventtrace.cli import entry" in main_module and "entry()" in main_module


def test_pip_install_dot_ships_every_data_file() -> None:
    # The image installs a wheel, not the source tree: every non-Python file the package
    # reads must be named in package-data, or it is silently left out.
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    globs = pyproject["tool"]["setuptools"]["package-data"]["eventtrace"]
    package = ROOT / "eventtrace"
    data = [
        path.relative_to(package).as_posix()
        for path in package.rglob("*")
        if path.is_file() and path.suffix not in {".py", ".pyc"} and "__pycache__" not in path.parts
    ]
    missing = [name for name in data if not any(fnmatch.fnmatch(name, g) for g in globs)]
    assert missing == [], f"not in [tool.setuptools.package-data]: {missing}"


def test_final_stage_is_small_and_unprivileged(stages: list[Stage]) -> None:
    builder, final = stages[0], stages[-1]
    assert final.args("USER") == ["10001:10001"]
    assert any("10001" in run for run in final.args("RUN")), "create user 10001"
    assert final.args("ENTRYPOINT") == ['["eventtrace"]']
    assert final.args("CMD") == ['["run"]']
    assert final.args("EXPOSE") == ["8080"]
    env = _env(final)
    assert env["EVENTTRACE_METRICS_ADDR"] == "0.0.0.0:8080"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PYTHONUNBUFFERED"] == "1"
    # Only the venv crosses over, from the builder.
    copies = final.args("COPY")
    assert copies and all(c.startswith(f"--from={builder.name} ") for c in copies), copies
    # No sources, no compilers, no pip run in the final image.
    for run in final.args("RUN"):
        assert not _pip_installs(run)
        for tool in BUILD_TOOLS:
            assert not re.search(rf"(^|\s){re.escape(tool)}(\s|$)", run), tool
        assert "apt-get install" not in run


def test_image_env_is_a_valid_setting(stages: list[Stage], monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in _env(stages[-1]).items():
        if key.startswith("EVENTTRACE_"):
            assert key.removeprefix("EVENTTRACE_").lower() in Settings.model_fields
            monkeypatch.setenv(key, value)
    assert load_settings().metrics_host_port == ("0.0.0.0", 8080)


def test_dockerignore_keeps_the_context_small() -> None:
    patterns = {
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    needed = {".venv", ".git", "**/__pycache__", ".pytest_cache", ".mypy_cache", "*.kubeconfig"}
    assert needed <= patterns
    # ... without dropping what the build copies.
    for copied in ("pyproject.toml", "README.md", "eventtrace"):
        assert copied not in patterns


# --- docker-compose.jaeger.yaml -----------------------------------------------------------------


def _ports(service: dict[str, Any]) -> set[int]:
    """Container ports published by a service ("host:container" or "ip:host:container")."""
    published = set()
    for port in service.get("ports", []):
        if isinstance(port, dict):
            published.add(int(port["target"]))
        else:
            published.add(int(str(port).split(":")[-1].split("/")[0]))
    return published


def test_compose_runs_pinned_jaeger_v2(compose: dict[str, Any]) -> None:
    jaeger = compose["services"]["jaeger"]
    assert PINNED_JAEGER.match(jaeger["image"]), jaeger["image"]
    assert {16686, 4317, 4318} <= _ports(jaeger)
    # Jaeger stands alone: no kind network, no dependency.
    assert "depends_on" not in jaeger
    assert "kind" not in jaeger.get("networks", [])


def test_compose_builds_eventtrace_from_the_dockerfile(compose: dict[str, Any]) -> None:
    service = compose["services"]["eventtrace"]
    build = service["build"]
    context = COMPOSE.parent / build["context"]
    assert (context / build.get("dockerfile", "Dockerfile")).resolve() == DOCKERFILE
    command = service["command"]
    assert isinstance(command, list) and command[0] == "run"
    depends = service["depends_on"]
    assert "jaeger" in (depends if isinstance(depends, list) else list(depends))


def test_compose_exports_to_jaeger_and_reads_kind(compose: dict[str, Any]) -> None:
    service = compose["services"]["eventtrace"]
    env = service["environment"]
    env = env if isinstance(env, dict) else dict(e.split("=", 1) for e in env)
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4317"
    assert str(env["OTEL_EXPORTER_OTLP_INSECURE"]).lower() == "true"
    assert env["EVENTTRACE_CLUSTER_NAME"] == "kind"
    # The kubeconfig is mounted read-only where --kubeconfig points.
    command = service["command"]
    path = command[command.index("--kubeconfig") + 1]
    mounts = [v for v in service["volumes"] if str(v).split(":")[-2:] == [path, "ro"]]
    assert len(mounts) == 1, service["volumes"]
    assert "kind-internal.kubeconfig" in mounts[0]
    # kind's network, where <cluster>-control-plane:6443 resolves; created by kind, not us.
    assert "kind" in service["networks"]
    assert compose["networks"]["kind"] == {"external": True}


def test_compose_env_names_real_settings(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = compose["services"]["eventtrace"]["environment"]
    for key, value in env.items():
        if key.startswith("EVENTTRACE_"):
            assert key.removeprefix("EVENTTRACE_").lower() in Settings.model_fields, key
            monkeypatch.setenv(key, str(value))
    settings = load_settings()
    assert settings.cluster_name == "kind"


def test_compose_explains_the_kind_address_problem() -> None:
    header = COMPOSE.read_text(encoding="utf-8").split("\nname:")[0]
    assert "kind get kubeconfig --internal" in header
    assert "127.0.0.1" in header and "-control-plane:6443" in header


def _compose_cli() -> list[str] | None:
    for command in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(command[0]) is None:
            continue
        probe = subprocess.run([*command, "version"], capture_output=True, text=True, check=False)
        if probe.returncode == 0:
            return command
    return None


@pytest.mark.skipif(_compose_cli() is None, reason="no docker compose plugin here")
def test_docker_compose_config_accepts_the_file(tmp_path: Path) -> None:
    cli = _compose_cli()
    assert cli is not None
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n", encoding="utf-8")
    result = subprocess.run(
        [*cli, "-f", str(COMPOSE), "config", "--format", "json"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env={"KIND_KUBECONFIG": str(kubeconfig), "PATH": "/usr/bin:/bin:/usr/local/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert "jaeger" in json.loads(result.stdout)["services"]
