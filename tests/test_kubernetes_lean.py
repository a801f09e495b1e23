"""kubernetes-asyncio imported lean (source/kubernetes_lean.py): its generated API and
models stay unimported until something asks for them, and then are there as ever. Each
check runs in a fresh interpreter: the test process has imported the library already."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def _run(code: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


LOADED = "len([m for m in sys.modules if m.startswith('kubernetes_asyncio.client.models.')])"


def test_the_client_and_loaders_come_without_the_generated_models() -> None:
    result = _run(
        "import sys, json\n"
        "from eventtrace.source import kube\n"
        f"print(json.dumps({{'models': {LOADED}, 'apis': len([m for m in sys.modules "
        "if m.startswith('kubernetes_asyncio.client.api.')]), "
        "'loader': kube.kube_config.load_kube_config.__module__, "
        "'client': kube.ApiClient.__module__}))"
    )
    assert result == {
        "models": 0,
        "apis": 0,
        "loader": "kubernetes_asyncio.config.kube_config",
        "client": "kubernetes_asyncio.client.api_client",
    }


@pytest.mark.parametrize(
    "ask",
    [
        "from kubernetes_asyncio.client import V1Pod as asked",
        "import kubernetes_asyncio.client as c; asked = c.V1Pod",
        "import kubernetes_asyncio; asked = kubernetes_asyncio.client.models.V1Pod",
    ],
)
def test_the_rest_of_the_library_is_there_when_asked_for(ask: str) -> None:
    result = _run(
        "import sys, json\n"
        "from eventtrace.source import kube\n"
        f"{ask}\n"
        "import kubernetes_asyncio, kubernetes_asyncio.client as client\n"
        "from kubernetes_asyncio import watch\n"
        f"print(json.dumps({{'models': {LOADED} > 500, 'pod': asked.__name__, "
        "'same_client': client.ApiClient is kube.ApiClient, "
        "'core_api': client.CoreV1Api.__name__, 'watch': watch.Watch.__name__, "
        "'version': bool(kubernetes_asyncio.__version__)}))"
    )
    assert result == {
        "models": True,
        "pod": "V1Pod",
        "same_client": True,
        "core_api": "CoreV1Api",
        "watch": "Watch",
        "version": True,
    }


def test_a_missing_name_is_still_an_attribute_error() -> None:
    result = _run(
        "import json\n"
        "from eventtrace.source import kube\n"
        "import kubernetes_asyncio.client as client\n"
        "try:\n"
        "    client.NoSuchThing\n"
        "except AttributeError as error:\n"
        "    print(json.dumps({'error': str(error)}))\n"
    )
    assert result == {"error": "module 'kubernetes_asyncio.client' has no attribute 'NoSuchThing'"}


def test_a_library_imported_in_full_before_is_used_as_it_is() -> None:
    result = _run(
        "import sys, json\n"
        "import kubernetes_asyncio\n"
        "from eventtrace.source import kube\n"
        f"print(json.dumps({{'models': {LOADED} > 500, "
        "'same': kube.ApiClient is kubernetes_asyncio.client.ApiClient}))"
    )
    assert result == {"models": True, "same": True}
