"""Microsoft.ManagedIdentity: user-assigned identities and their federated identity credentials.

Shapes: azure-specs ``msi/IdentityCreate.json`` (201/200 with ``clientId``, ``principalId``,
``tenantId``, ``isolationScope``), ``IdentityGet.json``, ``IdentityDelete.json`` (200/204),
``FederatedIdentityCredentialCreate/Get/List/Delete.json``.

Rules (PITFALLS P4, P5; Entra doc "workload identity federation considerations"):
- at most 20 federated credentials per identity; exactly one audience; an issuer + subject pair
  is unique per identity (400; the exact Azure error code is not documented — ``BadRequest`` here);
- two writes (PUT/DELETE) of federated credentials on one identity that overlap in time get 409
  ``ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity``
  (hashicorp/terraform-provider-azurerm#19968). A write takes a modelled time: the override
  ``federated_credential.write`` if set, else ``2 s x time_scale`` but at least 0.2 s, so two
  concurrent writes collide even at time_scale 0.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from typing import Any

from starlette.responses import Response

from sandbox.arm import lro
from sandbox.arm.common import (
    ArmError,
    ArmRequest,
    check_keys,
    json_response,
    live_group,
    no_content,
    not_found,
    public,
    required,
    resource_id,
    section,
    state,
)
from sandbox.arm.dispatch import RouteSpec
from sandbox.arm.resources import CASCADE
from sandbox.context import SandboxContext

PROVIDER = "Microsoft.ManagedIdentity"
IDENTITY_TYPE = "Microsoft.ManagedIdentity/userAssignedIdentities"
FIC_TYPE = "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials"
MAX_FICS = 20
FIC_WRITE_BASE = 2.0
FIC_WRITE_MIN = 0.2
_IDENTITY_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_-]{2,127}$")
_FIC_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_-]{2,119}$")


def fic_write_seconds(ctx: SandboxContext) -> float:
    if "federated_credential.write" in ctx.clock.overrides:
        return max(0.0, ctx.clock.overrides["federated_credential.write"])
    return max(FIC_WRITE_MIN, FIC_WRITE_BASE * ctx.clock.time_scale)


def _identity_key(req: ArmRequest, caps: list[str]) -> str:
    return resource_id(req.subscription_id, caps[1], PROVIDER, "userAssignedIdentities", caps[2]).lower()


def _get_identity(req: ArmRequest, caps: list[str]) -> dict[str, Any]:
    rec = section(state(req.ctx).read(), "resources").get(_identity_key(req, caps))
    if rec is None:
        raise not_found(IDENTITY_TYPE, caps[2], caps[1])
    return rec


async def put_identity(req: ArmRequest, caps: list[str]) -> Response:
    group, name = caps[1], caps[2]
    if not _IDENTITY_NAME.match(name):
        raise ArmError(
            400,
            "InvalidResourceName",
            f"Resource name {name} is invalid. The name can be 3-128 characters long "
            "and can contain letters, "
            "digits, hyphens and underscores, starting with a letter or digit.",
        )
    body = req.body()
    check_keys(body, {"location", "tags", "properties", "id", "name", "type"}, "Identity", "")
    check_keys(body.get("properties"), {"isolationScope"}, "UserAssignedIdentityProperties", "properties")
    location = str(required(body, "location", ""))
    scope = (body.get("properties") or {}).get("isolationScope") or "None"
    if scope not in ("None", "Regional"):
        raise ArmError(400, "InvalidRequestContent", f"The value '{scope}' is not valid for isolationScope.")
    with state(req.ctx).change() as data:
        live_group(data, group)
        resources = section(data, "resources")
        key = _identity_key(req, caps)
        rec = resources.get(key)
        status = 200
        if rec is None:
            status = 201
            rec = {
                "id": resource_id(req.subscription_id, group, PROVIDER, "userAssignedIdentities", name),
                "name": name,
                "type": IDENTITY_TYPE,
                "location": location,
                "tags": {},
                "properties": {
                    "tenantId": req.ctx.identity.tenant_id,
                    "principalId": str(uuid.uuid4()),
                    "clientId": str(uuid.uuid4()),
                },
                "_group": group.lower(),
                "_created": req.ctx.clock.now(),
            }
            resources[key] = rec
        rec["tags"] = body.get("tags") or {}
        rec["properties"]["isolationScope"] = scope
        return json_response(public(rec), status)


async def get_identity(req: ArmRequest, caps: list[str]) -> Response:
    return json_response(public(_get_identity(req, caps)))


async def list_identities(req: ArmRequest, caps: list[str]) -> Response:
    group = caps[1].lower()
    with state(req.ctx).change() as data:
        live_group(data, caps[1])
    items = [
        public(r)
        for r in section(state(req.ctx).read(), "resources").values()
        if r["type"] == IDENTITY_TYPE and r.get("_group") == group
    ]
    return json_response({"value": items})


def _drop_identity(data: dict[str, Any], key: str) -> None:
    resources = section(data, "resources")
    for k in [k for k in resources if k.startswith(key + "/federatedidentitycredentials/")]:
        resources.pop(k)
    resources.pop(key, None)


async def delete_identity(req: ArmRequest, caps: list[str]) -> Response:
    key = _identity_key(req, caps)
    with state(req.ctx).change() as data:
        if key not in section(data, "resources"):
            return no_content(204)
        _drop_identity(data, key)
    return no_content(200)


# -- federated identity credentials --------------------------------------------------------------
def _fic_key(req: ArmRequest, caps: list[str]) -> str:
    return f"{_identity_key(req, caps)}/federatedidentitycredentials/{caps[3].lower()}"


def _inflight(ctx: SandboxContext) -> dict[str, float]:
    table: dict[str, float] = ctx.services.setdefault("arm.fic_inflight", {})
    return table


async def _exclusive_write(req: ArmRequest, caps: list[str]) -> None:
    """Model the write's duration; a second write on the same identity meanwhile is a 409."""
    identity = _get_identity(req, caps)
    table = _inflight(req.ctx)
    key = identity["id"].lower()
    now = time.monotonic()
    if table.get(key, 0.0) > now:
        raise ArmError(
            409,
            "ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity",
            f"Too many Federated Identity Credentials are written concurrently for the managed identity "
            f"{identity['id']}. Concurrent Federated Identity Credentials writes under the same managed "
            "identity are not supported.",
        )
    seconds = fic_write_seconds(req.ctx)
    table[key] = now + seconds
    if seconds:
        await asyncio.sleep(seconds)


def _release(req: ArmRequest, caps: list[str]) -> None:
    _inflight(req.ctx).pop(_identity_key(req, caps), None)


def _validate_fic(body: dict[str, Any]) -> dict[str, Any]:
    check_keys(body, {"properties", "id", "name", "type"}, "FederatedIdentityCredential", "")
    props = body.get("properties")
    if not isinstance(props, dict):
        raise ArmError(
            400, "InvalidRequestContent", "Required property 'properties' is missing from the request."
        )
    check_keys(
        props,
        {"issuer", "subject", "audiences", "claimsMatchingExpression"},
        "FederatedIdentityCredentialProperties",
        "properties",
    )
    issuer = required(props, "issuer", "properties")
    subject = required(props, "subject", "properties")
    audiences = required(props, "audiences", "properties")
    if not isinstance(issuer, str) or not issuer.startswith("https://"):
        raise ArmError(400, "BadRequest", "Issuer must be a valid URL that starts with 'https://'.")
    if not isinstance(subject, str):
        raise ArmError(400, "BadRequest", "Subject must be a string.")
    if (
        not isinstance(audiences, list)
        or len(audiences) != 1
        or not all(isinstance(a, str) for a in audiences)
    ):
        raise ArmError(
            400,
            "BadRequest",
            "Federated identity credential must have exactly one audience "
            "(Entra workload identity federation "
            "supports a single audience value).",
        )
    return {"issuer": issuer, "subject": subject, "audiences": list(audiences)}


async def put_fic(req: ArmRequest, caps: list[str]) -> Response:
    name = caps[3]
    if not _FIC_NAME.match(name):
        raise ArmError(
            400,
            "InvalidResourceName",
            f"Resource name {name} is invalid. The name can be 3-120 characters long "
            "and can contain letters, "
            "digits, hyphens and underscores, starting with a letter or digit.",
        )
    props = _validate_fic(req.body())
    await _exclusive_write(req, caps)
    try:
        with state(req.ctx).change() as data:
            resources = section(data, "resources")
            ident_key = _identity_key(req, caps)
            identity = resources.get(ident_key)
            if identity is None:
                raise not_found(IDENTITY_TYPE, caps[2], caps[1])
            key = _fic_key(req, caps)
            siblings = [
                r
                for k, r in resources.items()
                if k.startswith(ident_key + "/federatedidentitycredentials/") and k != key
            ]
            for other in siblings:
                op = other["properties"]
                if op["issuer"] == props["issuer"] and op["subject"] == props["subject"]:
                    raise ArmError(
                        400,
                        "BadRequest",
                        f"Federated Identity Credential with issuer '{props['issuer']}' and subject "
                        f"'{props['subject']}' already exists under identity '{identity['name']}' "
                        f"(as '{other['name']}').",
                    )
            existing = resources.get(key)
            if existing is None and len(siblings) >= MAX_FICS:
                raise ArmError(
                    400,
                    "BadRequest",
                    f"The managed identity '{identity['name']}' already has the maximum number of federated "
                    f"identity credentials ({MAX_FICS}).",
                )
            if existing is not None:
                changed = existing["properties"] != props
                existing["properties"] = props
                if changed:
                    existing["_created"] = req.ctx.clock.now()  # changes propagate again (P6)
                return json_response(public(existing), 200)
            rec = {
                "id": f"{identity['id']}/federatedIdentityCredentials/{name}",
                "name": name,
                "type": FIC_TYPE,
                "properties": props,
                "_group": identity["_group"],
                "_created": req.ctx.clock.now(),
            }
            resources[key] = rec
            return json_response(public(rec), 201)
    finally:
        _release(req, caps)


async def get_fic(req: ArmRequest, caps: list[str]) -> Response:
    _get_identity(req, caps)
    rec = section(state(req.ctx).read(), "resources").get(_fic_key(req, caps))
    if rec is None:
        raise not_found(FIC_TYPE, f"{caps[2]}/{caps[3]}", caps[1])
    return json_response(public(rec))


async def list_fics(req: ArmRequest, caps: list[str]) -> Response:
    identity = _get_identity(req, caps)
    prefix = identity["id"].lower() + "/federatedidentitycredentials/"
    items = [
        public(r) for k, r in section(state(req.ctx).read(), "resources").items() if k.startswith(prefix)
    ]
    return json_response({"value": sorted(items, key=lambda r: r["name"])})


async def delete_fic(req: ArmRequest, caps: list[str]) -> Response:
    _get_identity(req, caps)
    if _fic_key(req, caps) not in section(state(req.ctx).read(), "resources"):
        return no_content(204)
    await _exclusive_write(req, caps)
    try:
        with state(req.ctx).change() as data:
            gone = section(data, "resources").pop(_fic_key(req, caps), None)
        return no_content(200 if gone else 204)
    finally:
        _release(req, caps)


def _cascade(ctx: SandboxContext, data: dict[str, Any], rec: dict[str, Any]) -> None:
    _drop_identity(data, rec["id"].lower())


CASCADE[IDENTITY_TYPE.lower()] = _cascade
_ = lro  # identities are synchronous in Azure (the SDK has no begin_ for them)


def route_specs() -> list[RouteSpec]:
    base = ("subscriptions", "*", "resourcegroups", "*", "providers", PROVIDER)
    ident = (*base, "userAssignedIdentities", "*")
    fic = (*ident, "federatedIdentityCredentials", "*")
    return [
        RouteSpec(frozenset({"PUT"}), ident, PROVIDER, put_identity),
        RouteSpec(frozenset({"GET"}), ident, PROVIDER, get_identity),
        RouteSpec(frozenset({"DELETE"}), ident, PROVIDER, delete_identity),
        RouteSpec(frozenset({"GET"}), (*base, "userAssignedIdentities"), PROVIDER, list_identities),
        RouteSpec(frozenset({"PUT"}), fic, PROVIDER, put_fic),
        RouteSpec(frozenset({"GET"}), fic, PROVIDER, get_fic),
        RouteSpec(frozenset({"DELETE"}), fic, PROVIDER, delete_fic),
        RouteSpec(frozenset({"GET"}), (*ident, "federatedIdentityCredentials"), PROVIDER, list_fics),
    ]
