"""The four patch types and field ownership (managedFields).

- JSON patch (RFC 6902): the ``jsonpatch`` library.
- JSON merge patch (RFC 7386): :func:`merge_patch` (a dozen lines; the RFC's own pseudo-code).
- Strategic merge patch: k8s.io/apimachinery ``pkg/util/strategicpatch`` semantics — lists merged
  by their ``patchMergeKey``, ``$patch: replace|delete``, ``$setElementOrder/<list>``,
  ``$deleteFromPrimitiveList/<list>``, ``$retainKeys``. The merge keys are the
  ``patchMergeKey``/``patchStrategy`` struct tags of k8s.io/api ``core/v1/types.go``,
  ``apps/v1/types.go`` and ``meta/v1/types.go`` for the kinds this sandbox serves (table below).
- Server-side apply (``application/apply-patch+yaml``, KEP-555): field sets per manager in
  ``metadata.managedFields`` (``fieldsV1`` format: ``f:<field>``, ``k:{<merge keys>}``,
  ``v:<value>``, ``.``), conflicts when another manager owns a field with a different value
  (409 ``Apply failed with N conflict(s): conflict with "<manager>"...``; ``force=true`` takes
  ownership), fields the applier owned and no longer applies are removed unless someone else owns
  them. Simplified against the real structured-merge-diff: lists without a merge key are atomic,
  and ownership of Update operations is tracked at leaf level.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from typing import Any

import jsonpatch

from sandbox.k8s.kinds import ResourceType
from sandbox.k8s.schema import is_model, model_fields

# (model, field) -> merge key; "" marks a primitive list merged as a set (patchStrategy=merge)
MERGE_KEYS: dict[tuple[str, str], str] = {
    ("V1ObjectMeta", "ownerReferences"): "uid",
    ("V1ObjectMeta", "finalizers"): "",
    ("V1PodSpec", "containers"): "name",
    ("V1PodSpec", "initContainers"): "name",
    ("V1PodSpec", "ephemeralContainers"): "name",
    ("V1PodSpec", "volumes"): "name",
    ("V1PodSpec", "imagePullSecrets"): "name",
    ("V1PodSpec", "hostAliases"): "ip",
    ("V1PodSpec", "resourceClaims"): "name",
    ("V1PodSpec", "schedulingGates"): "name",
    ("V1PodSpec", "topologySpreadConstraints"): "topologyKey",
    ("V1Container", "ports"): "containerPort",
    ("V1Container", "env"): "name",
    ("V1Container", "volumeMounts"): "mountPath",
    ("V1Container", "volumeDevices"): "devicePath",
    ("V1EphemeralContainer", "ports"): "containerPort",
    ("V1EphemeralContainer", "env"): "name",
    ("V1EphemeralContainer", "volumeMounts"): "mountPath",
    ("V1EphemeralContainer", "volumeDevices"): "devicePath",
    ("V1ResourceRequirements", "claims"): "name",
    ("V1ServiceSpec", "ports"): "port",
    ("V1ServiceAccount", "secrets"): "name",
    ("V1PodStatus", "conditions"): "type",
    ("V1PodStatus", "podIPs"): "ip",
    ("V1DeploymentStatus", "conditions"): "type",
    ("V1ReplicaSetStatus", "conditions"): "type",
    ("V1StatefulSetStatus", "conditions"): "type",
    ("V1NamespaceStatus", "conditions"): "type",
    ("V1NodeStatus", "conditions"): "type",
    ("V1NodeStatus", "addresses"): "type",
    ("V1NamespaceSpec", "finalizers"): "",
    ("V1ServiceStatus", "conditions"): "type",
}


class PatchError(ValueError):
    pass


def _bad(message: str) -> Exception:
    from sandbox.k8s.store import BadRequest

    return BadRequest(message)


def json_patch(current: dict[str, Any], ops: Any) -> dict[str, Any]:
    if not isinstance(ops, list):
        raise _bad(
            "the server rejected our request due to an error in our request: json patch must be a list"
        )
    try:
        return dict(jsonpatch.JsonPatch(ops).apply(copy.deepcopy(current)))
    except jsonpatch.JsonPatchConflict as exc:
        from sandbox.k8s.store import Invalid

        raise Invalid(f"the server rejected our request due to an error in our request: {exc}") from exc
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError) as exc:
        raise _bad(f"the server rejected our request due to an error in our request: {exc}") from exc


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 section 2."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


# -- types along a path ----------------------------------------------------------------------------
def _child_type(typ: str | None, key: str) -> str | None:
    if typ is None or typ in ("object", "str", "int", "bool", "float", "datetime", "bytes"):
        return None
    if typ.startswith("Dict["):
        return typ[typ.index(",") + 1 : -1].strip()
    if not is_model(typ):
        return None
    return model_fields(typ).get(key)


def _list_info(typ: str | None, key: str, schema: dict[str, Any] | None) -> tuple[str | None, str | None]:
    """For field ``key`` of a map of type ``typ`` (or CR schema): (item type, merge key or "" or None)."""
    if schema is not None:
        sub = (schema.get("properties") or {}).get(key) or {}
        lt = sub.get("x-kubernetes-list-type")
        if lt == "map" and sub.get("x-kubernetes-list-map-keys"):
            return None, sub["x-kubernetes-list-map-keys"][0]
        if lt == "set":
            return None, ""
        return None, None
    field_type = _child_type(typ, key)
    if not field_type or not field_type.startswith("List["):
        return None, None
    return field_type[5:-1], MERGE_KEYS.get((typ or "", key))


def _sub_schema(schema: dict[str, Any] | None, key: str) -> dict[str, Any] | None:
    if schema is None:
        return None
    sub = (schema.get("properties") or {}).get(key)
    if sub is None and isinstance(schema.get("additionalProperties"), dict):
        sub = schema["additionalProperties"]
    return sub if isinstance(sub, dict) else {}


# -- strategic merge patch -------------------------------------------------------------------------
def strategic_merge_patch(rt: ResourceType, current: dict[str, Any], patch: Any) -> dict[str, Any]:
    if not isinstance(patch, dict):
        raise _bad("the body of a strategic merge patch must be a JSON object")
    return _smp_map(rt.model, current, patch)


def _smp_map(typ: str | None, cur: Any, patch: dict[str, Any]) -> Any:
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: v for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return None
    out = copy.deepcopy(cur) if isinstance(cur, dict) else {}
    orders: dict[str, list[Any]] = {}
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys"):
            continue
        if key.startswith("$setElementOrder/"):
            orders[key.split("/", 1)[1]] = value
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            out[field] = [v for v in out.get(field) or [] if v not in value]
            continue
        if value is None:
            out.pop(key, None)
            continue
        item_type, merge_key = _list_info(typ, key, None)
        if isinstance(value, list) and merge_key is not None:
            out[key] = _smp_list(item_type, out.get(key) or [], value, merge_key)
        elif isinstance(value, dict):
            merged = _smp_map(_child_type(typ, key), out.get(key), value)
            if merged is None:
                out.pop(key, None)
            else:
                out[key] = merged
        else:
            out[key] = copy.deepcopy(value)
    for field, order in orders.items():
        items = out.get(field)
        if isinstance(items, list):
            _, mk = _list_info(typ, field, None)
            out[field] = _ordered(items, order, mk)
    if isinstance(retain, list):
        for k in list(out):
            if k not in retain:
                del out[k]
    return out


def _ordered(items: list[Any], order: list[Any], merge_key: str | None) -> list[Any]:
    def ident(x: Any) -> Any:
        return json.dumps(x.get(merge_key) if merge_key and isinstance(x, dict) else x, sort_keys=True)

    rank = {ident(o): i for i, o in enumerate(order)}
    return sorted(items, key=lambda x: rank.get(ident(x), len(rank)))


def _smp_list(item_type: str | None, cur: list[Any], patch: list[Any], merge_key: str) -> list[Any]:
    if merge_key == "":  # primitive set
        out = list(cur)
        for v in patch:
            if v not in out:
                out.append(v)
        return out
    if any(isinstance(p, dict) and p.get("$patch") == "replace" for p in patch):
        return [copy.deepcopy(p) for p in patch if not (isinstance(p, dict) and p.get("$patch") == "replace")]
    out = copy.deepcopy(cur)
    for item in patch:
        if not isinstance(item, dict):
            out.append(item)
            continue
        key = item.get(merge_key)
        idx = next((i for i, c in enumerate(out) if isinstance(c, dict) and c.get(merge_key) == key), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                out.pop(idx)
            continue
        if idx is None:
            out.append(_smp_map(item_type, {}, item))
        else:
            out[idx] = _smp_map(item_type, out[idx], item)
    return out


# -- field sets (server-side apply) ----------------------------------------------------------------
Path = tuple[str, ...]


def _ident(item: dict[str, Any], merge_key: str) -> str:
    return "k:" + json.dumps({merge_key: item.get(merge_key)}, separators=(",", ":"))


def _leaves(typ: str | None, schema: dict[str, Any] | None, value: Any, prefix: Path, out: set[Path]) -> None:
    if not isinstance(value, dict) or not value:
        out.add(prefix)
        return
    for key, sub in value.items():
        path = (*prefix, f"f:{key}")
        item_type, merge_key = _list_info(typ, key, schema)
        if isinstance(sub, list) and merge_key is not None:
            sub_schema = (_sub_schema(schema, key) or {}).get("items") if schema is not None else None
            if not sub:
                out.add(path)
            for item in sub:
                if merge_key == "" or not isinstance(item, dict):
                    out.add((*path, "v:" + json.dumps(item, separators=(",", ":"))))
                else:
                    ipath = (*path, _ident(item, merge_key))
                    out.add((*ipath, "."))
                    _leaves(item_type, sub_schema, item, ipath, out)
        else:
            _leaves(_child_type(typ, key), _sub_schema(schema, key), sub, path, out)


def field_set(rt: ResourceType, obj: dict[str, Any], subresource: str | None = None) -> set[Path]:
    body: dict[str, Any] = {}
    meta = obj.get("metadata") or {}
    kept = {k: meta[k] for k in ("labels", "annotations", "finalizers", "ownerReferences") if k in meta}
    if subresource == "status":
        if "status" in obj:
            body["status"] = obj["status"]
    else:
        if kept:
            body["metadata"] = kept
        for k, v in obj.items():
            if k in ("apiVersion", "kind", "metadata"):
                continue
            if k == "status" and "status" in rt.subresources:
                continue
            body[k] = v
    out: set[Path] = set()
    if body:
        _leaves(rt.model, rt.schema if rt.crd else None, body, (), out)
    out.discard(())
    return out


def to_fields_v1(paths: set[Path]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path in paths:
        node = tree
        for el in path:
            node = node.setdefault(el, {})
    return tree


def from_fields_v1(tree: dict[str, Any], prefix: Path = ()) -> set[Path]:
    out: set[Path] = set()
    for key, sub in (tree or {}).items():
        path = (*prefix, key)
        if not sub:
            out.add(path)
        else:
            out |= from_fields_v1(sub, path)
    return out


_MISSING = object()


def _lookup(obj: Any, path: Path) -> Any:
    cur = obj
    for el in path:
        if el == ".":
            continue
        kind, _, rest = el.partition(":")
        if kind == "f":
            if not isinstance(cur, dict) or rest not in cur:
                return _MISSING
            cur = cur[rest]
        elif kind == "k":
            want = json.loads(rest)
            cur = (
                next(
                    (
                        i
                        for i in cur or []
                        if isinstance(i, dict) and all(i.get(k) == v for k, v in want.items())
                    ),
                    _MISSING,
                )
                if isinstance(cur, list)
                else _MISSING
            )
        elif kind == "v":
            val = json.loads(rest)
            cur = val if isinstance(cur, list) and val in cur else _MISSING
        if cur is _MISSING:
            return _MISSING
    return cur


def _remove(obj: Any, path: Path) -> None:
    if path and path[-1] == ".":
        path = path[:-1]
    if not path:
        return
    parent = _lookup(obj, path[:-1])
    kind, _, rest = path[-1].partition(":")
    if kind == "f" and isinstance(parent, dict):
        parent.pop(rest, None)
    elif kind == "k" and isinstance(parent, list):
        want = json.loads(rest)
        parent[:] = [
            i for i in parent if not (isinstance(i, dict) and all(i.get(k) == v for k, v in want.items()))
        ]
    elif kind == "v" and isinstance(parent, list):
        val = json.loads(rest)
        parent[:] = [i for i in parent if i != val]


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def managed_entry(
    rt: ResourceType, manager: str, operation: str, obj: dict[str, Any], subresource: str | None = None
) -> dict[str, Any]:
    entry = {
        "manager": manager,
        "operation": operation,
        "apiVersion": rt.api_version,
        "time": _now(),
        "fieldsType": "FieldsV1",
        "fieldsV1": to_fields_v1(field_set(rt, obj, subresource)),
    }
    if subresource:
        entry["subresource"] = subresource
    return entry


def _entries(managed: list[dict[str, Any]]) -> list[tuple[dict[str, Any], set[Path]]]:
    return [(e, from_fields_v1(e.get("fieldsV1") or {})) for e in managed]


def _rebuild(entries: list[tuple[dict[str, Any], set[Path]]]) -> list[dict[str, Any]]:
    out = []
    for e, paths in entries:
        if not paths:
            continue
        e = dict(e)
        e["fieldsV1"] = to_fields_v1(paths)
        out.append(e)
    return out


def record_update(
    rt: ResourceType,
    managed: list[dict[str, Any]],
    manager: str,
    old: dict[str, Any],
    new: dict[str, Any],
    subresource: str | None,
) -> list[dict[str, Any]]:
    """An Update by ``manager``: it takes the leaves it changed or added; removed leaves leave every set."""
    old_set, new_set = field_set(rt, old, subresource), field_set(rt, new, subresource)
    changed = {p for p in new_set if _lookup(old, p) != _lookup(new, p) or p not in old_set}
    gone = old_set - new_set
    entries = _entries(managed)
    mine = None
    for e, paths in entries:
        paths -= gone
        if (
            e.get("manager") == manager
            and e.get("operation") == "Update"
            and e.get("subresource") == subresource
        ):
            mine = (e, paths)
        else:
            paths -= changed
    if mine is None:
        entry = {
            "manager": manager,
            "operation": "Update",
            "apiVersion": rt.api_version,
            "fieldsType": "FieldsV1",
        }
        if subresource:
            entry["subresource"] = subresource
        mine = (entry, set())
        entries.append(mine)
    mine[1].update(changed)
    if changed:
        mine[0]["time"] = _now()
    return _rebuild(entries)


def apply(
    rt: ResourceType,
    current: dict[str, Any],
    applied: dict[str, Any],
    manager: str,
    force: bool,
    subresource: str | None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Server-side apply of ``applied`` by ``manager`` onto ``current``: (new object, managedFields)."""
    from sandbox.k8s.store import Conflict

    entries = _entries(current["metadata"].get("managedFields") or [])
    new_set = field_set(rt, applied, subresource)
    prev: set[Path] = set()
    conflicts: list[tuple[str, Path]] = []
    for e, paths in entries:
        if e.get("manager") == manager and e.get("operation") == "Apply":
            prev |= paths
            continue
        for p in sorted(new_set & paths):
            if p[-1] == ".":
                continue
            if _lookup(current, p) != _lookup(applied, p):
                conflicts.append((e.get("manager", ""), p))
    if conflicts and not force:
        causes = [
            {
                "reason": "FieldManagerConflict",
                "message": f'conflict with "{m}" using {rt.api_version}',
                "field": _dotted(p),
            }
            for m, p in conflicts
        ]
        n = len(conflicts)
        if n == 1:
            text = f"Apply failed with 1 conflict: {causes[0]['message']}: {causes[0]['field']}"
        else:
            text = f"Apply failed with {n} conflicts: " + "\n".join(
                f"{c['message']}: {c['field']}" for c in causes
            )
        raise Conflict(
            text,
            details={"name": current["metadata"]["name"], "kind": rt.plural, "causes": causes}
            | ({"group": rt.group} if rt.group else {}),
        )
    # merge the applied configuration (maps merge, keyed lists merge, other lists are atomic)
    body = copy.deepcopy(applied)
    body.pop("apiVersion", None)
    body.pop("kind", None)
    meta = body.get("metadata") or {}
    body["metadata"] = {
        k: meta[k] for k in ("labels", "annotations", "finalizers", "ownerReferences") if k in meta
    }
    if subresource == "status":
        body = {"status": body.get("status")} if "status" in body else {}
    elif "status" in rt.subresources:
        body.pop("status", None)
    if rt.crd:
        new = _merge_cr(rt.schema or {}, current, body)
    else:
        new = _smp_map(rt.model, current, body)
    # fields this manager applied before and no longer does, that nobody else owns, go away
    others: set[Path] = set()
    for e, paths in entries:
        if not (e.get("manager") == manager and e.get("operation") == "Apply"):
            if force:
                paths -= new_set
            others |= paths
    for p in sorted(prev - new_set - others, key=len, reverse=True):
        _remove(new, p)
        # maps emptied by the removal go too (defaulting may fill them again, as in the apiserver)
        parent = p[:-1] if p[-1] != "." else p[:-2]
        while parent and _lookup(new, parent) == {} and parent not in new_set:
            _remove(new, parent)
            parent = parent[:-1]
    kept = [
        (e, paths)
        for e, paths in entries
        if not (e.get("manager") == manager and e.get("operation") == "Apply")
    ]
    entry = {
        "manager": manager,
        "operation": "Apply",
        "apiVersion": rt.api_version,
        "time": _now(),
        "fieldsType": "FieldsV1",
    }
    if subresource:
        entry["subresource"] = subresource
    kept.insert(0, (entry, new_set))
    new.setdefault("metadata", {})["resourceVersion"] = current["metadata"]["resourceVersion"]
    return new, _rebuild(kept)


def _merge_cr(schema: dict[str, Any], cur: Any, patch: Any) -> Any:
    if not isinstance(patch, dict) or not isinstance(cur, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(cur)
    for key, value in patch.items():
        sub = _sub_schema(schema, key) or {}
        if (
            isinstance(value, list)
            and sub.get("x-kubernetes-list-type") == "map"
            and sub.get("x-kubernetes-list-map-keys")
        ):
            mk = sub["x-kubernetes-list-map-keys"][0]
            items = copy.deepcopy(out.get(key) or [])
            for item in value:
                idx = next((i for i, c in enumerate(items) if c.get(mk) == item.get(mk)), None)
                if idx is None:
                    items.append(copy.deepcopy(item))
                else:
                    items[idx] = _merge_cr(sub.get("items") or {}, items[idx], item)
            out[key] = items
        elif isinstance(value, dict):
            out[key] = _merge_cr(sub, out.get(key), value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _dotted(path: Path) -> str:
    out = ""
    for el in path:
        kind, _, rest = el.partition(":")
        if kind == "f":
            out += f".{rest}"
        elif kind in ("k", "v"):
            out += f"[{rest}]"
    return out
