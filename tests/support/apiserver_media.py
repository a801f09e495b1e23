"""Content negotiation: what a client's Accept header asks a read to be turned into.

As the real API server negotiates (apiserver's endpoints/handlers/negotiation): the
clauses of Accept in order of their `q`, specific types before wildcards, then as
written; the first one it can serve wins. It serves JSON
only (no protobuf, no YAML); a clause may ask, through its `as`, `g` and `v` parameters,
for the object as a `meta.k8s.io` Table (kubectl's printing, apiserver_tables.py) or as
metadata only: `PartialObjectMetadata` for a GET or a watch's objects,
`PartialObjectMetadataList` for a list (client-go's metadata client sends both, with
plain `application/json` last as the fallback). Asking a list for `PartialObjectMetadata`,
or a single object for `PartialObjectMetadataList`, is 406 NotAcceptable, as the real
server answers once it has the object (handlers/response.go: `asPartialObjectMetadata`,
`...List`); so is, at once, an Accept with no clause it can serve.
"""

from __future__ import annotations

from dataclasses import dataclass

from support.apiserver_resources import JSON, ApiError, status_body

TRANSFORMS = {"Table", "PartialObjectMetadata", "PartialObjectMetadataList"}
META_VERSIONS = {"v1", "v1beta1"}
JSON_TYPES = {"application/json", "application/*", "*/*"}


@dataclass(frozen=True)
class Target:
    """What to answer with: `as_kind` "" for the resource's own JSON, else the meta.k8s.io
    kind (Table, PartialObjectMetadata, PartialObjectMetadataList) in `version`."""

    as_kind: str = ""
    version: str = "v1"

    @property
    def api_version(self) -> str:
        return f"meta.k8s.io/{self.version}"


def not_acceptable(message: str) -> ApiError:
    return ApiError(status_body(406, "NotAcceptable", message))


def negotiate(accept: str | None) -> Target:
    """The first clause of `accept` (by q, then as written) this server can serve."""
    if not accept or not accept.strip():
        return Target()
    clauses: list[tuple[float, int, str, dict[str, str]]] = []
    for position, clause in enumerate(accept.split(",")):
        media, *raw_params = (part.strip() for part in clause.split(";"))
        params = {}
        for raw in raw_params:
            key, _, value = raw.partition("=")
            params[key.strip().lower()] = value.strip()
        try:
            q = float(params.pop("q", "1"))
        except ValueError:
            q = 1.0
        media = media.lower()
        # As goautoneg orders them: by q, then the specific before the wildcards.
        wildcards = media.count("*")
        clauses.append((-q, wildcards, position, media, params))
    for *_, media, params in sorted(clauses, key=lambda clause: clause[:3]):
        if media not in JSON_TYPES:
            continue
        as_kind = params.get("as", "")
        if not as_kind:
            return Target()
        if (
            as_kind in TRANSFORMS
            and params.get("g") == "meta.k8s.io"
            and params.get("v") in META_VERSIONS
        ):
            return Target(as_kind, params["v"])
    raise not_acceptable(
        f"only the following media types are accepted: application/json, not {accept}"
    )


def partial(stored: JSON, target: Target) -> JSON:
    """An object as metadata only: all of its ObjectMeta, nothing else."""
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": target.api_version,
        "metadata": stored["metadata"],
    }


def partial_list(
    items: list[JSON], target: Target, resource_version: int, continue_token: str | None
) -> JSON:
    metadata: JSON = {"resourceVersion": str(resource_version)}
    if continue_token:
        metadata["continue"] = continue_token
    return {
        "kind": "PartialObjectMetadataList",
        "apiVersion": target.api_version,
        "metadata": metadata,
        "items": [partial(item, target) for item in items],
    }


def check_single(target: Target) -> None:
    """A GET or a watch: its objects are single objects."""
    if target.as_kind == "PartialObjectMetadataList":
        raise not_acceptable(
            "you requested PartialObjectMetadataList, but the requested object is not a list"
        )


def check_list(target: Target, list_kind: str) -> None:
    if target.as_kind == "PartialObjectMetadata":
        raise not_acceptable(
            f"you requested PartialObjectMetadata, but the requested object is a list "
            f"(*v1.{list_kind})"
        )
