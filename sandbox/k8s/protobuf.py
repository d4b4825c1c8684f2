"""Decoding the protobuf request bodies kubectl's typed commands send.

kubectl 1.37 sends ``Content-Type: application/vnd.kubernetes.protobuf`` for the typed
``kubectl create namespace|serviceaccount|secret|configmap|token`` subcommands (JSON for
``apply``/``create -f``/``patch``). The envelope is the 4-byte magic ``k8s\\0`` followed by a
``runtime.Unknown`` message (k8s.io/apimachinery ``pkg/runtime/types_proto.go``); the object
inside is the kind's ``generated.proto`` message (k8s.io/api). Only the messages of those
subcommands are mapped below (field numbers from the public ``generated.proto`` files); anything
else answers 415 so the caller can use ``kubectl apply -f``. Wire format: protobuf encoding spec
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
KINDS = {"Namespace", "ServiceAccount", "Secret", "ConfigMap", "TokenRequest"}


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
        if typ == "string":
            decoded = value.decode() if isinstance(value, bytes) else str(value)
        elif typ == "raw":
            decoded = value
        elif typ == "int":
            decoded = int(value) if isinstance(value, int) else 0
        elif typ == "bool":
            decoded = bool(value)
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
    if kind not in KINDS:
        raise ProtobufError(f"protobuf bodies of kind {kind or '?'} are not supported by the sandbox")
    obj = _decode(kind, unknown.get("raw") or b"")
    obj["apiVersion"] = type_meta.get("apiVersion", "")
    obj["kind"] = kind
    return obj
