"""Schemas: strict field validation, pruning, defaulting and validation of stored objects.

Where the schemas come from
    Built-in kinds use the ``kubernetes`` Python client's own generated models
    (``kubernetes.client.models.V1Deployment.openapi_types`` / ``attribute_map``). They are
    generated from the Kubernetes OpenAPI document of the pinned client (37.0.0 = Kubernetes
    1.37, the same minor as the pinned kubectl), so they list exactly the fields a 1.37
    apiserver decodes, and they are already installed. Their field tables are kept in
    ``builtin_fields.json`` (importing the generated models costs seconds per process);
    ``python -m sandbox.k8s.schema`` regenerates it and a test compares it with the client.
    ``kubernetes-validate`` (PyPI) bundles the same schemas plus merge keys but weighs ~108 MB;
    the house rule is "nothing heavy", and the merge keys we need are few and fixed (see
    ``patch.py``), so we do not add it.

    Custom resources use their CRD's ``openAPIV3Schema`` (structural schema rules of
    apiextensions.k8s.io/v1: unknown fields are pruned unless ``x-kubernetes-preserve-unknown-fields``;
    values are validated with ``jsonschema``'s Draft 4 validator, the JSON-Schema dialect OpenAPI
    v3.0 is based on, with ``nullable`` honoured).

Field validation (KEP-2885 "server-side unknown field validation", GA in 1.27)
    ``fieldValidation=Strict`` rejects unknown fields with 400 BadRequest
    ``<Kind> in version "<v>" cannot be handled as a <Kind>: strict decoding error: unknown field
    "spec.foo"``;
    ``Warn`` (the default) answers ``Warning: 299 - "unknown field \"spec.foo\""`` headers; ``Ignore``
    drops them silently. Unknown fields are never stored.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from pathlib import Path
from typing import Any

import jsonschema

from sandbox.k8s.kinds import ResourceType

_SCALARS = {"str", "int", "bool", "float", "datetime", "date", "object", "bytearray", "bytes"}


FIELDS_FILE = Path(__file__).parent / "builtin_fields.json"


@functools.cache
def _snapshot() -> dict[str, dict[str, str]]:
    """The field tables of the served kinds, extracted once from the pinned client's models.

    Importing the generated models is slow (seconds for a Deployment's ~60 nested models), so
    ``builtin_fields.json`` keeps what they say; ``python -m sandbox.k8s.schema`` regenerates it
    and a test checks it against the installed client.
    """
    if FIELDS_FILE.exists():
        data: dict[str, dict[str, str]] = json.loads(FIELDS_FILE.read_text())
        return data
    return {}


def _live_fields(model: str) -> dict[str, str]:
    from kubernetes.client import models as k8s_models

    cls = getattr(k8s_models, model)
    return {cls.attribute_map[attr]: typ for attr, typ in cls.openapi_types.items()}


@functools.cache
def model_fields(model: str) -> dict[str, str]:
    """JSON field name -> client type string ("str", "List[V1Container]", "Dict[str, str]"...)."""
    snap = _snapshot()
    if model in snap:
        return snap[model]
    return _live_fields(model)


def is_model(name: str) -> bool:
    if name in _snapshot():
        return True
    from kubernetes.client import models as k8s_models

    return hasattr(k8s_models, name)


def _model_closure(roots: list[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in out:
            continue
        fields = _live_fields(name)
        out[name] = fields
        for typ in fields.values():
            inner = typ
            while inner.startswith(("List[", "Dict[")):
                inner = inner[5:-1] if inner.startswith("List[") else inner[inner.index(",") + 1 : -1].strip()
            if inner not in _SCALARS:
                todo.append(inner)
    return dict(sorted(out.items()))


def snapshot_roots() -> list[str]:
    from sandbox.k8s.kinds import BUILTIN

    return sorted({rt.model for rt in BUILTIN if rt.model} | {"AuthenticationV1TokenRequest"})


if __name__ == "__main__":  # regenerate builtin_fields.json from the installed client
    FIELDS_FILE.write_text(json.dumps(_model_closure(snapshot_roots()), indent=0, sort_keys=True) + "\n")
    print(f"wrote {FIELDS_FILE}")


def _walk_model(typ: str, value: Any, path: str, unknown: list[str], prune: bool) -> None:
    if typ in _SCALARS or value is None:
        return
    if typ.startswith("List[") and isinstance(value, list):
        inner = typ[5:-1]
        for i, item in enumerate(value):
            _walk_model(inner, item, f"{path}[{i}]", unknown, prune)
        return
    if typ.startswith("Dict[") and isinstance(value, dict):
        inner = typ[typ.index(",") + 1 : -1].strip()
        for k, item in value.items():
            _walk_model(inner, item, f"{path}[{k}]", unknown, prune)
        return
    if not isinstance(value, dict) or not is_model(typ):
        return
    fields = model_fields(typ)
    for key in list(value):
        sub = f"{path}.{key}" if path else key
        if key not in fields:
            unknown.append(sub)
            if prune:
                del value[key]
            continue
        _walk_model(fields[key], value[key], sub, unknown, prune)


def _walk_structural(schema: dict[str, Any], value: Any, path: str, unknown: list[str], prune: bool) -> None:
    if not isinstance(schema, dict) or value is None:
        return
    if isinstance(value, dict):
        props = schema.get("properties")
        if schema.get("x-kubernetes-embedded-resource"):
            for meta_key in ("apiVersion", "kind"):
                props = {meta_key: {"type": "string"}, **(props or {})}
            if "metadata" in value:
                _walk_model(
                    "V1ObjectMeta",
                    value["metadata"],
                    f"{path}.metadata" if path else "metadata",
                    unknown,
                    prune,
                )
                props = {
                    **(props or {}),
                    "metadata": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                }
        addl = schema.get("additionalProperties")
        for key in list(value):
            sub = f"{path}.{key}" if path else key
            if props is not None and key in props:
                _walk_structural(props[key], value[key], sub, unknown, prune)
            elif isinstance(addl, dict):
                _walk_structural(addl, value[key], sub, unknown, prune)
            elif addl is True or schema.get("x-kubernetes-preserve-unknown-fields"):
                continue
            elif props is not None or schema.get("type") == "object":
                unknown.append(sub)
                if prune:
                    del value[key]
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            _walk_structural(schema["items"], item, f"{path}[{i}]", unknown, prune)


def unknown_fields(rt: ResourceType, obj: dict[str, Any], *, prune: bool = False) -> list[str]:
    unknown: list[str] = []
    if rt.model:
        _walk_model(rt.model, obj, "", unknown, prune)
    elif rt.schema is not None:
        top = {k: v for k, v in obj.items()}
        for key in list(top):
            if key in ("apiVersion", "kind"):
                continue
            if key == "metadata":
                _walk_model("V1ObjectMeta", obj["metadata"], "metadata", unknown, prune)
                continue
            props = rt.schema.get("properties") or {}
            if key in props:
                _walk_structural(props[key], obj[key], key, unknown, prune)
            elif not rt.schema.get("x-kubernetes-preserve-unknown-fields"):
                unknown.append(key)
                if prune:
                    del obj[key]
    return unknown


def check_fields(rt: ResourceType, obj: dict[str, Any], mode: str, warnings: list[str] | None) -> None:
    """Apply ``fieldValidation`` (Strict/Warn/Ignore) to a request body."""
    from sandbox.k8s.store import BadRequest

    if mode == "Ignore" or not isinstance(obj, dict):
        return
    unknown = unknown_fields(rt, copy.deepcopy(obj))
    if not unknown:
        return
    if mode == "Strict":
        text = ", ".join(f'unknown field "{u}"' for u in unknown)
        raise BadRequest(
            f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: '
            f"strict decoding error: {text}"
        )
    if warnings is not None:
        warnings.extend(f'unknown field "{u}"' for u in unknown)


# -- defaulting ------------------------------------------------------------------------------------
def _schema_defaults(schema: dict[str, Any], value: Any) -> None:
    """Structural-schema defaulting of custom resources (apiextensions.k8s.io/v1 ``default``)."""
    if isinstance(value, dict):
        for key, sub in (schema.get("properties") or {}).items():
            if not isinstance(sub, dict):
                continue
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                _schema_defaults(sub, value[key])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            _schema_defaults(schema["items"], item)


def default(rt: ResourceType, obj: dict[str, Any]) -> None:
    """The few defaults clients and controllers look at (k8s.io/kubernetes pkg/apis/*/v1/defaults.go),
    and the ``default`` values of a custom resource's schema."""
    if rt.schema:
        _schema_defaults({k: v for k, v in rt.schema.items() if k != "default"}, obj)
    spec = obj.get("spec")
    if rt.key == "/namespaces":
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        obj.setdefault("status", {}).setdefault("phase", "Active")
    elif rt.key == "/secrets":
        obj.setdefault("type", "Opaque")
    elif rt.key == "/services" and isinstance(spec, dict):
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        for p in spec.get("ports") or []:
            p.setdefault("protocol", "TCP")
            p.setdefault("targetPort", p.get("port"))
        if spec.get("clusterIP") != "None" and "clusterIP" not in spec:
            digest = hashlib.sha256(
                f"{obj['metadata'].get('namespace')}/{obj['metadata'].get('name')}".encode()
            )
            n = int(digest.hexdigest(), 16) % (250 * 250)
            # AKS's default service CIDR is 10.0.0.0/16 (kubenet/Azure CNI defaults)
            spec["clusterIP"] = f"10.0.{n // 250}.{n % 250 + 2}"
            spec["clusterIPs"] = [spec["clusterIP"]]
        if spec.get("type") in ("NodePort", "LoadBalancer"):
            for i, p in enumerate(spec.get("ports") or []):
                if isinstance(p, dict) and not p.get("nodePort"):
                    seed = f"{obj['metadata'].get('namespace')}/{obj['metadata'].get('name')}/{i}"
                    # the default NodePort range, --service-node-port-range=30000-32767
                    p["nodePort"] = 30000 + int(hashlib.sha256(seed.encode()).hexdigest(), 16) % 2768
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")
        obj.setdefault("status", {"loadBalancer": {}})
    elif rt.key == "/pods" and isinstance(spec, dict):
        spec.setdefault("restartPolicy", "Always")
        spec.setdefault("dnsPolicy", "ClusterFirst")
        spec.setdefault("schedulerName", "default-scheduler")
        spec.setdefault("terminationGracePeriodSeconds", 30)
        spec.setdefault("serviceAccountName", spec.get("serviceAccount") or "default")
        for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
            if isinstance(c, dict):
                c.setdefault(
                    "imagePullPolicy",
                    "Always" if str(c.get("image", "")).endswith(":latest") else "IfNotPresent",
                )
                c.setdefault("terminationMessagePath", "/dev/termination-log")
                c.setdefault("terminationMessagePolicy", "File")
                c.setdefault("resources", {})
        obj.setdefault("status", {}).setdefault("phase", "Pending")
    elif rt.key in ("apps/deployments", "apps/replicasets", "apps/statefulsets") and isinstance(spec, dict):
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        if rt.key == "apps/deployments":
            spec.setdefault("progressDeadlineSeconds", 600)
            strategy = spec.setdefault("strategy", {})
            strategy.setdefault("type", "RollingUpdate")
            if strategy["type"] == "RollingUpdate":
                rolling = strategy.setdefault("rollingUpdate", {})
                rolling.setdefault("maxSurge", "25%")
                rolling.setdefault("maxUnavailable", "25%")
        if rt.key == "apps/statefulsets":
            spec.setdefault("podManagementPolicy", "OrderedReady")
            sts_strategy = spec.setdefault("updateStrategy", {})
            sts_strategy.setdefault("type", "RollingUpdate")
            if sts_strategy["type"] == "RollingUpdate":
                sts_strategy.setdefault("rollingUpdate", {}).setdefault("partition", 0)
        if rt.key == "apps/replicasets":
            spec.pop("revisionHistoryLimit", None)
    elif rt.key == "apiextensions.k8s.io/customresourcedefinitions" and isinstance(spec, dict):
        spec.setdefault("scope", "Namespaced")
        names = spec.setdefault("names", {})
        if names.get("kind"):
            names.setdefault("singular", names["kind"].lower())
            names.setdefault("listKind", names["kind"] + "List")
        spec.setdefault("conversion", {"strategy": "None"})


# -- validation ------------------------------------------------------------------------------------
def _nullable(schema: Any) -> Any:
    """OpenAPI v3 ``nullable: true`` -> JSON-Schema ``type: [T, "null"]`` (recursively)."""
    if isinstance(schema, list):
        return [_nullable(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _nullable(v) for k, v in schema.items()}
    if out.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


@functools.lru_cache(maxsize=256)
def _validator(schema_json: str) -> jsonschema.Draft4Validator:
    schema = _nullable(json.loads(schema_json))
    props = dict(schema.get("properties") or {})
    props.pop("metadata", None)  # ObjectMeta is validated by the server, not the CRD schema
    schema["properties"] = props
    return jsonschema.Draft4Validator(schema)


def _cause(err: jsonschema.ValidationError) -> tuple[str, str, str]:
    path = ""
    for p in err.absolute_path:
        path += f"[{p}]" if isinstance(p, int) else (f".{p}" if path else str(p))
    if err.validator == "required":
        missing = err.message.split("'")[1] if "'" in err.message else err.message
        field = f"{path}.{missing}" if path else missing
        return field, "FieldValueRequired", "Required value"
    if err.validator == "enum":
        allowed = ", ".join(json.dumps(v) for v in err.validator_value)
        return (
            path,
            "FieldValueNotSupported",
            f"Unsupported value: {json.dumps(err.instance)}: supported values: {allowed}",
        )
    if err.validator == "type":
        return (
            path,
            "FieldValueTypeInvalid",
            f"Invalid value: {json.dumps(err.instance)}: {path} in body must be of type "
            f"{err.validator_value}: "
            f"{json.dumps(type(err.instance).__name__)}",
        )
    return path, "FieldValueInvalid", f"Invalid value: {json.dumps(err.instance)}: {err.message}"


def validate(
    rt: ResourceType,
    obj: dict[str, Any],
    old: dict[str, Any] | None,
    mode: str,
    warnings: list[str] | None,
) -> dict[str, Any]:
    """Prune unknown fields and validate; returns the object to store (raises Invalid)."""
    from sandbox.k8s.store import invalid

    obj = copy.deepcopy(obj)
    unknown_fields(rt, obj, prune=True)
    name = obj["metadata"].get("name", "")
    causes: list[tuple[str, str, str]] = []
    if rt.schema:
        v = _validator(json.dumps(rt.schema, sort_keys=True))
        causes = [
            _cause(e) for e in sorted(v.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
        ]
    elif rt.key == "/pods":
        causes = _containers(obj.get("spec") or {}, "spec")
    elif rt.key in ("apps/deployments", "apps/replicasets", "apps/statefulsets"):
        spec = obj.get("spec") or {}
        if not (spec.get("selector") or {}).get("matchLabels") and not (spec.get("selector") or {}).get(
            "matchExpressions"
        ):
            causes.append(("spec.selector", "FieldValueRequired", "Required value"))
        else:
            from sandbox.k8s.selectors import LabelSelector

            tlabels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
            if not LabelSelector.from_match(spec["selector"]).matches(tlabels):
                causes.append(
                    (
                        "spec.template.metadata.labels",
                        "FieldValueInvalid",
                        f"Invalid value: {json.dumps(tlabels, separators=(',', ':'))}: "
                        "`selector` does not match "
                        "template `labels`",
                    )
                )
            if old is not None and (old.get("spec") or {}).get("selector") != spec.get("selector"):
                causes.append(
                    (
                        "spec.selector",
                        "FieldValueInvalid",
                        f"Invalid value: v1.LabelSelector{json.dumps(spec.get('selector'))}: "
                        "field is immutable",
                    )
                )
        causes += _containers(((spec.get("template") or {}).get("spec")) or {}, "spec.template.spec")
    elif rt.key == "/services":
        for i, p in enumerate((obj.get("spec") or {}).get("ports") or []):
            if not p.get("port"):
                causes.append((f"spec.ports[{i}].port", "FieldValueRequired", "Required value"))
    elif rt.key in ("/configmaps", "/secrets") and old is not None and old.get("immutable"):
        for key in ("data", "binaryData", "stringData"):
            if obj.get(key) != old.get(key):
                causes.append(
                    ("data", "FieldValueForbidden", "Forbidden: field is immutable when `immutable` is set")
                )
                break
    if rt.key == "/secrets":
        import base64 as _b64
        import binascii

        from sandbox.k8s.store import BadRequest

        for value in (obj.get("data") or {}).values():
            try:
                _b64.b64decode(str(value), validate=True)
            except (binascii.Error, ValueError) as exc:
                raise BadRequest(
                    f'Secret in version "v1" cannot be handled as a Secret: illegal base64 data: {exc}'
                ) from None
    if rt.key == "/secrets" and "stringData" in obj:
        import base64

        data = obj.setdefault("data", {}) or {}
        for k, val in (obj.pop("stringData") or {}).items():
            data[k] = base64.b64encode(str(val).encode()).decode()
        obj["data"] = data
    if causes:
        raise invalid(rt, name, causes)
    return obj


def _containers(spec: dict[str, Any], path: str) -> list[tuple[str, str, str]]:
    causes = []
    containers = spec.get("containers")
    if not containers:
        causes.append((f"{path}.containers", "FieldValueRequired", "Required value"))
    for i, c in enumerate(containers or []):
        if not isinstance(c, dict):
            continue
        if not c.get("name"):
            causes.append((f"{path}.containers[{i}].name", "FieldValueRequired", "Required value"))
        if not c.get("image"):
            causes.append((f"{path}.containers[{i}].image", "FieldValueRequired", "Required value"))
    return causes
