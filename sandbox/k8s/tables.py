"""Server-side printing: ``meta.k8s.io/v1 Table`` for ``kubectl get`` (Accept ``as=Table``).

Columns follow k8s.io/kubernetes ``pkg/printers/internalversion/printers.go`` for the built-in
kinds and the CRD's ``additionalPrinterColumns`` for custom resources; ages are rendered like
apimachinery ``duration.HumanDuration``.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sandbox.k8s.kinds import ResourceType

_COLUMNS: dict[str, list[tuple[str, str]]] = {
    "/pods": [("Ready", "string"), ("Status", "string"), ("Restarts", "string")],
    "apps/deployments": [("Ready", "string"), ("Up-to-date", "integer"), ("Available", "integer")],
    "apps/replicasets": [("Desired", "integer"), ("Current", "integer"), ("Ready", "integer")],
    "apps/statefulsets": [("Ready", "string")],
    "/services": [
        ("Type", "string"),
        ("Cluster-IP", "string"),
        ("External-IP", "string"),
        ("Port(s)", "string"),
    ],
    "/namespaces": [("Status", "string")],
    "/nodes": [("Status", "string"), ("Roles", "string")],
    "/secrets": [("Type", "string"), ("Data", "string")],
    "/configmaps": [("Data", "string")],
    "/serviceaccounts": [("Secrets", "string")],
    "/events": [("Type", "string"), ("Reason", "string"), ("Object", "string"), ("Message", "string")],
}


def _containers(obj: dict[str, Any], path: str) -> list[dict[str, Any]]:
    spec = obj.get("spec") or {}
    if path == "template":
        spec = ((spec.get("template") or {}).get("spec")) or {}
    return [c for c in spec.get("containers") or [] if isinstance(c, dict)]


def _selector(obj: dict[str, Any]) -> str:
    sel = ((obj.get("spec") or {}).get("selector")) or {}
    labels = sel.get("matchLabels", sel) if isinstance(sel, dict) else {}
    return ",".join(f"{k}={v}" for k, v in labels.items() if isinstance(v, str)) or "<none>"


# columns after Age: (name, priority, cell); priority 1 shows with ``-o wide``
_AFTER_AGE: dict[str, list[tuple[str, int, Any]]] = {
    "/pods": [
        ("IP", 1, lambda o: (o.get("status") or {}).get("podIP") or "<none>"),
        ("Node", 1, lambda o: (o.get("spec") or {}).get("nodeName") or "<none>"),
        ("Nominated Node", 1, lambda o: "<none>"),
        ("Readiness Gates", 1, lambda o: "<none>"),
    ],
    "/nodes": [
        ("Version", 0, lambda o: ((o.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion", "")),
    ],
    "apps/deployments": [
        ("Containers", 1, lambda o: ",".join(c.get("name", "") for c in _containers(o, "template"))),
        ("Images", 1, lambda o: ",".join(c.get("image", "") for c in _containers(o, "template"))),
        ("Selector", 1, _selector),
    ],
    "/services": [("Selector", 1, _selector)],
}


def human_duration(seconds: float) -> str:
    s = int(max(0, seconds))
    if s < 120:
        return f"{s}s"
    m = s // 60
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    h = m // 60
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    d = h // 24
    if d < 8:
        return f"{d}d{h % 24}h" if h % 24 else f"{d}d"
    if d < 365 * 2:
        return f"{d}d"
    return f"{d // 365}y"


def _age(obj: dict[str, Any]) -> str:
    ts = obj["metadata"].get("creationTimestamp")
    if not ts:
        return "<unknown>"
    created = dt.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    return human_duration((dt.datetime.now(dt.UTC) - created).total_seconds())


def _jsonpath(obj: Any, path: str) -> Any:
    cur = obj
    for part in path.strip().lstrip(".").split("."):
        if not part:
            continue
        if "[" in part:
            name, idx = part.split("[", 1)
            cur = cur.get(name) if isinstance(cur, dict) else None
            try:
                cur = cur[int(idx.rstrip("]"))] if isinstance(cur, list) else None
            except (ValueError, IndexError):
                cur = None
        else:
            cur = cur.get(part) if isinstance(cur, dict) else None
    return cur


def _cells(rt: ResourceType, obj: dict[str, Any]) -> list[Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    k = rt.key
    if k == "/pods":
        cs = status.get("containerStatuses") or []
        n = len(spec.get("containers") or [])
        ready = sum(1 for c in cs if c.get("ready"))
        reason = status.get("reason") or status.get("phase") or "Pending"
        for c in cs:
            waiting = (c.get("state") or {}).get("waiting")
            if waiting and waiting.get("reason"):
                reason = waiting["reason"]
        if obj["metadata"].get("deletionTimestamp"):
            reason = "Terminating"
        restarts = sum(int(c.get("restartCount", 0)) for c in cs)
        return [f"{ready}/{n}", reason, str(restarts)]
    if k == "apps/deployments":
        return [
            f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 0)}",
            status.get("updatedReplicas", 0),
            status.get("availableReplicas", 0),
        ]
    if k == "apps/replicasets":
        return [spec.get("replicas", 0), status.get("replicas", 0), status.get("readyReplicas", 0)]
    if k == "apps/statefulsets":
        return [f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 0)}"]
    if k == "/services":
        ingress = ((status.get("loadBalancer") or {}).get("ingress")) or []
        external = ",".join(i.get("ip") or i.get("hostname", "") for i in ingress)
        if not external:
            external = "<pending>" if spec.get("type") == "LoadBalancer" else "<none>"
        ports = ",".join(
            f"{p.get('port')}{':' + str(p['nodePort']) if p.get('nodePort') else ''}"
            f"/{p.get('protocol', 'TCP')}"
            for p in spec.get("ports") or []
        )
        return [spec.get("type", "ClusterIP"), spec.get("clusterIP", "<none>"), external, ports or "<none>"]
    if k == "/namespaces":
        return [status.get("phase", "Active")]
    if k == "/nodes":
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
        )
        return ["Ready" if ready else "NotReady", "<none>"]
    if k == "/secrets":
        return [obj.get("type", "Opaque"), str(len(obj.get("data") or {}))]
    if k == "/configmaps":
        return [str(len(obj.get("data") or {}) + len(obj.get("binaryData") or {}))]
    if k == "/serviceaccounts":
        return [str(len(obj.get("secrets") or []))]
    if k == "/events":
        io = obj.get("involvedObject") or {}
        return [
            obj.get("type", ""),
            obj.get("reason", ""),
            f"{io.get('kind', '').lower()}/{io.get('name', '')}",
            obj.get("message", ""),
        ]
    if rt.crd:
        out = []
        for col in rt.printer_columns:
            if col.get("jsonPath") == ".metadata.creationTimestamp":
                out.append(_age(obj))
                continue
            val = _jsonpath(obj, col.get("jsonPath", ""))
            out.append(json.dumps(val) if isinstance(val, dict | list) else val)
        return out
    return []


def _columns(rt: ResourceType) -> list[dict[str, Any]]:
    cols = [{"name": "Name", "type": "string", "format": "name", "description": "Name", "priority": 0}]
    if rt.crd:
        for c in rt.printer_columns:
            cols.append(
                {
                    "name": c.get("name", ""),
                    "type": c.get("type", "string"),
                    "format": c.get("format", ""),
                    "description": c.get("description", ""),
                    "priority": int(c.get("priority", 0)),
                }
            )
        if not any(c.get("jsonPath") == ".metadata.creationTimestamp" for c in rt.printer_columns):
            cols.append({"name": "Age", "type": "date", "format": "", "description": "", "priority": 0})
        return cols
    if rt.key == "apiextensions.k8s.io/customresourcedefinitions":
        return [*cols, {"name": "Created At", "type": "date", "format": "", "description": "", "priority": 0}]
    for name, typ in _COLUMNS.get(rt.key, []):
        cols.append({"name": name, "type": typ, "format": "", "description": name, "priority": 0})
    cols.append({"name": "Age", "type": "string", "format": "", "description": "", "priority": 0})
    for name, priority, _ in _AFTER_AGE.get(rt.key, []):
        cols.append({"name": name, "type": "string", "format": "", "description": name, "priority": priority})
    return cols


def to_table(rt: ResourceType, items: list[dict[str, Any]], rv: int, *, list_: bool) -> dict[str, Any]:
    rows = []
    for obj in items:
        if rt.key == "apiextensions.k8s.io/customresourcedefinitions":
            cells = [obj["metadata"]["name"], obj["metadata"].get("creationTimestamp", "")]
        else:
            cells = [obj["metadata"]["name"], *_cells(rt, obj)]
            if not (
                rt.crd and any(c.get("jsonPath") == ".metadata.creationTimestamp" for c in rt.printer_columns)
            ):
                cells.append(_age(obj))
            cells += [cell(obj) for _, _, cell in _AFTER_AGE.get(rt.key, [])]
        rows.append(
            {
                "cells": cells,
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": obj["metadata"],
                },
            }
        )
    meta: dict[str, Any] = {"resourceVersion": str(rv)}
    del list_
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": _columns(rt),
        "rows": rows,
    }
