"""Decoding the protobuf request bodies kubectl's typed commands send.

kubectl 1.37 sends ``Content-Type: application/vnd.kubernetes.protobuf`` for the typed
``kubectl create namespace|serviceaccount|secret|configmap|token|deployment|service``
subcommands (JSON for ``apply``/``create -f``/``run``/``patch``). The envelope is the 4-byte
magic ``k8s\\0`` followed by a ``runtime.Unknown`` message (k8s.io/apimachinery
``pkg/runtime/types_proto.go``); the object inside is the kind's ``generated.proto`` message
(k8s.io/api). Only the fields those subcommands fill are mapped below (field numbers from the
public ``generated.proto`` files, each checked by decoding what kubectl 1.37 sends); anything else
answers 415 so the caller can use ``kubectl apply -f``. Wire format: the protobuf encoding spec
(varints, length-delimited fields; maps are repeated key=1/value=2 entries).
"""

from __future__ import annotations

import base64
from typing import Any

MAGIC = b"k8s\x00"

# message -> field number -> (json name, type, repeated). Types: "string", "bytes" (base64 in
# JSON), "int", "bool", "map:string", "map:bytes", or another message name.
_OBJECT_META: dict[int, tuple[str, str, bool]] = {
    1: ("name", "string", False),
    2: ("generateName", "string", False),
    3: ("namespace", "string", False),
    5: ("uid", "string", False),
    6: ("resourceVersion", "string", False),
    11: ("labels", "map:string", False),
    12: ("annotations", "map:string", False),
    13: ("ownerReferences", "OwnerReference", True),
    14: ("finalizers", "string", True),
}
MESSAGES: dict[str, dict[int, tuple[str, str, bool]]] = {
    "Unknown": {1: ("typeMeta", "TypeMeta", False), 2: ("raw", "raw", False)},
    "TypeMeta": {1: ("apiVersion", "string", False), 2: ("kind", "string", False)},
    "ObjectMeta": _OBJECT_META,
    "OwnerReference": {
        1: ("kind", "string", False),
        3: ("name", "string", False),
        4: ("uid", "string", False),
        5: ("apiVersion", "string", False),
        6: ("controller", "bool", False),
        7: ("blockOwnerDeletion", "bool", False),
    },
    "LocalObjectReference": {1: ("name", "string", False)},
    "ObjectReference": {
        1: ("kind", "string", False),
        2: ("namespace", "string", False),
        3: ("name", "string", False),
        4: ("uid", "string", False),
        5: ("apiVersion", "string", False),
    },
    "Namespace": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "NamespaceSpec", False)},
    "NamespaceSpec": {1: ("finalizers", "string", True)},
    "ServiceAccount": {
        1: ("metadata", "ObjectMeta", False),
        2: ("secrets", "ObjectReference", True),
        3: ("imagePullSecrets", "LocalObjectReference", True),
        4: ("automountServiceAccountToken", "bool", False),
    },
    "Secret": {
        1: ("metadata", "ObjectMeta", False),
        2: ("data", "map:bytes", False),
        3: ("type", "string", False),
        4: ("stringData", "map:string", False),
        5: ("immutable", "bool", False),
    },
    "ConfigMap": {
        1: ("metadata", "ObjectMeta", False),
        2: ("data", "map:string", False),
        3: ("binaryData", "map:bytes", False),
        4: ("immutable", "bool", False),
    },
    "Service": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "ServiceSpec", False)},
    "ServiceSpec": {
        1: ("ports", "ServicePort", True),
        2: ("selector", "map:string", False),
        3: ("clusterIP", "string", False),
        4: ("type", "string", False),
        10: ("externalName", "string", False),
    },
    "ServicePort": {
        1: ("name", "string", False),
        2: ("protocol", "string", False),
        3: ("port", "int", False),
        4: ("targetPort", "IntOrString", False),
        5: ("nodePort", "int", False),
    },
    "IntOrString": {1: ("type", "int", False), 2: ("intVal", "int", False), 3: ("strVal", "string", False)},
    "Deployment": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "DeploymentSpec", False)},
    "DeploymentSpec": {
        1: ("replicas", "int", False),
        2: ("selector", "LabelSelector", False),
        3: ("template", "PodTemplateSpec", False),
        4: ("strategy", "DeploymentStrategy", False),
    },
    "DeploymentStrategy": {1: ("type", "string", False)},
    "LabelSelector": {1: ("matchLabels", "map:string", False)},
    "PodTemplateSpec": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "PodSpec", False)},
    "PodSpec": {
        2: ("containers", "Container", True),
        3: ("restartPolicy", "string", False),
        6: ("dnsPolicy", "string", False),
        8: ("serviceAccountName", "string", False),
    },
    "Container": {
        1: ("name", "string", False),
        2: ("image", "string", False),
        3: ("command", "string", True),
        4: ("args", "string", True),
        5: ("workingDir", "string", False),
        6: ("ports", "ContainerPort", True),
        7: ("env", "EnvVar", True),
        8: ("resources", "Empty", False),
        13: ("terminationMessagePath", "string", False),
        14: ("imagePullPolicy", "string", False),
        20: ("terminationMessagePolicy", "string", False),
    },
    "ContainerPort": {
        1: ("name", "string", False),
        3: ("containerPort", "int", False),
        4: ("protocol", "string", False),
    },
    "EnvVar": {1: ("name", "string", False), 2: ("value", "string", False)},
    "Empty": {},
    "TokenRequest": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "TokenRequestSpec", False)},
    "TokenRequestSpec": {
        1: ("audiences", "string", True),
        3: ("boundObjectRef", "BoundObjectReference", False),
        4: ("expirationSeconds", "int", False),
    },
    "BoundObjectReference": {
        1: ("kind", "string", False),
        2: ("apiVersion", "string", False),
        3: ("name", "string", False),
        4: ("uid", "string", False),
    },
}
KINDS = {"Namespace", "ServiceAccount", "Secret", "ConfigMap", "TokenRequest", "Service", "Deployment"}
# Go's JSON omits empty values of these fields (``omitempty``); protobuf carries them as "" / 0.
# Pointer fields (``replicas``) are only present when set, so their zero is kept.
_KEEP_ZERO = {"replicas", "port", "containerPort"}


class ProtobufError(ValueError):
    pass


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        if pos >= len(buf):
            raise ProtobufError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """The (field number, value) pairs of one message: ints for varints, bytes for the rest."""
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + length], pos + length
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ProtobufError(f"unsupported wire type {wire}")
        out.append((number, value))
    return out


def _decode(message: str, buf: bytes) -> dict[str, Any]:
    schema = MESSAGES[message]
    out: dict[str, Any] = {}
    for number, value in fields(buf):
        if number not in schema:
            continue  # fields the sandbox does not map (status, defaults) are dropped
        name, typ, repeated = schema[number]
        decoded: Any
        if typ.startswith("map:"):
            entry = dict(fields(value if isinstance(value, bytes) else b""))
            k = entry.get(1, b"")
            v = entry.get(2, b"")
            key = k.decode() if isinstance(k, bytes) else str(k)
            if typ == "map:bytes":
                out.setdefault(name, {})[key] = base64.b64encode(v if isinstance(v, bytes) else b"").decode()
            else:
                out.setdefault(name, {})[key] = v.decode() if isinstance(v, bytes) else str(v)
            continue
        if typ == "IntOrString":
            ios = _decode(typ, value if isinstance(value, bytes) else b"")
            decoded = ios.get("strVal", "") if ios.get("type") == 1 else ios.get("intVal", 0)
            if decoded in ("", 0):
                continue
        elif typ == "string":
            decoded = value.decode() if isinstance(value, bytes) else str(value)
            if decoded == "" and not repeated:
                continue
        elif typ == "raw":
            decoded = value
        elif typ == "int":
            decoded = int(value) if isinstance(value, int) else 0
            if decoded == 0 and name not in _KEEP_ZERO:
                continue
        elif typ == "bool":
            decoded = bool(value)
            if not decoded:
                continue
        else:
            decoded = _decode(typ, value if isinstance(value, bytes) else b"")
        if repeated:
            out.setdefault(name, []).append(decoded)
        else:
            out[name] = decoded
    return out


def decode(body: bytes) -> dict[str, Any]:
    """A Kubernetes protobuf body as the JSON object it stands for (raises ProtobufError)."""
    if not body.startswith(MAGIC):
        raise ProtobufError("missing the k8s protobuf magic number")
    unknown = _decode("Unknown", body[len(MAGIC) :])
    type_meta = unknown.get("typeMeta") or {}
    kind = type_meta.get("kind", "")
    if kind in ("SelfSubjectAccessReview", "SelfSubjectReview"):
        return {"apiVersion": type_meta.get("apiVersion", ""), "kind": kind}  # answered, not read
    if kind not in KINDS:
        raise ProtobufError(f"protobuf bodies of kind {kind or '?'} are not supported by the sandbox")
    obj = _decode(kind, unknown.get("raw") or b"")
    obj["apiVersion"] = type_meta.get("apiVersion", "")
    obj["kind"] = kind
    return obj
