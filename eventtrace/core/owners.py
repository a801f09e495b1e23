"""Owner chains: from the object an event is about, up the controller owners to the root.

Pure: it reads an `ObjectIndex` (what is known of the cluster's objects) and never fetches.
The live resolver fills the index; replay fills it from object dumps.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from eventtrace.core.model import EventState, KubeObject, ObjectRef
from eventtrace.core.recent import Recent


@dataclass(slots=True)  # made for each link of each chain: not frozen (see model.py)
class Link:
    """One object on a chain. `identity` keys its span: the real uid where the object is
    known, else kind/namespace/name (kubelet's Node events carry the name as uid)."""

    identity: str
    ref: ObjectRef
    known: KubeObject | None


Chain = tuple[Link, ...]  # the involved object first, the root last


def identity_of(ref: ObjectRef, known: KubeObject | None) -> str:
    """What keys an object's span: its uid, else (no uid, or a Node's name given as its
    uid) kind/namespace/name."""
    if known is not None and known.ref.uid:
        return known.ref.uid
    if ref.uid and ref.uid != ref.name:
        return ref.uid
    return f"{ref.kind}/{ref.namespace}/{ref.name}"


class ObjectIndex:
    """What is known of objects, by uid and by kind/namespace/name, plus owner hints."""

    __slots__ = ("_by_hash", "_by_key", "_by_uid", "_count", "_hints")

    def __init__(self) -> None:
        self._by_uid: dict[str, KubeObject] = {}
        # kind → namespace → name → object: nested rather than keyed by a (kind, namespace,
        # name) tuple, which would cost 64 bytes an object (6 MB for 100 000).
        self._by_key: dict[str, dict[str, dict[str, KubeObject]]] = {}
        self._by_hash: dict[str, KubeObject] = {}  # mirror pods by their config hash
        self._count = 0
        # child (kind, namespace, name) → owner: forgotten by arrival, as the events that
        # named them are (`turn`).
        self._hints: Recent[tuple[str, str, str], ObjectRef] = Recent()

    def __len__(self) -> int:
        return self._count

    def put(self, obj: KubeObject) -> None:
        """Keep the newest state of each object; equal versions tie-break on content."""
        old = self._by_uid.get(obj.ref.uid) if obj.ref.uid else None
        if old is not None and _version_rank(old) > _version_rank(obj):
            return
        if obj.ref.uid:
            self._by_uid[obj.ref.uid] = obj
        if obj.config_hash:
            self._by_hash[obj.config_hash] = obj
        ref = obj.ref
        namespaces = self._by_key.get(ref.kind)
        if namespaces is None:
            namespaces = self._by_key[ref.kind] = {}
        names = namespaces.get(ref.namespace)
        if names is None:
            names = namespaces[ref.namespace] = {}
        current = names.get(ref.name)
        if current is None:
            self._count += 1
        if (
            current is None
            or current.ref.uid == ref.uid
            or _version_rank(obj) >= _version_rank(current)
        ):
            names[ref.name] = obj

    def forget(self, obj: KubeObject) -> None:
        if self._by_uid.get(obj.ref.uid) is obj:
            del self._by_uid[obj.ref.uid]
        if self._by_hash.get(obj.config_hash) is obj:
            del self._by_hash[obj.config_hash]
        ref = obj.ref
        names = self._by_key.get(ref.kind, _NOTHING).get(ref.namespace)
        if names is not None and names.get(ref.name) is obj:
            del names[ref.name]
            self._count -= 1
            if not names:  # namespaces come and go
                del self._by_key[ref.kind][ref.namespace]

    def objects(self) -> list[KubeObject]:
        """Every object known by uid (a copy: the caller may change the index meanwhile)."""
        return list(self._by_uid.values())

    def find(self, ref: ObjectRef) -> KubeObject | None:
        """The object `ref` names: by its uid (DESIGN §1, identity), by kind, namespace and
        name only where it has no uid or one that is no object's (kubelet's Node events
        carry the node's name); a static pod's config hash names its mirror pod. A uid
        the index does not have is an object it does not
        know, even when another object of that name is known (a pod recreated under the
        same name is another object)."""
        uid = ref.uid
        if uid and uid != ref.name:
            found = self._by_uid.get(uid) or self._by_hash.get(uid)
            if found is not None and found.ref.kind == ref.kind:
                return found
        names = self._by_key.get(ref.kind, _NOTHING).get(ref.namespace)
        by_name = names.get(ref.name) if names is not None else None
        if not uid or uid == ref.name:
            return by_name
        if by_name is not None and not by_name.ref.uid:
            return by_name  # known without a uid (a hand-made dump): nothing to tell apart
        return None

    def learn_from(self, event: EventState) -> None:
        """A controller's message that names a child it made ("Created pod: NAME") tells us
        the child's owner, for when the child itself can no longer be read."""
        hint = owner_hint(event)
        if hint is None:
            return
        child, owner = hint
        current = self._hints.get(child)
        # Keep the same hint whatever order events come in.
        if current is None or (owner.uid, owner.name) < (current.uid, current.name):
            self._hints[child] = owner

    def hinted_owner(self, ref: ObjectRef) -> ObjectRef | None:
        return self._hints.get(ref.key)

    def forget_hints(self) -> int:
        """Forget what no event has named since the last call (the housekeeping's turn):
        the hints are for events, which the API server keeps about an hour."""
        return len(self._hints.turn())

    def unknown_owners(self, involved: ObjectRef) -> list[ObjectRef]:
        """What of the chain of `involved` is not known: the objects `chain` would give as
        unresolved. Walks it as `chain` does without making its links (each event asks,
        and nearly always everything is known)."""
        unknown = []
        ref: ObjectRef | None = involved
        for _ in range(_DEEPEST_CHAIN):  # a cycle of owners ends too
            if ref is None:
                break
            known = self.find(ref)
            if known is None:
                unknown.append(ref)
                ref = self.hinted_owner(ref)
            else:
                ref = known.controller
        return unknown

    def chain(self, involved: ObjectRef) -> Chain:
        """The owner chain of `involved`. Owners that cannot be read stay on it as their
        ownerReference says and end it; cycles are cut at the first repeat."""
        links: list[Link] = []
        seen: set[str] = set()
        ref: ObjectRef | None = involved
        while ref is not None:
            known = self.find(ref)
            if known is not None and known.ref.uid:
                identity = known.ref.uid
                link = Link(identity, known.ref, known)
            else:
                identity = identity_of(ref, known)
                link = Link(identity, known.ref if known is not None else ref, known)
            if identity in seen:
                break
            seen.add(identity)
            links.append(link)
            ref = known.controller if known is not None else self.hinted_owner(ref)
        return tuple(links)


_NOTHING: dict[str, dict[str, KubeObject]] = {}
# Pod → ReplicaSet → Deployment is three; CRD operators add a few more.
_DEEPEST_CHAIN = 32


def _version_rank(obj: KubeObject) -> tuple[int, str]:
    version = obj.resource_version
    return (int(version), "") if version.isdigit() else (-1, version)


# (owner kinds, message pattern, child kind): how controllers name what they create.
_CHILD_PATTERNS: tuple[tuple[frozenset[str], re.Pattern[str], str], ...] = (
    (frozenset({"Deployment"}), re.compile(r"^Scaled (?:up|down) replica set (\S+)"), "ReplicaSet"),
    (
        frozenset({"ReplicaSet", "DaemonSet", "Job", "ReplicationController"}),
        re.compile(r"^(?:Created|Deleted) pod: (\S+)"),
        "Pod",
    ),
    (frozenset({"StatefulSet"}), re.compile(r"^(?:create|delete) Pod (\S+) in StatefulSet"), "Pod"),
    (
        frozenset({"CronJob"}),
        re.compile(r"^(?:Created job|Deleted job|Saw completed job:) ([^\s,]+)"),
        "Job",
    ),
)


# The same, by owner kind, in the same order.
_CHILD_PATTERNS_BY_KIND: dict[str, list[tuple[re.Pattern[str], str]]] = {}
for _kinds, _pattern, _child_kind in _CHILD_PATTERNS:
    for _kind in sorted(_kinds):
        _CHILD_PATTERNS_BY_KIND.setdefault(_kind, []).append((_pattern, _child_kind))


def owner_hint(event: EventState) -> tuple[tuple[str, str, str], ObjectRef] | None:
    owner = event.involved
    for pattern, child_kind in _CHILD_PATTERNS_BY_KIND.get(owner.kind, ()):
        match = pattern.match(event.message)
        if match:
            return ((child_kind, owner.namespace, match.group(1)), owner)
    return None


def names(message: str, name: str) -> bool:
    """Does the message name the object as a whole word? `px-5d567cc74c` is not named by
    `Created pod: px-5d567cc74c-ss4lb`."""
    # The regex `(?<![\w.-])NAME(?![\w-]|\.\w)` at every place NAME occurs, without
    # compiling a pattern per name (\w: str.isalnum() or "_", as `re` has it).
    size, end = len(name), len(message)
    at = message.find(name)
    while at >= 0:
        before = message[at - 1] if at else ""
        if not before or not (before.isalnum() or before in "_.-"):
            after_at = at + size
            after = message[after_at] if after_at < end else ""
            if not after:
                return True
            if not (after.isalnum() or after in "_-"):
                if after != ".":
                    return True
                following = message[after_at + 1] if after_at + 1 < end else ""
                if not following or not (following.isalnum() or following == "_"):
                    return True
        at = message.find(name, at + 1)
    return False
