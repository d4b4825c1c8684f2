"""The resource types a sandbox cluster serves: the built-in kinds and those defined by CRDs.

Discovery data (plural, singular, short names, categories, verbs, subresources, namespaced) is as
``kubectl api-resources`` shows it on Kubernetes 1.33+ (k8s.io/kubernetes ``pkg/registry``
``ShortNames()``/``Categories()`` of each REST storage). ``model`` is the class name in the
``kubernetes`` Python client's models (used for strict field validation, see ``schema.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True, kw_only=True)
class ResourceType:
    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()  # "status", "scale", "token"
    model: str | None = None  # kubernetes client model class, for built-ins
    has_generation: bool = True  # metadata.generation tracks spec changes
    verbs: tuple[str, ...] = ALL_VERBS
    crd: str | None = None  # name of the defining CRD, for custom resources
    # custom resources: the openAPIV3Schema of this version, and extra discovery data
    schema: dict[str, Any] | None = field(default=None, compare=False, hash=False)
    printer_columns: tuple[dict[str, Any], ...] = field(default=(), compare=False, hash=False)
    storage_version: str = ""  # custom resources: the CRD's storage version

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> str:
        """``deployments.apps`` / ``pods``: how Kubernetes names the resource in messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def qualified_kind(self) -> str:
        """``Deployment.apps`` / ``Pod``: how Kubernetes names the kind in Invalid messages."""
        return f"{self.kind}.{self.group}" if self.group else self.kind

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def key(self) -> str:
        """Storage key: group and plural (all versions of a resource share one store)."""
        return f"{self.group}/{self.plural}"


def _core(plural: str, kind: str, **kw: Any) -> ResourceType:
    return ResourceType(group="", version="v1", plural=plural, kind=kind, singular=kind.lower(), **kw)


def _apps(plural: str, kind: str, **kw: Any) -> ResourceType:
    return ResourceType(group="apps", version="v1", plural=plural, kind=kind, singular=kind.lower(), **kw)


BUILTIN: tuple[ResourceType, ...] = (
    _core(
        "namespaces",
        "Namespace",
        namespaced=False,
        short_names=("ns",),
        subresources=("status", "finalize"),
        model="V1Namespace",
        has_generation=False,
        verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
    ),
    _core(
        "nodes",
        "Node",
        namespaced=False,
        short_names=("no",),
        subresources=("status",),
        model="V1Node",
        has_generation=False,
    ),
    _core(
        "serviceaccounts",
        "ServiceAccount",
        namespaced=True,
        short_names=("sa",),
        subresources=("token",),
        model="V1ServiceAccount",
        has_generation=False,
    ),
    _core("secrets", "Secret", namespaced=True, model="V1Secret", has_generation=False),
    _core(
        "configmaps",
        "ConfigMap",
        namespaced=True,
        short_names=("cm",),
        model="V1ConfigMap",
        has_generation=False,
    ),
    _core(
        "services",
        "Service",
        namespaced=True,
        short_names=("svc",),
        categories=("all",),
        subresources=("status",),
        model="V1Service",
        has_generation=False,
        verbs=("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"),
    ),
    _core(
        "pods",
        "Pod",
        namespaced=True,
        short_names=("po",),
        categories=("all",),
        subresources=("status",),
        model="V1Pod",
    ),
    _core("events", "Event", namespaced=True, short_names=("ev",), model="CoreV1Event", has_generation=False),
    _apps(
        "deployments",
        "Deployment",
        namespaced=True,
        short_names=("deploy",),
        categories=("all",),
        subresources=("status", "scale"),
        model="V1Deployment",
    ),
    _apps(
        "replicasets",
        "ReplicaSet",
        namespaced=True,
        short_names=("rs",),
        categories=("all",),
        subresources=("status", "scale"),
        model="V1ReplicaSet",
    ),
    _apps(
        "statefulsets",
        "StatefulSet",
        namespaced=True,
        short_names=("sts",),
        categories=("all",),
        subresources=("status", "scale"),
        model="V1StatefulSet",
    ),
    ResourceType(
        group="apiextensions.k8s.io",
        version="v1",
        plural="customresourcedefinitions",
        kind="CustomResourceDefinition",
        singular="customresourcedefinition",
        namespaced=False,
        short_names=("crd", "crds"),
        categories=("api-extensions",),
        subresources=("status",),
        model="V1CustomResourceDefinition",
    ),
)

# Review kinds: created and answered, never stored (AKS local accounts are cluster-admin).
REVIEWS: tuple[ResourceType, ...] = (
    ResourceType(
        group="authorization.k8s.io",
        version="v1",
        plural="selfsubjectaccessreviews",
        kind="SelfSubjectAccessReview",
        singular="selfsubjectaccessreview",
        namespaced=False,
        model="V1SelfSubjectAccessReview",
        has_generation=False,
        verbs=("create",),
    ),
    ResourceType(
        group="authentication.k8s.io",
        version="v1",
        plural="selfsubjectreviews",
        kind="SelfSubjectReview",
        singular="selfsubjectreview",
        namespaced=False,
        model="V1SelfSubjectReview",
        has_generation=False,
        verbs=("create",),
    ),
)
REVIEW_KEYS = {rt.key for rt in REVIEWS}

CRD_KEY = "apiextensions.k8s.io/customresourcedefinitions"
NAMESPACE_KEY = "/namespaces"


def crd_resource_types(crd: dict[str, Any]) -> list[ResourceType]:
    """The served versions of a CRD as resource types (apiextensions.k8s.io/v1 semantics)."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    versions = spec.get("versions") or []
    storage = next((v["name"] for v in versions if v.get("storage")), versions[0]["name"] if versions else "")
    out = []
    for v in versions:
        if not v.get("served", True):
            continue
        subs = tuple(k for k in ("status", "scale") if k in (v.get("subresources") or {}))
        out.append(
            ResourceType(
                group=spec.get("group", ""),
                version=v["name"],
                plural=names.get("plural", ""),
                kind=names.get("kind", ""),
                singular=names.get("singular") or names.get("kind", "").lower(),
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                subresources=subs,
                crd=(crd.get("metadata") or {}).get("name"),
                schema=((v.get("schema") or {}).get("openAPIV3Schema")) or {},
                printer_columns=tuple(v.get("additionalPrinterColumns") or ()),
                storage_version=storage,
            )
        )
    return out
