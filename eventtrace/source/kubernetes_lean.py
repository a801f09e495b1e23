"""kubernetes-asyncio's credential loaders and ApiClient, without its generated API.

Its packages import all of their generated API and model classes when first imported
(~880 modules: ~34 MB of the process's memory and ~0.1 s of its start), whichever part
of them is used. eventtrace uses the kubeconfig and in-cluster loaders and the ApiClient,
which need none of that. So, if nothing has imported kubernetes-asyncio yet, its three
packages (`kubernetes_asyncio`, `.client`, `.client.models`) are put in place without
running their `__init__`, and the modules eventtrace needs are imported into them. Any
other name asked of such a package (`kubernetes_asyncio.client.V1Pod`, `from
kubernetes_asyncio import watch`) runs its `__init__` then, in full, and is found as
usual: code in the same process that uses the rest of the library sees no difference.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys

_DEFERRED = ("kubernetes_asyncio", "kubernetes_asyncio.client", "kubernetes_asyncio.client.models")


def _defer(name: str) -> None:
    """Put package `name` in sys.modules without running its `__init__` until a name it
    does not have yet is asked of it."""
    parent, _, child = name.rpartition(".")
    path = sys.modules[parent].__path__ if parent else None
    spec = importlib.machinery.PathFinder.find_spec(name, path)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return  # not installed as expected: the ordinary import says what is wrong
    module = importlib.util.module_from_spec(spec)
    loader = spec.loader

    def complete(attribute: str) -> object:
        # Only for names the module lacks: run the package's own __init__ once, then
        # look again. Importing its submodules meanwhile set them on it, as usual.
        del module.__dict__["__getattr__"]
        loader.exec_module(module)
        try:
            return module.__dict__[attribute]
        except KeyError:
            raise AttributeError(f"module {name!r} has no attribute {attribute!r}") from None

    module.__dict__["__getattr__"] = complete
    sys.modules[name] = module
    if parent:
        sys.modules[parent].__dict__[child] = module


def _import_lean() -> None:
    if "kubernetes_asyncio" in sys.modules:
        return  # imported already (in full, or by an earlier call): use it as it is
    try:
        for name in _DEFERRED:
            _defer(name)
        configuration = importlib.import_module("kubernetes_asyncio.client.configuration")
        importlib.import_module("kubernetes_asyncio.client.rest")  # api_client: `import rest`
        api_client = importlib.import_module("kubernetes_asyncio.client.api_client")
        # What the config loaders take from the package (`from kubernetes_asyncio.client
        # import ApiClient, Configuration`): the same classes its __init__ would bind.
        client = sys.modules["kubernetes_asyncio.client"]
        client.__dict__["ApiClient"] = api_client.ApiClient
        client.__dict__["Configuration"] = configuration.Configuration
        importlib.import_module("kubernetes_asyncio.config")
    except Exception:
        # A release laid out otherwise: forget the partial packages, import in full.
        for name in [name for name in sys.modules if name.startswith("kubernetes_asyncio")]:
            del sys.modules[name]
        importlib.import_module("kubernetes_asyncio.config")


_import_lean()

from kubernetes_asyncio import config  # noqa: E402
from kubernetes_asyncio.client.api_client import ApiClient  # noqa: E402
from kubernetes_asyncio.client.configuration import Configuration  # noqa: E402
from kubernetes_asyncio.config.config_exception import ConfigException  # noqa: E402
from kubernetes_asyncio.config.kube_config import KUBE_CONFIG_DEFAULT_LOCATION  # noqa: E402

__all__ = [
    "KUBE_CONFIG_DEFAULT_LOCATION",
    "ApiClient",
    "ConfigException",
    "Configuration",
    "config",
]
