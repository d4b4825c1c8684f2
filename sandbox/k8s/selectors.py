"""Label and field selectors, as the API server parses them.

Label selector grammar: k8s.io/apimachinery ``pkg/labels/selector.go`` (``=``, ``==``, ``!=``,
``in (...)``, ``notin (...)``, ``key``, ``!key``). Field selectors: ``metadata.name`` and
``metadata.namespace`` for every kind plus the per-kind fields the apiserver registers
(``pkg/registry/core/pod/strategy.go`` ``PodToSelectableFields``, event ``involvedObject.*``,
secret ``type``, namespace ``status.phase``); anything else is 400 "field label not supported".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandbox.k8s.kinds import ResourceType

_SET = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")
_EQ = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s*(==|=|!=)\s*([A-Za-z0-9_.-]*)\s*$")
_EXISTS = re.compile(r"^\s*(!?)\s*([A-Za-z0-9_./-]+)\s*$")

SELECTABLE_FIELDS: dict[str, tuple[str, ...]] = {
    "/pods": (
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    ),
    "/events": (
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    ),
    "/secrets": ("type",),
    "/namespaces": ("status.phase",),
    "/nodes": ("spec.unschedulable",),
    "apps/replicasets": ("status.replicas",),
}


def _split(text: str) -> list[str]:
    """Split on commas outside parentheses."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur)
    return [p for p in parts if p.strip()]


class SelectorError(ValueError):
    pass


@dataclass(frozen=True)
class LabelSelector:
    terms: tuple[tuple[str, str, tuple[str, ...]], ...]  # (key, op, values)

    @classmethod
    def parse(cls, text: str | None) -> LabelSelector:
        terms = []
        for part in _split(text or ""):
            if m := _SET.match(part):
                values = tuple(v.strip() for v in m.group(3).split(",") if v.strip())
                terms.append((m.group(1), m.group(2), values))
            elif m := _EQ.match(part):
                terms.append((m.group(1), "!=" if m.group(2) == "!=" else "=", (m.group(3),)))
            elif m := _EXISTS.match(part):
                terms.append((m.group(2), "!exists" if m.group(1) else "exists", ()))
            else:
                raise SelectorError(f"unable to parse requirement: {part.strip()!r}")
        return cls(tuple(terms))

    @classmethod
    def from_match(cls, selector: dict[str, Any] | None) -> LabelSelector:
        """A ``metav1.LabelSelector`` (matchLabels + matchExpressions), as controllers use it."""
        selector = selector or {}
        terms: list[tuple[str, str, tuple[str, ...]]] = [
            (k, "=", (str(v),)) for k, v in (selector.get("matchLabels") or {}).items()
        ]
        for e in selector.get("matchExpressions") or []:
            op = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!exists"}[e["operator"]]
            terms.append((e["key"], op, tuple(e.get("values") or ())))
        return cls(tuple(terms))

    def matches(self, labels: dict[str, str]) -> bool:
        for key, op, values in self.terms:
            has, val = key in labels, labels.get(key)
            if (
                (op == "=" and val != values[0])
                or (op == "!=" and val == values[0])
                or (op == "in" and val not in values)
                or (op == "notin" and has and val in values)
                or (op == "exists" and not has)
                or (op == "!exists" and has)
            ):
                return False
        return True


def _lookup(obj: dict[str, Any], path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        cur = cur.get(part) if isinstance(cur, dict) else None
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return "" if cur is None else str(cur)


@dataclass(frozen=True)
class FieldSelector:
    terms: tuple[tuple[str, bool, str], ...]  # (field, equal, value)

    @classmethod
    def parse(cls, text: str | None, rt: ResourceType | None = None) -> FieldSelector:
        terms = []
        allowed = ("metadata.name", "metadata.namespace", *SELECTABLE_FIELDS.get(rt.key if rt else "", ()))
        for part in _split(text or ""):
            m = re.match(r"^\s*([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*?)\s*$", part)
            if not m:
                raise SelectorError(f"invalid selector: '{text}'; can't understand '{part.strip()}'")
            if rt is not None and not rt.crd and m.group(1) not in allowed:
                raise SelectorError(f"field label not supported: {m.group(1)}")
            if rt is not None and rt.crd and m.group(1) not in ("metadata.name", "metadata.namespace"):
                raise SelectorError(f"field label not supported: {m.group(1)}")
            terms.append((m.group(1), m.group(2) != "!=", m.group(3)))
        return cls(tuple(terms))

    def matches(self, obj: dict[str, Any]) -> bool:
        return all((_lookup(obj, f) == v) == eq for f, eq, v in self.terms)
