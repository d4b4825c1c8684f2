"""What every controller uses: the object API it talks to, conditions, events, owner references.

Controllers see a cluster through :class:`KubeApi` (plain dict objects, keyed by apiVersion + kind),
implemented over the sandbox store by :mod:`sandbox.k8s.controllers.runtime`. Writes made through it
are ordinary API writes: they bump ``resourceVersion`` and reach watchers (``kubectl wait``).

Durations follow :mod:`sandbox.clock`: a base figure times ``time_scale``; an entry in
``clock.overrides`` (absolute seconds) wins. The base figures below are estimates of what an AKS
node shows (image pull of a small public image, container start), not measured on Azure.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import secrets
from typing import Any, Protocol

from sandbox.clock import Clock
from sandbox.k8s.store import AlreadyExists, ApiError, Conflict, Invalid, NotFound

__all__ = ["AlreadyExists", "ApiError", "Conflict", "Invalid", "NotFound"]

Obj = dict[str, Any]

# Estimates (seconds at time_scale 1); Azure publishes no figure. Overridable via clock.overrides.
BASE_DURATIONS: dict[str, float] = {
    "pod.schedule": 1.0,
    "pod.image_pull": 8.0,
    "pod.start": 2.0,
    "argocd.reconcile": 180.0,  # Argo CD timeout.reconciliation default (argocd-cm) is 180 s
}


def duration(clock: Clock, op: str) -> float:
    if op in clock.overrides:
        return max(0.0, clock.overrides[op])
    return BASE_DURATIONS[op] * clock.time_scale


class KubeApi(Protocol):
    """One cluster's objects, as the API server stores them."""

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> Obj | None: ...

    def list(
        self, api_version: str, kind: str, namespace: str | None = None, labels: dict[str, str] | None = None
    ) -> list[Obj]: ...

    def create(self, obj: Obj) -> Obj: ...

    def update(self, obj: Obj) -> Obj:
        """Replace (spec + metadata); raises :class:`Conflict` on a stale resourceVersion."""
        ...

    def update_status(self, obj: Obj) -> Obj:
        """Replace the ``status`` subresource."""
        ...

    def delete(self, api_version: str, kind: str, namespace: str | None, name: str) -> None:
        """Delete (absent is fine); finalizers and garbage collection are the store's."""
        ...

    def namespaced(self, api_version: str, kind: str) -> bool: ...


def now_iso(clock: Clock | None = None) -> str:
    t = clock.now() if clock is not None else dt.datetime.now(dt.UTC).timestamp()
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(value: str | None) -> float | None:
    if not value:
        return None
    return dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC).timestamp()


def meta(obj: Obj) -> dict[str, Any]:
    md: dict[str, Any] = obj.setdefault("metadata", {})
    return md


def labels_of(obj: Obj) -> dict[str, str]:
    return dict(obj.get("metadata", {}).get("labels") or {})


def owner_ref(owner: Obj, *, controller: bool = True, block: bool = True) -> dict[str, Any]:
    ref: dict[str, Any] = {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
    }
    if controller:
        ref["controller"] = True
    if block:
        ref["blockOwnerDeletion"] = True
    return ref


def controller_of(obj: Obj) -> dict[str, Any] | None:
    for ref in obj.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return None


def is_owned_by(obj: Obj, owner: Obj) -> bool:
    uid = owner["metadata"].get("uid")
    return any(r.get("uid") == uid for r in obj.get("metadata", {}).get("ownerReferences") or [])


def selector_matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """A LabelSelector (matchLabels + matchExpressions) against labels (apimachinery semantics)."""
    if not selector:
        return False
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if (
            (op == "In" and labels.get(key) not in values)
            or (op == "NotIn" and key in labels and labels[key] in values)
            or (op == "Exists" and key not in labels)
            or (op == "DoesNotExist" and key in labels)
        ):
            return False
    return True


def set_condition(
    conditions: list[dict[str, Any]],
    ctype: str,
    status: str,
    reason: str,
    message: str,
    now: str,
    *,
    update_time: bool = False,
) -> None:
    """Set a condition in place; ``lastTransitionTime`` changes only when ``status`` does."""
    for cond in conditions:
        if cond.get("type") == ctype:
            if cond.get("status") != status:
                cond["lastTransitionTime"] = now
            if update_time and (
                cond.get("status") != status or cond.get("reason") != reason or cond.get("message") != message
            ):
                cond["lastUpdateTime"] = now
            cond.update(status=status, reason=reason, message=message)
            return
    new: dict[str, Any] = {"type": ctype, "status": status}
    if update_time:
        new["lastUpdateTime"] = now
    new.update(lastTransitionTime=now, reason=reason, message=message)
    conditions.append(new)


def get_condition(obj: Obj, ctype: str) -> dict[str, Any] | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == ctype:
            return dict(cond)
    return None


_SAFE = "bcdfghjklmnpqrstvwxz2456789"


def safe_encode_string(text: str) -> str:
    """apimachinery ``rand.SafeEncodeString``: each byte mapped into an alphabet with no vowels."""
    return "".join(_SAFE[b % len(_SAFE)] for b in text.encode())


def random_suffix(length: int = 5) -> str:
    """``generateName`` suffix: 5 characters of the SafeEncodeString alphabet (apiserver names.go)."""
    return "".join(secrets.choice(_SAFE) for _ in range(length))


def fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def b64(value: str | bytes) -> str:
    raw = value.encode() if isinstance(value, str) else value
    return base64.b64encode(raw).decode()


def record_event(
    api: KubeApi,
    involved: Obj,
    *,
    type_: str,
    reason: str,
    message: str,
    component: str,
    clock: Clock | None = None,
    host: str | None = None,
) -> None:
    """Create a core/v1 Event, or bump ``count``/``lastTimestamp`` of the same one (client-go's
    event correlator aggregates identical events the same way)."""
    md = involved["metadata"]
    ns = md.get("namespace") or "default"
    key = hashlib.sha256(
        f"{md.get('uid')}|{reason}|{message}|{component}".encode(), usedforsecurity=False
    ).hexdigest()[:16]
    name = f"{md['name']}.{key}"
    now = now_iso(clock)
    existing = api.get("v1", "Event", ns, name)
    if existing is not None:
        existing["count"] = int(existing.get("count") or 1) + 1
        existing["lastTimestamp"] = now
        try:
            api.update(existing)
        except (Conflict, NotFound):
            pass
        return
    event: Obj = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": ns},
        "involvedObject": {
            "apiVersion": involved.get("apiVersion"),
            "kind": involved.get("kind"),
            "name": md["name"],
            "namespace": md.get("namespace"),
            "uid": md.get("uid"),
            "resourceVersion": md.get("resourceVersion"),
        },
        "reason": reason,
        "message": message,
        "type": type_,
        "source": {"component": component, **({"host": host} if host else {})},
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
        "reportingComponent": component,
        "reportingInstance": host or "",
    }
    try:
        api.create(event)
    except ApiError:
        pass  # e.g. the namespace is terminating: events are best effort
