"""The object store of one sandbox cluster: what the API server serves and controllers build on.

CONTRACT (stable; controllers in ``sandbox/k8s/controllers`` rely on it)
=======================================================================

Getting a store
    ``ctx.services["k8s"].store(cluster_key)`` -> :class:`ClusterStore` (``K8sService`` in
    ``sandbox/k8s/service.py``); ``ctx.services["k8s"].stores()`` lists them, and
    ``ctx.services["k8s"].on_cluster(fn)`` calls ``fn(store)`` for every existing and future
    cluster (the place to subscribe and register mutators). Objects are plain ``dict``s in their
    JSON form (``metadata.name``, ``spec``...). Every method returns deep copies; mutate freely.

Addressing
    Kinds are addressed by ``(api_version, kind)``, e.g. ``("apps/v1", "Deployment")``,
    ``("v1", "Pod")``, ``("secrets-store.csi.x-k8s.io/v1", "SecretProviderClass")``. Custom
    resources exist once their CRD is created. ``namespace`` is ``None`` for cluster-scoped kinds.

Reads
    ``get(api_version, kind, name, namespace=None) -> dict``                    raises NotFound
    ``find(...)`` same, but returns ``None`` when absent
    ``list(api_version, kind, namespace=None, label_selector="", field_selector="") -> (items, rv)``
        selectors as in the API (``"app=x,tier in (a,b)"``, ``"status.phase=Running"``).

Writes (all raise :class:`ApiError` subclasses: NotFound, AlreadyExists, Conflict, Invalid,
BadRequest, Forbidden — with the Kubernetes message, ready to be served as a ``Status``)
    ``create(obj, *, field_manager=None) -> dict``
        stamps apiVersion/kind, uid, resourceVersion, creationTimestamp, generation 1; supports
        ``generateName``; refuses a missing or terminating namespace.
    ``update(obj, *, subresource=None, field_manager=None) -> dict``
        ``metadata.resourceVersion`` if set must match (else 409 Conflict). Without a subresource
        a kind with a status subresource keeps its old status; with ``subresource="status"``
        only ``status`` changes. ``generation`` increments when anything but metadata/status changes.
    ``update_status(obj) -> dict``  = ``update(obj, subresource="status")``
    ``patch(api_version, kind, name, body, patch_type, namespace=None, *, subresource=None,
            field_manager=None, force=False) -> dict``
        ``patch_type`` is one of :data:`PATCH_TYPES` (the Content-Types), body is the decoded
        patch (list for json-patch, dict otherwise). Apply creates when absent.
    ``delete(api_version, kind, name, namespace=None, *, propagation_policy="Background",
             preconditions=None) -> dict``
        with finalizers present: sets ``deletionTimestamp`` and returns the object (it is gone
        once an update empties ``metadata.finalizers``); otherwise removes it. Dependents (by
        ``ownerReferences`` uid) are garbage-collected when their last owner goes
        (``Orphan`` strips the references instead). A deleted Namespace turns ``Terminating``,
        its contents are deleted, and it disappears once they are gone.

Watching (controllers)
    ``subscribe(callback, *, api_version=None, kind=None, namespace=None) -> Subscription``
        ``callback(event)`` runs synchronously in the writer's thread right after each change,
        with the store lock held (the lock is re-entrant: a callback may read or write the store,
        but should rather queue work; exceptions are logged and swallowed).
    ``subscribe_queue(*, api_version=None, kind=None, namespace=None, loop=None) -> Subscription``
        events are put on ``subscription.queue`` (an ``asyncio.Queue``) of ``loop`` (default:
        the running loop) from any thread. ``subscription.close()`` stops either kind.
    :class:`WatchEvent` has ``type`` (ADDED/MODIFIED/DELETED), ``object`` (a copy), ``rtype``
    (:class:`ResourceType`), ``resource_version`` (int) and, for updates, ``old`` (the object
    before). Events are also kept (last 5000) so an HTTP watch can resume from a resourceVersion.

Admission
    ``add_mutator(api_version, kind, fn, operations=("CREATE",))`` -- ``fn(obj, operation, store)``
        mutates ``obj`` in place before validation and storage (the workload-identity webhook
        mutates Pods on CREATE); raise ``Forbidden``/``Invalid`` to deny.
    ``add_validator(api_version, kind, fn, operations=("CREATE", "UPDATE"))`` -- ``fn(obj,
        old_or_None, operation, store)`` raises to deny.

Tokens
    ``ctx.services["k8s"].mint_token(cluster_key, namespace, service_account, audience,
    expiration_seconds=3600, pod=None) -> (token, expiry_epoch)`` signs a ServiceAccount token
    like TokenRequest (raises NotFound without the ServiceAccount); ``jwks(cluster_key)`` and
    ``issuer_url(cluster_key)`` are what the issuer serves.

Built-in behaviour (what kube-controller-manager/apiserver do, so controllers need not): every
namespace gets ServiceAccount ``default`` and ConfigMap ``kube-root-ca.crt``; CRDs become
Established and their kinds are served at once; a deleted CRD stays ``Terminating`` (finalizer
``customresourcecleanup.apiextensions.k8s.io``) until its custom resources are gone; Events expire
after one hour.

Thread safety: one re-entrant lock per store; the HTTP API runs on the server's event loop and
controllers may call from any thread. State is persisted on every write, one JSON document per
resource type (``ctx.state("k8s-<key>--<group>-<plural>")``), so a restarted sandbox keeps every
object and the resourceVersion counter.
"""

from __future__ import annotations

import asyncio
import builtins
import copy
import datetime as dt
import logging
import re
import secrets
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sandbox.k8s import patch as patching
from sandbox.k8s import schema
from sandbox.k8s.kinds import BUILTIN, CRD_KEY, NAMESPACE_KEY, REVIEWS, ResourceType, crd_resource_types
from sandbox.k8s.selectors import FieldSelector, LabelSelector
from sandbox.persist import StateFile

log = logging.getLogger(__name__)

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, APPLY_PATCH)

HISTORY = 5000  # watch events kept for resuming a watch from a resourceVersion
EVENT_TTL_SECONDS = 3600
CRD_CLEANUP = "customresourcecleanup.apiextensions.k8s.io"


# -- errors ----------------------------------------------------------------------------------------
class ApiError(Exception):
    """A Kubernetes API error; :meth:`status` is the ``metav1.Status`` body."""

    code = 500
    reason = "InternalError"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None, reason: str | None = None):
        super().__init__(message)
        self.message = message
        self.details = details or {}
        if reason:
            self.reason = reason

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


class BadRequest(ApiError):
    code, reason = 400, "BadRequest"


class Unauthorized(ApiError):
    code, reason = 401, "Unauthorized"


class Forbidden(ApiError):
    code, reason = 403, "Forbidden"


class NotFound(ApiError):
    code, reason = 404, "NotFound"


class MethodNotAllowed(ApiError):
    code, reason = 405, "MethodNotAllowed"


class AlreadyExists(ApiError):
    code, reason = 409, "AlreadyExists"


class Conflict(ApiError):
    code, reason = 409, "Conflict"


class Gone(ApiError):
    code, reason = 410, "Expired"


class UnsupportedMediaType(ApiError):
    code, reason = 415, "UnsupportedMediaType"


class Invalid(ApiError):
    code, reason = 422, "Invalid"


def _details(rt: ResourceType, name: str, **extra: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"name": name, "kind": rt.plural}
    if rt.group:
        d["group"] = rt.group
    d.update(extra)
    return d


def not_found(rt: ResourceType, name: str) -> NotFound:
    return NotFound(f'{rt.group_resource} "{name}" not found', details=_details(rt, name))


def invalid(rt: ResourceType, name: str, causes: list[tuple[str, str, str]]) -> Invalid:
    """``causes``: (field, reason e.g. FieldValueRequired, message e.g. "Required value")."""
    text = "; ".join(f"{f}: {m}" for f, _, m in causes)
    if len(causes) > 1:
        text = "[" + ", ".join(f"{f}: {m}" for f, _, m in causes) + "]"
    return Invalid(
        f'{rt.qualified_kind} "{name}" is invalid: {text}',
        details=_details(
            rt, name, kind=rt.kind, causes=[{"reason": r, "message": m, "field": f} for f, r, m in causes]
        ),
    )


# -- events and subscriptions ----------------------------------------------------------------------
@dataclass(frozen=True)
class WatchEvent:
    type: str  # ADDED, MODIFIED, DELETED
    object: dict[str, Any]
    rtype: ResourceType
    resource_version: int
    old: dict[str, Any] | None = None  # MODIFIED: the object before the change


@dataclass(eq=False)
class Subscription:
    store: ClusterStore
    match: Callable[[WatchEvent], bool]
    callback: Callable[[WatchEvent], None] | None = None
    queue: asyncio.Queue[WatchEvent] | None = None
    loop: asyncio.AbstractEventLoop | None = None
    closed: bool = False

    def deliver(self, event: WatchEvent) -> None:
        if self.closed or not self.match(event):
            return
        if self.callback is not None:
            try:
                self.callback(event)
            except Exception:
                log.exception("watch callback failed on %s %s", event.type, event.rtype.kind)
        elif self.queue is not None and self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.queue.put_nowait, event)

    def close(self) -> None:
        self.closed = True
        self.store._unsubscribe(self)


@dataclass
class _Admission:
    rtype_key: str
    fn: Callable[..., None]
    operations: tuple[str, ...]


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# apimachinery validation: qualified names (label and annotation keys) and label values
_NAME_PART = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_REPLICATED = {"apps/deployments", "apps/replicasets", "apps/statefulsets"}
_INT32_MAX = 2**31 - 1


def _decode_check(rt: ResourceType, obj: dict[str, Any]) -> None:
    """What the API server's JSON decoder refuses (400, before validation): ObjectMeta's typed maps and
    lists, and ``spec.replicas`` (int32) of the apps kinds."""

    def fail(field: str, value: Any, go_type: str) -> BadRequest:
        got = {bool: "bool", int: "number", float: "number", str: "string", list: "array", dict: "object"}
        return BadRequest(
            f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: json: cannot unmarshal '
            f"{got.get(type(value), 'value')} into Go struct field {field} of type {go_type}"
        )

    meta = obj.get("metadata") or {}
    for key in ("labels", "annotations"):
        value = meta.get(key)
        if value is None:
            continue
        if not isinstance(value, dict):
            raise fail(f"ObjectMeta.metadata.{key}", value, "map[string]string")
        for v in value.values():
            if not isinstance(v, str):
                raise fail(f"ObjectMeta.metadata.{key}", v, "string")
    finalizers = meta.get("finalizers")
    if finalizers is not None:
        if not isinstance(finalizers, list):
            raise fail("ObjectMeta.metadata.finalizers", finalizers, "[]string")
        for v in finalizers:
            if not isinstance(v, str):
                raise fail("ObjectMeta.metadata.finalizers", v, "string")
    if rt.key == CRD_KEY:
        spec = obj.get("spec")
        names = spec.get("names") if isinstance(spec, dict) else None
        versions = spec.get("versions") if isinstance(spec, dict) else None
        if not isinstance(spec, dict):
            raise fail("CustomResourceDefinition.spec", spec, "v1.CustomResourceDefinitionSpec")
        if names is not None and not isinstance(names, dict):
            raise fail("CustomResourceDefinitionSpec.spec.names", names, "v1.CustomResourceDefinitionNames")
        if versions is not None and (
            not isinstance(versions, list) or not all(isinstance(v, dict) for v in versions)
        ):
            raise fail(
                "CustomResourceDefinitionSpec.spec.versions", versions, "[]v1.CustomResourceDefinitionVersion"
            )
        for key in ("group", "scope"):
            if spec.get(key) is not None and not isinstance(spec[key], str):
                raise fail(f"CustomResourceDefinitionSpec.spec.{key}", spec[key], "string")
        for key in ("plural", "singular", "kind", "listKind"):
            value = (names or {}).get(key)
            if value is not None and not isinstance(value, str):
                raise fail(f"CustomResourceDefinitionNames.spec.names.{key}", value, "string")
    if rt.key == "/pods":
        pod_spec = obj.get("spec")
        if pod_spec is not None and not isinstance(pod_spec, dict):
            raise fail("Pod.spec", pod_spec, "v1.PodSpec")
        for key in ("containers", "initContainers", "volumes"):
            items = (pod_spec or {}).get(key)
            if items is not None and (
                not isinstance(items, list) or not all(isinstance(i, dict) for i in items)
            ):
                raise fail(
                    f"PodSpec.spec.{key}", items, "[]v1.Container" if key != "volumes" else "[]v1.Volume"
                )
    if rt.key in _REPLICATED:
        replicas = (obj.get("spec") or {}).get("replicas") if isinstance(obj.get("spec"), dict) else None
        if replicas is not None and (
            isinstance(replicas, bool) or not isinstance(replicas, int) or replicas > _INT32_MAX
        ):
            raise fail(f"{rt.kind}Spec.spec.replicas", replicas, "int32")


def _check_crd_schemas(rt: ResourceType, name: str, spec: dict[str, Any]) -> None:
    """apiextensions validation: scope is Namespaced or Cluster, and each version's
    ``openAPIV3Schema`` is a schema (a ``type`` the dialect knows, ``pattern`` a valid regular
    expression, ...), checked with jsonschema's Draft 4 meta-schema (the dialect the sandbox validates
    custom resources with; Kubernetes' own structural-schema rules are stricter)."""
    import jsonschema

    causes = []
    if spec.get("scope") not in (None, "Namespaced", "Cluster"):
        causes.append(
            (
                "spec.scope",
                "FieldValueNotSupported",
                f'Unsupported value: "{spec["scope"]}": supported values: "Cluster", "Namespaced"',
            )
        )
    for i, version in enumerate(spec.get("versions") or []):
        schema = (version.get("schema") or {}).get("openAPIV3Schema") if isinstance(version, dict) else None
        if schema is None:
            continue
        try:
            jsonschema.Draft4Validator.check_schema(schema)
        except jsonschema.SchemaError as exc:
            where = ".".join(str(p) for p in exc.absolute_path)
            field = f"spec.versions[{i}].schema.openAPIV3Schema" + (f".{where}" if where else "")
            causes.append((field, "FieldValueInvalid", f"Invalid value: {exc.message[:200]}"))
    if causes:
        raise invalid(rt, name, causes)


def _qualified_name_causes(field: str, items: dict[str, Any], *, values: bool) -> list[tuple[str, str, str]]:
    causes = []
    for key, value in items.items():
        prefix, _, name = key.rpartition("/")
        if (
            not name
            or len(name) > 63
            or not _NAME_PART.match(name)
            or (prefix and (len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix)))
        ):
            causes.append(
                (
                    field,
                    "FieldValueInvalid",
                    f"Invalid value: \"{key}\": name part must consist of alphanumeric characters, '-', '_' "
                    "or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or "
                    "'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?"
                    "[A-Za-z0-9]')",
                )
            )
        elif values and (len(value) > 63 or not _LABEL_VALUE.match(value)):
            causes.append(
                (
                    field,
                    "FieldValueInvalid",
                    f'Invalid value: "{value}": a valid label must be an empty string or consist of '
                    "alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
                    "character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is "
                    "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
                )
            )
    return causes


_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_KINDS = {"namespaces", "services"}  # names must be RFC 1123 labels (apimachinery validation)
_GENERATE_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # apiserver names.SimpleNameGenerator alphabet


# -- the store -------------------------------------------------------------------------------------
@dataclass
class ClusterStore:
    """One cluster's objects (see the module docstring for the contract)."""

    key: str
    state: StateFile  # {"rv": int}
    files: Callable[[str], StateFile]  # per resource key: {"objects": {"group/plural": {"ns/name": obj}}}
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _subs: builtins.list[Subscription] = field(default_factory=list)
    _history: deque[WatchEvent] = field(default_factory=lambda: deque(maxlen=HISTORY))
    _mutators: builtins.list[_Admission] = field(default_factory=list)
    _validators: builtins.list[_Admission] = field(default_factory=list)
    _types: dict[tuple[str, str], ResourceType] = field(default_factory=dict)  # (apiVersion, kind)
    _plurals: dict[tuple[str, str, str], ResourceType] = field(default_factory=dict)  # (g, v, plural)

    def __post_init__(self) -> None:
        for rt in (*BUILTIN, *REVIEWS):
            self._register(rt)
        for crd in (self.files(CRD_KEY).read().get("objects", {}).get(CRD_KEY) or {}).values():
            for rt in crd_resource_types(crd):
                self._register(rt)

    # -- resource types -------------------------------------------------------------------------
    def _register(self, rt: ResourceType) -> None:
        self._types[(rt.api_version, rt.kind)] = rt
        self._plurals[(rt.group, rt.version, rt.plural)] = rt

    def _unregister_crd(self, crd_name: str) -> None:
        for k, rt in list(self._types.items()):
            if rt.crd == crd_name:
                del self._types[k]
                self._plurals.pop((rt.group, rt.version, rt.plural), None)

    def resource_types(self) -> builtins.list[ResourceType]:
        with self._lock:
            return list(self._plurals.values())

    def rtype(self, api_version: str, kind: str) -> ResourceType:
        with self._lock:
            rt = self._types.get((api_version, kind))
        if rt is None:
            raise NotFound(f"the server could not find the requested resource (kind {kind} in {api_version})")
        return rt

    def rtype_for(self, group: str, version: str, plural: str) -> ResourceType | None:
        with self._lock:
            return self._plurals.get((group, version, plural))

    # -- persistence ----------------------------------------------------------------------------
    def _file(self, rt: ResourceType) -> StateFile:
        """One document per resource (a pod write does not rewrite the CRDs)."""
        return self.files(rt.key)

    @property
    def resource_version(self) -> int:
        return int(self.state.read().get("rv", 0))

    def _next_rv(self) -> int:
        """The next resourceVersion; saved by the ``_put``/``_remove`` that always follows."""
        data = self.state.read()  # the live document (store lock held): saved with the next change
        data["rv"] = int(data.get("rv", 0)) + 1
        return int(data["rv"])

    def _bucket(self, rt: ResourceType) -> dict[str, dict[str, Any]]:
        return self._file(rt).read().get("objects", {}).get(rt.key, {})

    def _put(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        with self._file(rt).change() as data:
            data.setdefault("objects", {}).setdefault(rt.key, {})[_okey(obj)] = obj
        if self._file(rt) is not self.state:
            with self.state.change():
                pass  # the resourceVersion counter

    def _remove(self, rt: ResourceType, okey: str) -> None:
        with self._file(rt).change() as data:
            data.setdefault("objects", {}).setdefault(rt.key, {}).pop(okey, None)
        if self._file(rt) is not self.state:
            with self.state.change():
                pass

    # -- reads ----------------------------------------------------------------------------------
    def find(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None:
        rt = self.rtype(api_version, kind)
        return self.find_rt(rt, name, namespace)

    def find_rt(self, rt: ResourceType, name: str, namespace: str | None) -> dict[str, Any] | None:
        with self._lock:
            obj = self._bucket(rt).get(f"{namespace or ''}/{name}" if rt.namespaced else f"/{name}")
            return self._out(rt, obj) if obj is not None else None

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        rt = self.rtype(api_version, kind)
        return self.get_rt(rt, name, namespace)

    def get_rt(self, rt: ResourceType, name: str, namespace: str | None) -> dict[str, Any]:
        obj = self.find_rt(rt, name, namespace)
        if obj is None:
            raise not_found(rt, name)
        return obj

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str = "",
        field_selector: str = "",
    ) -> tuple[builtins.list[dict[str, Any]], int]:
        return self.list_rt(self.rtype(api_version, kind), namespace, label_selector, field_selector)

    def list_rt(
        self, rt: ResourceType, namespace: str | None, label_selector: str = "", field_selector: str = ""
    ) -> tuple[builtins.list[dict[str, Any]], int]:
        labels = LabelSelector.parse(label_selector)
        fields = FieldSelector.parse(field_selector, rt)
        with self._lock:
            out = []
            for obj in self._bucket(rt).values():
                meta = obj["metadata"]
                if namespace and rt.namespaced and meta.get("namespace") != namespace:
                    continue
                if labels.matches(meta.get("labels") or {}) and fields.matches(obj):
                    out.append(self._out(rt, obj))
            out.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
            return out, self.resource_version

    def _out(self, rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(obj)
        out["apiVersion"] = rt.api_version
        out["kind"] = rt.kind
        return out

    # -- writes ---------------------------------------------------------------------------------
    def create(
        self,
        obj: dict[str, Any],
        *,
        field_manager: str | None = None,
        field_validation: str = "Ignore",
        warnings: builtins.list[str] | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        rt = self.rtype(obj.get("apiVersion", ""), obj.get("kind", ""))
        return self.create_rt(
            rt,
            obj,
            field_manager=field_manager,
            field_validation=field_validation,
            warnings=warnings,
            dry_run=dry_run,
        )

    def create_rt(
        self,
        rt: ResourceType,
        obj: dict[str, Any],
        *,
        namespace: str | None = None,
        field_manager: str | None = None,
        field_validation: str = "Ignore",
        warnings: builtins.list[str] | None = None,
        dry_run: bool = False,
        managed_fields: builtins.list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        obj = copy.deepcopy(obj)
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise BadRequest("metadata must be an object")
        with self._lock:
            schema.check_fields(rt, obj, field_validation, warnings)
            if rt.namespaced:
                ns = meta.get("namespace") or namespace or "default"
                if namespace and meta.get("namespace") and meta["namespace"] != namespace:
                    raise BadRequest(
                        "the namespace of the provided object does not match the namespace sent on the "
                        "request"
                    )
                meta["namespace"] = ns
                nsobj = self._bucket(self._ns_rt()).get(f"/{ns}")
                if nsobj is None:
                    raise NotFound(f'namespaces "{ns}" not found', details={"name": ns, "kind": "namespaces"})
                if nsobj["metadata"].get("deletionTimestamp"):
                    raise Forbidden(
                        f'{rt.group_resource} "{meta.get("name") or meta.get("generateName", "")}" is '
                        "forbidden: "
                        f"unable to create new content in namespace {ns} because it is being terminated",
                        details=_details(rt, meta.get("name", "")),
                    )
            else:
                meta.pop("namespace", None)
            if rt.crd:
                crd = self._bucket(self._types[("apiextensions.k8s.io/v1", "CustomResourceDefinition")]).get(
                    f"/{rt.crd}"
                )
                if crd is not None and crd["metadata"].get("deletionTimestamp"):
                    raise MethodNotAllowed(
                        "create not allowed while custom resource definition is terminating"
                    )
            if not meta.get("name") and meta.get("generateName"):
                for _ in range(20):
                    name = meta["generateName"] + "".join(secrets.choice(_GENERATE_CHARS) for _ in range(5))
                    if self.find_rt(rt, name, meta.get("namespace")) is None:
                        meta["name"] = name
                        break
            name = meta.get("name") or ""
            if not name:
                raise invalid(
                    rt,
                    "",
                    [
                        (
                            "metadata.name",
                            "FieldValueRequired",
                            "Required value: name or generateName is required",
                        )
                    ],
                )
            self._validate_name(rt, name)
            if self.find_rt(rt, name, meta.get("namespace")) is not None:
                raise AlreadyExists(
                    f'{rt.group_resource} "{name}" already exists', details=_details(rt, name)
                )
            for key in (
                "uid",
                "resourceVersion",
                "creationTimestamp",
                "deletionTimestamp",
                "generation",
                "selfLink",
            ):
                meta.pop(key, None)
            if "status" in rt.subresources and rt.key not in (NAMESPACE_KEY, "/nodes"):
                obj.pop("status", None)  # strategies' PrepareForCreate reset status
            _decode_check(rt, obj)
            schema.default(rt, obj)
            self._admit(rt, obj, None, "CREATE")
            obj = schema.validate(rt, obj, None, field_validation, warnings)
            self._validate_meta(rt, obj)
            meta = obj["metadata"]
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now_iso()
            if rt.has_generation:
                meta["generation"] = 1
            if managed_fields is not None:
                meta["managedFields"] = managed_fields
            elif field_manager:
                meta["managedFields"] = [patching.managed_entry(rt, field_manager, "Update", obj)]
            if dry_run:
                meta["resourceVersion"] = str(self.resource_version)
                return self._out(rt, obj)
            rv = self._next_rv()
            meta["resourceVersion"] = str(rv)
            self._put(rt, obj)
            self._emit("ADDED", rt, obj, rv)
            self._after_create(rt, obj)
            return self._out(rt, obj)

    def update(
        self,
        obj: dict[str, Any],
        *,
        subresource: str | None = None,
        field_manager: str | None = None,
        field_validation: str = "Ignore",
        warnings: builtins.list[str] | None = None,
    ) -> dict[str, Any]:
        rt = self.rtype(obj.get("apiVersion", ""), obj.get("kind", ""))
        meta = obj.get("metadata") or {}
        return self.update_rt(
            rt,
            meta.get("name", ""),
            meta.get("namespace"),
            obj,
            subresource=subresource,
            field_manager=field_manager,
            field_validation=field_validation,
            warnings=warnings,
        )

    def update_status(self, obj: dict[str, Any]) -> dict[str, Any]:
        return self.update(obj, subresource="status")

    def update_rt(
        self,
        rt: ResourceType,
        name: str,
        namespace: str | None,
        obj: dict[str, Any],
        *,
        subresource: str | None = None,
        field_manager: str | None = None,
        field_validation: str = "Ignore",
        warnings: builtins.list[str] | None = None,
        managed_fields: builtins.list[dict[str, Any]] | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        obj = copy.deepcopy(obj)
        with self._lock:
            current = self.find_rt(rt, name, namespace)
            if current is None:
                raise not_found(rt, name)
            schema.check_fields(rt, obj, field_validation, warnings)
            meta = obj.setdefault("metadata", {})
            if meta.get("name", name) != name:
                raise BadRequest("the name of the object does not match the name on the URL")
            if rt.namespaced and meta.get("namespace", namespace) != namespace:
                raise BadRequest("the namespace of the object does not match the namespace on the URL")
            cmeta = current["metadata"]
            if meta.get("resourceVersion") and meta["resourceVersion"] != cmeta["resourceVersion"]:
                raise Conflict(
                    f'Operation cannot be fulfilled on {rt.group_resource} "{name}": the object has been '
                    "modified; please apply your changes to the latest version and try again",
                    details=_details(rt, name),
                )
            if meta.get("uid") and meta["uid"] != cmeta["uid"]:
                raise Conflict(
                    f"Precondition failed: UID in precondition: {meta['uid']}, "
                    f"UID in object meta: {cmeta['uid']}",
                    details=_details(rt, name),
                )
            new = self._merge_update(rt, current, obj, subresource)
            _decode_check(rt, new)
            schema.default(rt, new)
            if subresource is None:
                self._admit(rt, new, current, "UPDATE")
            new = schema.validate(rt, new, current, field_validation, warnings)
            self._validate_meta(rt, new)
            nmeta = new["metadata"]
            if managed_fields is not None:
                nmeta["managedFields"] = managed_fields
            elif field_manager:
                nmeta["managedFields"] = patching.record_update(
                    rt, nmeta.get("managedFields") or [], field_manager, current, new, subresource
                )
            if _strip(new) == _strip(current):
                return current  # a no-op write changes nothing, not even resourceVersion
            if rt.has_generation and subresource is None and _spec_of(new) != _spec_of(current):
                nmeta["generation"] = int(cmeta.get("generation", 1)) + 1
            if dry_run:
                return self._out(rt, new)
            if cmeta.get("deletionTimestamp") and not nmeta.get("finalizers"):
                self._really_delete(rt, new)
                return self._out(rt, new)
            rv = self._next_rv()
            nmeta["resourceVersion"] = str(rv)
            self._put(rt, new)
            self._emit("MODIFIED", rt, new, rv, old=current)
            if rt.key == CRD_KEY:
                self._crd_changed(new)
            return self._out(rt, new)

    def _merge_update(
        self, rt: ResourceType, current: dict[str, Any], obj: dict[str, Any], subresource: str | None
    ) -> dict[str, Any]:
        cmeta = current["metadata"]
        if subresource == "status":
            new = copy.deepcopy(current)
            if "status" in obj:
                new["status"] = obj["status"]
            else:
                new.pop("status", None)
            return new
        new = copy.deepcopy(obj)
        new["apiVersion"], new["kind"] = rt.api_version, rt.kind
        meta = new["metadata"]
        # system fields are the server's
        for key in ("uid", "creationTimestamp", "generation", "namespace", "name", "resourceVersion"):
            if key in cmeta:
                meta[key] = cmeta[key]
        meta.pop("selfLink", None)
        if cmeta.get("deletionTimestamp"):
            meta["deletionTimestamp"] = cmeta["deletionTimestamp"]
            if "deletionGracePeriodSeconds" in cmeta:
                meta["deletionGracePeriodSeconds"] = cmeta["deletionGracePeriodSeconds"]
            added = set(meta.get("finalizers") or []) - set(cmeta.get("finalizers") or [])
            if added:
                raise Forbidden(
                    f'{rt.group_resource} "{cmeta["name"]}" is forbidden: no new finalizers can be added '
                    "if the object is being deleted",
                    details=_details(rt, cmeta["name"]),
                )
        else:
            meta.pop("deletionTimestamp", None)
        if "managedFields" not in meta and "managedFields" in cmeta:
            meta["managedFields"] = cmeta["managedFields"]
        if "status" in rt.subresources or rt.key == NAMESPACE_KEY:
            if "status" in current:
                new["status"] = current["status"]
            else:
                new.pop("status", None)
        return new

    def patch(
        self,
        api_version: str,
        kind: str,
        name: str,
        body: Any,
        patch_type: str,
        namespace: str | None = None,
        *,
        subresource: str | None = None,
        field_manager: str | None = None,
        force: bool = False,
        field_validation: str = "Ignore",
        warnings: builtins.list[str] | None = None,
    ) -> dict[str, Any]:
        return self.patch_rt(
            self.rtype(api_version, kind),
            name,
            namespace,
            body,
            patch_type,
            subresource=subresource,
            field_manager=field_manager,
            force=force,
            field_validation=field_validation,
            warnings=warnings,
        )

    def patch_rt(
        self,
        rt: ResourceType,
        name: str,
        namespace: str | None,
        body: Any,
        patch_type: str,
        *,
        subresource: str | None = None,
        field_manager: str | None = None,
        force: bool = False,
        field_validation: str = "Ignore",
        warnings: builtins.list[str] | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        with self._lock:
            current = self.find_rt(rt, name, namespace)
            if patch_type == APPLY_PATCH:
                if not field_manager:
                    raise BadRequest(
                        "PATCH, application/apply-patch+yaml: fieldManager is required for apply requests"
                    )
                if not isinstance(body, dict):
                    raise BadRequest("apply patches must be a single object")
                schema.check_fields(rt, body, field_validation, warnings)
                if current is None:
                    if subresource:
                        raise not_found(rt, name)
                    obj = copy.deepcopy(body)
                    obj.setdefault("metadata", {}).setdefault("name", name)
                    if rt.namespaced:
                        obj["metadata"].setdefault("namespace", namespace)
                    managed = [patching.managed_entry(rt, field_manager, "Apply", body, subresource)]
                    return self.create_rt(
                        rt,
                        obj,
                        namespace=namespace,
                        managed_fields=managed,
                        dry_run=dry_run,
                        field_validation="Ignore",
                    )
                new, managed = patching.apply(rt, current, body, field_manager, force, subresource)
                return self.update_rt(
                    rt,
                    name,
                    namespace,
                    new,
                    subresource=subresource,
                    managed_fields=managed,
                    dry_run=dry_run,
                )
            if current is None:
                raise not_found(rt, name)
            if patch_type == JSON_PATCH:
                new = patching.json_patch(current, body)
            elif patch_type == MERGE_PATCH:
                new = patching.merge_patch(current, body)
            elif patch_type == STRATEGIC_MERGE_PATCH:
                if rt.crd:
                    raise UnsupportedMediaType(
                        f"the body of the request was in an unknown format - accepted media types include: "
                        f"{JSON_PATCH}, {MERGE_PATCH}, {APPLY_PATCH}"
                    )
                new = patching.strategic_merge_patch(rt, current, body)
            else:
                raise UnsupportedMediaType(
                    f"the body of the request was in an unknown format - accepted media types include: "
                    f"{', '.join(PATCH_TYPES)}"
                )
            if not isinstance(new, dict):  # e.g. a merge patch whose body is not an object (RFC 7386)
                raise BadRequest(
                    f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: json: cannot '
                    "unmarshal array into Go value of type map[string]interface {}"
                )
            if isinstance(body, dict):
                schema.check_fields(rt, new, field_validation, warnings)
            new.setdefault("metadata", {})["resourceVersion"] = (
                (body.get("metadata") or {}).get("resourceVersion") if isinstance(body, dict) else None
            ) or current["metadata"]["resourceVersion"]
            return self.update_rt(
                rt,
                name,
                namespace,
                new,
                subresource=subresource,
                field_manager=field_manager,
                dry_run=dry_run,
            )

    def delete(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None = None,
        *,
        propagation_policy: str | None = None,
        preconditions: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        return self.delete_rt(
            self.rtype(api_version, kind),
            name,
            namespace,
            propagation_policy=propagation_policy,
            preconditions=preconditions,
        )

    def delete_rt(
        self,
        rt: ResourceType,
        name: str,
        namespace: str | None,
        *,
        propagation_policy: str | None = None,
        preconditions: dict[str, Any] | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Delete; see the contract. Foreground propagation deletes dependents first, synchronously."""
        with self._lock:
            current = self.find_rt(rt, name, namespace)
            if current is None:
                raise not_found(rt, name)
            meta = current["metadata"]
            pre = preconditions or {}
            if pre.get("uid") and pre["uid"] != meta["uid"]:
                raise Conflict(
                    f"Precondition failed: UID in precondition: {pre['uid']}, "
                    f"UID in object meta: {meta['uid']}",
                    details=_details(rt, name),
                )
            if pre.get("resourceVersion") and pre["resourceVersion"] != meta["resourceVersion"]:
                raise Conflict(
                    f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, "
                    f"ResourceVersion in object meta: {meta['resourceVersion']}",
                    details=_details(rt, name),
                )
            if dry_run:
                return current
            if meta.get("deletionTimestamp"):
                return current
            policy = propagation_policy or "Background"
            if policy == "Orphan":
                self._orphan(meta["uid"])
            if rt.key == NAMESPACE_KEY:
                return self._terminate_namespace(rt, current)
            if rt.key == CRD_KEY:
                return self._terminate_crd(rt, current)
            if policy == "Foreground":
                self._collect(meta["uid"], "Foreground")
            if meta.get("finalizers"):
                meta["deletionTimestamp"] = now_iso()
                meta["deletionGracePeriodSeconds"] = 0
                rv = self._next_rv()
                meta["resourceVersion"] = str(rv)
                self._put(rt, current)
                self._emit("MODIFIED", rt, current, rv)
                return self._out(rt, current)
            self._really_delete(rt, current)
            return current

    # -- deletion machinery ---------------------------------------------------------------------
    def _really_delete(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        rv = self._next_rv()
        self._remove(rt, _okey(obj))
        meta["resourceVersion"] = str(rv)
        self._emit("DELETED", rt, obj, rv)
        if rt.key == CRD_KEY:
            self._crd_deleted(obj)
        self._collect(meta["uid"], "Background")
        if rt.namespaced:
            self._maybe_finish_namespace(meta.get("namespace", ""))
        if rt.crd:
            self._maybe_finish_crd(rt.crd)

    def _terminate_crd(self, rt: ResourceType, crd: dict[str, Any]) -> dict[str, Any]:
        """CRD deletion (apiextensions-apiserver): the ``customresourcecleanup`` finalizer holds the
        CRD, ``Terminating`` while its custom resources are deleted (their finalizers hold them,
        PITFALLS P23), then it goes; no new custom resources meanwhile."""
        meta = crd["metadata"]
        meta["deletionTimestamp"] = now_iso()
        meta["finalizers"] = [*(meta.get("finalizers") or []), CRD_CLEANUP]
        status = crd.setdefault("status", {})
        status["conditions"] = [
            c for c in status.get("conditions") or [] if c.get("type") != "Terminating"
        ] + [
            {
                "type": "Terminating",
                "status": "True",
                "reason": "InstanceDeletionInProgress",
                "message": "CustomResource deletion is in progress",
                "lastTransitionTime": now_iso(),
            }
        ]
        rv = self._next_rv()
        meta["resourceVersion"] = str(rv)
        self._put(rt, crd)
        self._emit("MODIFIED", rt, crd, rv)
        name = meta["name"]
        for crt in [r for r in self._plurals.values() if r.crd == name][:1]:
            for obj in list(self._bucket(crt).values()):
                m = obj["metadata"]
                if self.find_rt(crt, m["name"], m.get("namespace")) is not None:
                    self.delete_rt(crt, m["name"], m.get("namespace"))
        self._maybe_finish_crd(name)
        return self.find_rt(rt, name, None) or self._out(rt, crd)

    def _maybe_finish_crd(self, name: str) -> None:
        rt = self._types[("apiextensions.k8s.io/v1", "CustomResourceDefinition")]
        crd = self._bucket(rt).get(f"/{name}")
        if crd is None or not crd["metadata"].get("deletionTimestamp"):
            return
        crts = [r for r in self._plurals.values() if r.crd == name]
        if crts and self._bucket(crts[0]):
            return
        crd = copy.deepcopy(crd)
        finalizers = [f for f in crd["metadata"].get("finalizers") or [] if f != CRD_CLEANUP]
        crd["metadata"]["finalizers"] = finalizers
        if finalizers:
            rv = self._next_rv()
            crd["metadata"]["resourceVersion"] = str(rv)
            self._put(rt, crd)
            self._emit("MODIFIED", rt, crd, rv)
        else:
            self._really_delete(rt, crd)

    def _all_objects(self) -> Iterable[tuple[ResourceType, dict[str, Any]]]:
        seen: set[str] = set()
        for rt in list(self._plurals.values()):
            if rt.key in seen:
                continue
            seen.add(rt.key)
            for obj in list(self._bucket(rt).values()):
                yield rt, obj

    def _collect(self, owner_uid: str, policy: str) -> None:
        """Garbage collection: delete dependents whose owners are all gone (or this one, Foreground)."""
        live = None
        for rt, obj in list(self._all_objects()):
            refs = obj["metadata"].get("ownerReferences") or []
            if not any(r.get("uid") == owner_uid for r in refs):
                continue
            if policy != "Foreground":
                if live is None:
                    live = {o["metadata"]["uid"] for _, o in self._all_objects()}
                if any(r.get("uid") in live for r in refs if r.get("uid") != owner_uid):
                    continue
            m = obj["metadata"]
            if self.find_rt(rt, m["name"], m.get("namespace")) is not None:
                self.delete_rt(rt, m["name"], m.get("namespace"), propagation_policy=policy)

    def _orphan(self, owner_uid: str) -> None:
        for rt, obj in list(self._all_objects()):
            refs = obj["metadata"].get("ownerReferences") or []
            if any(r.get("uid") == owner_uid for r in refs):
                new = copy.deepcopy(obj)
                new["metadata"]["ownerReferences"] = [r for r in refs if r.get("uid") != owner_uid]
                if not new["metadata"]["ownerReferences"]:
                    del new["metadata"]["ownerReferences"]
                m = new["metadata"]
                self.update_rt(rt, m["name"], m.get("namespace"), new)

    def _ns_rt(self) -> ResourceType:
        return self._types[("v1", "Namespace")]

    def _terminate_namespace(self, rt: ResourceType, ns: dict[str, Any]) -> dict[str, Any]:
        """Namespace deletion (k8s namespace lifecycle): Terminating, contents deleted, then gone."""
        meta = ns["metadata"]
        meta["deletionTimestamp"] = now_iso()
        ns.setdefault("status", {})["phase"] = "Terminating"
        rv = self._next_rv()
        meta["resourceVersion"] = str(rv)
        self._put(rt, ns)
        self._emit("MODIFIED", rt, ns, rv)
        name = meta["name"]
        for ort, obj in list(self._all_objects()):
            if ort.namespaced and obj["metadata"].get("namespace") == name:
                m = obj["metadata"]
                if self.find_rt(ort, m["name"], name) is not None:
                    self.delete_rt(ort, m["name"], name)
        self._maybe_finish_namespace(name)
        return self.find_rt(rt, name, None) or self._out(rt, ns)

    def _maybe_finish_namespace(self, name: str) -> None:
        rt = self._ns_rt()
        ns = self._bucket(rt).get(f"/{name}")
        if ns is None or not ns["metadata"].get("deletionTimestamp"):
            return
        remaining: dict[str, int] = {}
        finalizers: dict[str, int] = {}
        for ort, obj in self._all_objects():
            if ort.namespaced and obj["metadata"].get("namespace") == name:
                remaining[ort.group_resource] = remaining.get(ort.group_resource, 0) + 1
                for f in obj["metadata"].get("finalizers") or []:
                    finalizers[f] = finalizers.get(f, 0) + 1
        if remaining:
            self._namespace_conditions(rt, ns, remaining, finalizers)
            return
        ns = copy.deepcopy(ns)
        if ns["metadata"].get("finalizers"):
            return  # metadata finalizers of the namespace itself hold it (spec.finalizers are ours)
        self._really_delete(rt, ns)

    def _namespace_conditions(
        self, rt: ResourceType, ns: dict[str, Any], remaining: dict[str, int], finalizers: dict[str, int]
    ) -> None:
        """What a stuck namespace shows (namespace controller's ``NamespaceContentRemaining`` and
        ``NamespaceFinalizersRemaining`` conditions), so ``kubectl get ns -o yaml`` names the hold-up."""
        ts = now_iso()
        conds = [
            {
                "type": "NamespaceContentRemaining",
                "status": "True",
                "reason": "SomeResourcesRemain",
                "message": "Some resources are remaining: "
                + ", ".join(f"{k} has {v} resource instances" for k, v in sorted(remaining.items())),
                "lastTransitionTime": ts,
            },
            {
                "type": "NamespaceFinalizersRemaining",
                "status": "True" if finalizers else "False",
                "reason": "SomeFinalizersRemain" if finalizers else "ContentHasNoFinalizers",
                "message": (
                    "Some content in the namespace has finalizers remaining: "
                    + ", ".join(f"{k} in {v} resource instances" for k, v in sorted(finalizers.items()))
                )
                if finalizers
                else "All content-preserving finalizers finished",
                "lastTransitionTime": ts,
            },
        ]
        old = [
            {k: v for k, v in c.items() if k != "lastTransitionTime"}
            for c in (ns.get("status") or {}).get("conditions") or []
        ]
        if old == [{k: v for k, v in c.items() if k != "lastTransitionTime"} for c in conds]:
            return
        ns = copy.deepcopy(ns)
        ns.setdefault("status", {})["conditions"] = conds
        rv = self._next_rv()
        ns["metadata"]["resourceVersion"] = str(rv)
        self._put(rt, ns)
        self._emit("MODIFIED", rt, ns, rv)

    # -- side effects of creation ---------------------------------------------------------------
    def _after_create(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        if rt.key == NAMESPACE_KEY:
            # the ServiceAccount controller (kube-controller-manager) gives every namespace "default"
            ns = obj["metadata"]["name"]
            sa_rt = self._types[("v1", "ServiceAccount")]
            if self.find_rt(sa_rt, "default", ns) is None:
                self.create_rt(sa_rt, {"metadata": {"name": "default", "namespace": ns}})
        elif rt.key == CRD_KEY:
            self._crd_changed(obj)
        elif rt.key == "/events":
            self._expire_events()

    def _expire_events(self) -> None:
        """Events live one hour (kube-apiserver ``--event-ttl`` default 1h), then they are gone."""
        rt = self._types[("v1", "Event")]
        cutoff = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=EVENT_TTL_SECONDS)).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
        for ev in list(self._bucket(rt).values()):
            last = (
                ev.get("lastTimestamp") or ev.get("eventTime") or ev["metadata"].get("creationTimestamp", "")
            )
            if str(last)[:20] < cutoff:
                self._really_delete(rt, copy.deepcopy(ev))

    def _crd_changed(self, crd: dict[str, Any]) -> None:
        """A created/updated CRD: serve its versions and mark it Established (apiextensions controller)."""
        name = crd["metadata"]["name"]
        self._unregister_crd(name)
        for rt in crd_resource_types(crd):
            self._register(rt)
        status = crd.get("status") or {}
        conds = [
            c for c in status.get("conditions") or [] if c.get("type") not in ("NamesAccepted", "Established")
        ]
        ts = now_iso()
        conds += [
            {
                "type": "NamesAccepted",
                "status": "True",
                "reason": "NoConflicts",
                "message": "no conflicts found",
                "lastTransitionTime": ts,
            },
            {
                "type": "Established",
                "status": "True",
                "reason": "InitialNamesAccepted",
                "message": "the initial names have been accepted",
                "lastTransitionTime": ts,
            },
        ]
        spec = crd.get("spec") or {}
        new_status = {
            "acceptedNames": spec.get("names") or {},
            "conditions": conds,
            "storedVersions": [v["name"] for v in spec.get("versions") or [] if v.get("storage")],
        }
        old = {k: v for k, v in status.items()}
        if {k: v for k, v in old.items() if k != "conditions"} == {
            k: v for k, v in new_status.items() if k != "conditions"
        } and {c["type"] for c in status.get("conditions") or []} >= {"NamesAccepted", "Established"}:
            return
        crd_rt = self._types[("apiextensions.k8s.io/v1", "CustomResourceDefinition")]
        stored = self._bucket(crd_rt).get(f"/{name}")
        if stored is None:
            return
        stored = copy.deepcopy(stored)
        stored["status"] = new_status
        rv = self._next_rv()
        stored["metadata"]["resourceVersion"] = str(rv)
        self._put(crd_rt, stored)
        self._emit("MODIFIED", crd_rt, stored, rv)

    def _crd_deleted(self, crd: dict[str, Any]) -> None:
        name = crd["metadata"]["name"]
        rts = [rt for rt in self._plurals.values() if rt.crd == name]
        if rts:
            rt = rts[0]
            for obj in list(self._bucket(rt).values()):
                cur = self._bucket(rt).get(_okey(obj))
                if cur is not None:
                    m2 = copy.deepcopy(cur)
                    m2["metadata"].pop("finalizers", None)
                    self._really_delete(rt, m2)
        self._unregister_crd(name)

    def _validate_meta(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        """ObjectMeta rules every kind shares (apimachinery ``ValidateObjectMeta``)."""
        meta = obj["metadata"]
        _decode_check(rt, obj)
        causes = [
            *_qualified_name_causes("metadata.labels", meta.get("labels") or {}, values=True),
            *_qualified_name_causes("metadata.annotations", meta.get("annotations") or {}, values=False),
        ]
        if rt.key in _REPLICATED and isinstance((obj.get("spec") or {}).get("replicas"), int):
            if obj["spec"]["replicas"] < 0:
                causes.append(
                    (
                        "spec.replicas",
                        "FieldValueInvalid",
                        f"Invalid value: {obj['spec']['replicas']}: must be greater than or equal to 0",
                    )
                )
        if causes:
            raise invalid(rt, meta.get("name", ""), causes)
        annotations = meta.get("annotations") or {}
        size = sum(len(k) + len(str(v)) for k, v in annotations.items())
        if size > 262144:
            raise invalid(
                rt,
                meta.get("name", ""),
                [("metadata.annotations", "FieldValueTooLong", "Too long: must have at most 262144 bytes")],
            )
        if rt.key == CRD_KEY:
            spec = obj.get("spec") or {}
            _check_crd_schemas(rt, meta.get("name", ""), spec)
            want = f"{(spec.get('names') or {}).get('plural', '')}.{spec.get('group', '')}"
            if meta.get("name") != want:
                raise invalid(
                    rt,
                    meta.get("name", ""),
                    [
                        (
                            "metadata.name",
                            "FieldValueInvalid",
                            f'Invalid value: "{meta.get("name")}": must be spec.names.plural+"."+spec.group',
                        )
                    ],
                )

    def _validate_name(self, rt: ResourceType, name: str) -> None:
        if rt.key in {f"/{k}" for k in _LABEL_KINDS}:
            if len(name) > 63 or not _DNS1123_LABEL.match(name):
                raise invalid(
                    rt,
                    name,
                    [
                        (
                            "metadata.name",
                            "FieldValueInvalid",
                            f'Invalid value: "{name}": a lowercase RFC 1123 label must consist of lower case '
                            "alphanumeric characters or '-', and must start and end with an alphanumeric "
                            "character (e.g. 'my-name',  or '123-abc', regex used for validation is "
                            "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
                        )
                    ],
                )
        elif rt.key != CRD_KEY and (len(name) > 253 or not _DNS1123_SUBDOMAIN.match(name)):
            raise invalid(
                rt,
                name,
                [
                    (
                        "metadata.name",
                        "FieldValueInvalid",
                        f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of lower case '
                        "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric "
                        "character (e.g. 'example.com', regex used for validation is "
                        "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
                    )
                ],
            )

    # -- admission ------------------------------------------------------------------------------
    def add_mutator(
        self,
        api_version: str,
        kind: str,
        fn: Callable[[dict[str, Any], str, ClusterStore], None],
        operations: tuple[str, ...] = ("CREATE",),
    ) -> None:
        with self._lock:
            self._mutators.append(_Admission(f"{api_version}/{kind}", fn, operations))

    def add_validator(
        self,
        api_version: str,
        kind: str,
        fn: Callable[[dict[str, Any], dict[str, Any] | None, str, ClusterStore], None],
        operations: tuple[str, ...] = ("CREATE", "UPDATE"),
    ) -> None:
        with self._lock:
            self._validators.append(_Admission(f"{api_version}/{kind}", fn, operations))

    def _admit(self, rt: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None, op: str) -> None:
        key = f"{rt.api_version}/{rt.kind}"
        for m in self._mutators:
            if m.rtype_key == key and op in m.operations:
                m.fn(obj, op, self)
        for v in self._validators:
            if v.rtype_key == key and op in v.operations:
                v.fn(obj, old, op, self)

    # -- watch ----------------------------------------------------------------------------------
    def _emit(
        self, type_: str, rt: ResourceType, obj: dict[str, Any], rv: int, old: dict[str, Any] | None = None
    ) -> None:
        event = WatchEvent(type_, self._out(rt, obj), rt, rv, old)
        self._history.append(event)
        for sub in list(self._subs):
            sub.deliver(event)

    def _matcher(
        self, api_version: str | None, kind: str | None, namespace: str | None
    ) -> Callable[[WatchEvent], bool]:
        key = self.rtype(api_version, kind).key if api_version and kind else None

        def match(ev: WatchEvent) -> bool:
            if key is not None and ev.rtype.key != key:
                return False
            return not (namespace and ev.object["metadata"].get("namespace") != namespace)

        return match

    def subscribe(
        self,
        callback: Callable[[WatchEvent], None],
        *,
        api_version: str | None = None,
        kind: str | None = None,
        namespace: str | None = None,
    ) -> Subscription:
        sub = Subscription(self, self._matcher(api_version, kind, namespace), callback=callback)
        with self._lock:
            self._subs.append(sub)
        return sub

    def subscribe_queue(
        self,
        *,
        api_version: str | None = None,
        kind: str | None = None,
        namespace: str | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        match: Callable[[WatchEvent], bool] | None = None,
    ) -> Subscription:
        sub = Subscription(
            self,
            match or self._matcher(api_version, kind, namespace),
            queue=asyncio.Queue(),
            loop=loop or asyncio.get_running_loop(),
        )
        with self._lock:
            self._subs.append(sub)
        return sub

    def history_since(self, rv: int) -> builtins.list[WatchEvent] | None:
        """Events after ``rv``, or None when ``rv`` is older than the kept history (410 Expired)."""
        with self._lock:
            if rv >= self.resource_version:
                return []
            if not self._history or self._history[0].resource_version > rv + 1:
                return None
            return [e for e in self._history if e.resource_version > rv]

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)


def _okey(obj: dict[str, Any]) -> str:
    m = obj["metadata"]
    return f"{m.get('namespace') or ''}/{m['name']}"


def _strip(obj: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    out["metadata"].pop("resourceVersion", None)
    for entry in out["metadata"].get("managedFields") or []:
        entry.pop("time", None)
    return out


def _spec_of(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}
