"""What every ARM provider module shares: the request, errors, body checks, resource ids, state.

State lives in one document (``ctx.state("arm")``)::

    {"groups": {rg_lower: record}, "resources": {id_lower: record},
     "deleted_vaults": {name_lower: record}, "role_assignments": {id_lower: record},
     "operations": {op_id: operation}}

A record is the resource as ARM returns it (``id``, ``name``, ``type``, ``location``, ``tags``,
``properties``...) plus private keys starting with ``_`` (``_created``, ``_group``, ``_op``...),
stripped by :func:`public`.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from starlette.responses import JSONResponse, Response

from sandbox.context import SandboxContext
from sandbox.errors import arm_error
from sandbox.persist import StateFile


class ArmError(Exception):
    """An ARM error response (``{"error": {"code", "message"}}``) raised from a handler."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers
        self.extra = extra

    def response(self) -> Response:
        if self.extra:
            body = {"error": {"code": self.code, "message": self.message, **self.extra}}
            return JSONResponse(body, status_code=self.status, headers=self.headers)
        return arm_error(self.status, self.code, self.message, self.headers)


@dataclass
class ArmRequest:
    ctx: SandboxContext
    method: str
    path: str
    segments: list[str]
    query: dict[str, str]
    api_version: str
    raw_body: bytes
    caller_oid: str
    caller_appid: str
    _body: Any = field(default=None, repr=False)

    def body(self) -> dict[str, Any]:
        """The JSON body; malformed JSON is ARM's 400 ``InvalidRequestContent``."""
        if self._body is None:
            if not self.raw_body.strip():
                self._body = {}
            else:
                try:
                    self._body = json.loads(self.raw_body)
                except (ValueError, RecursionError) as exc:  # too deep to parse is still bad content
                    raise ArmError(
                        400,
                        "InvalidRequestContent",
                        "The request content was invalid and could not be deserialized: "
                        f"'{_parse_error(exc)}'.",
                    ) from exc
            if not isinstance(self._body, dict):
                raise ArmError(
                    400,
                    "InvalidRequestContent",
                    "The request content was invalid and could not be deserialized: "
                    "'Cannot deserialize the current JSON value into an object.'",
                )
            check_tags(self._body.get("tags"))
        return dict(self._body)

    @property
    def is_pipeline(self) -> bool:
        return self.caller_oid == self.ctx.identity.object_id

    @property
    def subscription_id(self) -> str:
        return self.ctx.identity.subscription_id


def _parse_error(exc: Exception) -> str:
    if isinstance(exc, RecursionError):
        return "The reader's MaxDepth has been exceeded."
    return f"{exc.__class__.__name__}: {str(exc)[:120]}"


_TAG_NAME_RESERVED = set("<>%&\\?/")


def check_tags(tags: Any) -> None:
    """ARM's tag rules for every tracked resource (learn.microsoft.com azure-resource-manager/management/
    tag-resources#limitations): at most 50 name/value pairs, names up to 512 and values up to 256
    characters, names without ``< > % & \\ ? /``; ``tags`` is a map of strings (else the body does not
    deserialize). ``InvalidTagNameCharacters`` is ARM's code for reserved characters; the codes for the
    length and count limits are not known here (``InvalidTag``)."""
    if tags is None:
        return
    if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
        raise ArmError(
            400,
            "InvalidRequestContent",
            "The request content was invalid and could not be deserialized: "
            "'Error converting value to type 'System.Collections.Generic.IDictionary`2[System.String,"
            "System.String]'. Path 'tags'.'",
        )
    if len(tags) > 50:
        raise ArmError(400, "InvalidTag", f"The resource has {len(tags)} tags; at most 50 are allowed.")
    for name, value in tags.items():
        if _TAG_NAME_RESERVED & set(name) or any(ord(ch) < 32 for ch in name):
            raise ArmError(
                400,
                "InvalidTagNameCharacters",
                f"The tag names '{name[:80]}' have reserved characters '<,>,%,&,\\,?,/' or control "
                "characters.",
            )
        if not name or len(name) > 512 or len(value) > 256:
            raise ArmError(
                400,
                "InvalidTag",
                f"The tag '{name[:80]}' is invalid: a tag name has 1 to 512 characters and a value at "
                "most 256.",
            )


def state(ctx: SandboxContext) -> StateFile:
    return ctx.state("arm")


def section(data: dict[str, Any], name: str) -> dict[str, Any]:
    sect = data.get(name)
    if sect is None:
        sect = data[name] = {}
    return sect


def public(record: dict[str, Any]) -> dict[str, Any]:
    """The record without private ``_`` keys (a deep copy, safe to hand out)."""
    out = {k: v for k, v in record.items() if not k.startswith("_")}
    return json.loads(json.dumps(out))


def iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")


def check_keys(obj: Any, allowed: set[str], type_name: str, path: str) -> None:
    """Reject a property the spec does not have (ARM's strict deserialization error)."""
    if obj is None:
        return
    if not isinstance(obj, dict):
        raise ArmError(
            400,
            "InvalidRequestContent",
            "The request content was invalid and could not be deserialized: "
            f"'Error converting value to type '{type_name}'. Path '{path}'.'",
        )
    lowered = {a.lower() for a in allowed}
    for key in obj:
        if key.lower() not in lowered:
            where = f"{path}.{key}" if path else key
            raise ArmError(
                400,
                "InvalidRequestContent",
                "The request content was invalid and could not be deserialized: "
                f"'Could not find member '{key}' on object of type '{type_name}'. Path '{where}'.'",
            )


def required(obj: dict[str, Any], key: str, path: str) -> Any:
    if obj.get(key) in (None, ""):
        where = f"{path}.{key}" if path else key
        raise ArmError(
            400, "InvalidRequestContent", f"Required property '{where}' is missing from the request."
        )
    return obj[key]


def not_found(rtype: str, name: str, group: str) -> ArmError:
    """ARM's 404 for a tracked resource (code ``ResourceNotFound``)."""
    return ArmError(
        404,
        "ResourceNotFound",
        f"The Resource '{rtype}/{name}' under resource group '{group}' was not found. "
        "For more details please go to https://aka.ms/ARMResourceNotFoundFix",
    )


def group_not_found(name: str) -> ArmError:
    return ArmError(404, "ResourceGroupNotFound", f"Resource group '{name}' could not be found.")


def resource_id(sub: str, group: str, provider: str, rtype: str, name: str) -> str:
    return f"/subscriptions/{sub}/resourceGroups/{group}/providers/{provider}/{rtype}/{name}"


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(body, status_code=status, headers=headers)


def no_content(status: int = 204, headers: dict[str, str] | None = None) -> Response:
    return Response(status_code=status, headers=headers)


def live_group(data: dict[str, Any], group: str) -> dict[str, Any]:
    """The resource group record (not being deleted), or 404 ``ResourceGroupNotFound``."""
    rec = section(data, "groups").get(group.lower())
    if rec is None:
        raise group_not_found(group)
    if rec["properties"]["provisioningState"] == "Deleting":
        raise ArmError(
            409,
            "ResourceGroupBeingDeleted",
            f"The resource group '{rec['name']}' is in deprovisioning state "
            "and cannot perform this operation.",
        )
    return rec
