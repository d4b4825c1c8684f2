"""Microsoft.KeyVault management plane: vaults, deleted vaults, purge, name availability.

Shapes: azure-specs ``keyvault/createVault.json`` (200/201), ``getVault.json``, ``deleteVault.json``
(200/204), ``getDeletedVault.json``, ``purgeDeletedVault.json`` (200, or 202 + ``Location``),
``checkVaultNameAvailability.json``.

Behaviour and sources:
- ``vaultUri`` is ``{base_url}/vaults/{name}/`` (the sandbox's Key Vault data plane).
- Create is a long operation (``vault.create``, ~20 s at time_scale 1): ``provisioningState``
  ``RegisteringDns`` until done (PITFALLS P9, Azure/azure-sdk-for-python#1172); polled through the
  resource itself (body ``provisioningState``) with ``Retry-After``.
- ``enableRbacAuthorization`` defaults to true: Key Vault made RBAC the default permission model
  from api-version 2026-02-01 (Key Vault "RBAC default" announcement); pinned SDK sends 2026-05-15.
- Soft delete is always on (``enableSoftDelete`` false is refused, as Azure does since 2025):
  deleting a vault keeps it under ``deletedVaults`` until ``scheduledPurgeDate`` or a purge
  (PITFALLS P10). Creating a vault whose name is soft-deleted is 409 ``ConflictError``; a name held
  by a live vault elsewhere is 409 ``VaultAlreadyExists`` (names are global). ``createMode:
  recover`` brings a soft-deleted vault (and its secrets) back.
- Purge with purge protection on is refused with 403 (PITFALLS P10; the exact Azure code is not
  documented: ``Forbidden`` here). ``enablePurgeProtection: false`` is 400 (it is irreversible).
"""

from __future__ import annotations

import re
from typing import Any

from starlette.responses import Response

from sandbox.arm import lro
from sandbox.arm.common import (
    ArmError,
    ArmRequest,
    check_keys,
    iso,
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

PROVIDER = "Microsoft.KeyVault"
VAULT_TYPE = "Microsoft.KeyVault/vaults"
_NAME = re.compile(r"^[a-zA-Z](?!.*--)[a-zA-Z0-9-]{1,22}[a-zA-Z0-9]$")
_PROPS = {
    "tenantId",
    "sku",
    "accessPolicies",
    "vaultUri",
    "hsmPoolResourceId",
    "enabledForDeployment",
    "enabledForDiskEncryption",
    "enabledForTemplateDeployment",
    "enableSoftDelete",
    "softDeleteRetentionInDays",
    "enableRbacAuthorization",
    "createMode",
    "enablePurgeProtection",
    "networkAcls",
    "provisioningState",
    "privateEndpointConnections",
    "publicNetworkAccess",
}
_DAY = 86400.0


def vault_uri(ctx: SandboxContext, name: str) -> str:
    return f"{ctx.base_url}/vaults/{name}/"


def secrets_state(ctx: SandboxContext) -> Any:
    """Secrets live in their own state area (``state/keyvault.json``), keyed by vault name."""
    return ctx.state("keyvault")


def vault_by_name(ctx: SandboxContext, name: str) -> dict[str, Any] | None:
    for rec in section(state(ctx).read(), "resources").values():
        if rec["type"] == VAULT_TYPE and rec["name"].lower() == name.lower():
            return rec
    return None


def _key(req: ArmRequest, caps: list[str]) -> str:
    return resource_id(req.subscription_id, caps[1], PROVIDER, "vaults", caps[2]).lower()


_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_BOOLS = (
    "enabledForDeployment",
    "enabledForDiskEncryption",
    "enabledForTemplateDeployment",
    "enableSoftDelete",
    "enableRbacAuthorization",
    "enablePurgeProtection",
)


def _check_types(props: dict[str, Any]) -> None:
    """JSON types of VaultProperties (azure-specs ``createVault.json`` and the SDK model): booleans,
    ``tenantId`` a GUID, ``accessPolicies`` a list of entries, ``networkAcls`` an object. A wrong type
    is ARM's deserialization error."""

    def bad(path: str, target: str) -> ArmError:
        return ArmError(
            400,
            "InvalidRequestContent",
            "The request content was invalid and could not be deserialized: "
            f"'Error converting value to type '{target}'. Path '{path}'.'",
        )

    for key in _BOOLS:
        if key in props and props[key] is not None and not isinstance(props[key], bool):
            raise bad(f"properties.{key}", "System.Boolean")
    if not isinstance(props.get("tenantId"), str) or not _GUID.match(props["tenantId"]):
        raise bad("properties.tenantId", "System.Guid")
    days = props.get("softDeleteRetentionInDays")
    if days is not None and (isinstance(days, bool) or not isinstance(days, int)):
        raise bad("properties.softDeleteRetentionInDays", "System.Int32")
    if props.get("networkAcls") is not None and not isinstance(props["networkAcls"], dict):
        raise bad("properties.networkAcls", "NetworkRuleSet")
    policies = props.get("accessPolicies")
    if policies is not None and not isinstance(policies, list):
        raise bad("properties.accessPolicies", "AccessPolicyEntry[]")
    for i, policy in enumerate(policies or []):
        if not isinstance(policy, dict):
            raise bad(f"properties.accessPolicies[{i}]", "AccessPolicyEntry")
        for key in ("tenantId", "objectId"):
            if not isinstance(policy.get(key), str):
                raise bad(f"properties.accessPolicies[{i}].{key}", "System.String")
        if not isinstance(policy.get("permissions"), dict):
            raise bad(f"properties.accessPolicies[{i}].permissions", "Permissions")


def _validate(body: dict[str, Any]) -> dict[str, Any]:
    check_keys(
        body,
        {"location", "tags", "properties", "id", "name", "type", "systemData"},
        "VaultCreateOrUpdateParameters",
        "",
    )
    required(body, "location", "")
    props = required(body, "properties", "")
    check_keys(props, _PROPS, "VaultProperties", "properties")
    assert isinstance(props, dict)
    required(props, "tenantId", "properties")
    sku = required(props, "sku", "properties")
    check_keys(sku, {"family", "name"}, "Sku", "properties.sku")
    if str(sku.get("name", "")).lower() not in ("standard", "premium"):
        raise ArmError(
            400, "InvalidRequestContent", f"The value '{sku.get('name')}' is not valid for sku name."
        )
    if props.get("enableSoftDelete") is False:
        raise ArmError(
            400,
            "BadRequest",
            'The property "enableSoftDelete" has been set to false. Soft delete can no longer be disabled '
            "for a vault.",
        )
    if props.get("enablePurgeProtection") is False:
        raise ArmError(
            400,
            "BadRequest",
            'The property "enablePurgeProtection" cannot be set to false. '
            "Enabling the purge protection for a vault is an irreversible action.",
        )
    _check_types(props)
    days = props.get("softDeleteRetentionInDays", 90)
    if not isinstance(days, int) or not 7 <= days <= 90:
        raise ArmError(
            400, "BadRequest", 'The property "softDeleteRetentionInDays" must be between 7 and 90 (days).'
        )
    for policy in props.get("accessPolicies") or []:
        check_keys(
            policy,
            {"tenantId", "objectId", "applicationId", "permissions"},
            "AccessPolicyEntry",
            "properties.accessPolicies",
        )
    return props


async def put_vault(req: ArmRequest, caps: list[str]) -> Response:
    ctx = req.ctx
    group, name = caps[1], caps[2]
    if not _NAME.match(name):
        raise ArmError(
            400,
            "VaultNameNotValid",
            f"The vault name '{name}' is invalid. A vault's name must be between 3-24 alphanumeric "
            "characters. "
            "The name must begin with a letter, end with a letter or digit, and not contain "
            "consecutive hyphens.",
        )
    body = req.body()
    props = _validate(body)
    key = _key(req, caps)
    with state(ctx).change() as data:
        live_group(data, group)
        resources = section(data, "resources")
        rec = resources.get(key)
        deleted = section(data, "deleted_vaults").get(name.lower())
        if rec is None:
            other = vault_by_name(ctx, name)
            if other is not None:
                raise ArmError(
                    409,
                    "VaultAlreadyExists",
                    f"The vault name '{name}' is already in use. Vault names are globally unique so "
                    "it is possible "
                    "that the name is already taken. If you are sure that the vault name was not "
                    "taken then it is "
                    "possible that a vault with the same name was recently deleted but not purged "
                    "after being "
                    "placed in a recoverable state. If the vault is in a recoverable state then the "
                    "vault will need "
                    "to be purged before reusing the name.",
                )
            recover = str(props.get("createMode", "default")).lower() == "recover"
            if deleted is not None and not recover:
                raise ArmError(
                    409,
                    "ConflictError",
                    "A vault with the same name already exists in deleted state. You need to either "
                    "recover or "
                    "purge existing deleted vault.",
                )
            if recover and deleted is None:
                raise ArmError(
                    404,
                    "DeletedVaultNotFound",
                    f"The specified deleted vault '{name}' does not exist.",
                )
        now = ctx.clock.now()
        stored = {k: v for k, v in props.items() if k not in ("createMode", "provisioningState", "vaultUri")}
        stored.setdefault("enableRbacAuthorization", True)
        stored.setdefault("enableSoftDelete", True)
        stored.setdefault("softDeleteRetentionInDays", 90)
        stored.setdefault("accessPolicies", [])
        stored.setdefault("publicNetworkAccess", "Enabled")
        stored.setdefault("enabledForDeployment", False)
        stored.setdefault("enabledForDiskEncryption", False)
        stored.setdefault("enabledForTemplateDeployment", False)
        stored["vaultUri"] = vault_uri(ctx, name)
        status = 200
        if rec is None:
            status = 201
            if deleted is not None:
                section(data, "deleted_vaults").pop(name.lower())
                stored["enablePurgeProtection"] = deleted["properties"].get("purgeProtectionEnabled") or None
            rec = {
                "id": resource_id(req.subscription_id, group, PROVIDER, "vaults", name),
                "name": name,
                "type": VAULT_TYPE,
                "location": body["location"],
                "_group": group.lower(),
                "_created": now,
                "systemData": {
                    "createdAt": iso(now),
                    "createdBy": req.caller_appid,
                    "createdByType": "Application",
                },
            }
            op = lro.start(
                ctx,
                data,
                kind="vault.create",
                target=key,
                duration_key="vault.create",
                provider=PROVIDER,
                location=body["location"],
            )
            rec["_op"] = op["id"]
            stored["provisioningState"] = "RegisteringDns"
            resources[key] = rec
        else:
            if rec["properties"].get("enablePurgeProtection") and not stored.get("enablePurgeProtection"):
                stored["enablePurgeProtection"] = True
            stored["provisioningState"] = rec["properties"]["provisioningState"]
        if not stored.get("enablePurgeProtection"):
            stored.pop("enablePurgeProtection", None)
        rec["tags"] = body.get("tags") or {}
        rec["properties"] = stored
        rec["systemData"].update(
            {
                "lastModifiedAt": iso(now),
                "lastModifiedBy": req.caller_appid,
                "lastModifiedByType": "Application",
            }
        )
    lro.settle_all(ctx)
    return _vault_response(req, key, status)


async def patch_vault(req: ArmRequest, caps: list[str]) -> Response:
    """``vaults.update``: merge ``tags`` and ``properties`` (VaultPatchParameters)."""
    body = req.body()
    check_keys(body, {"tags", "properties"}, "VaultPatchParameters", "")
    props = body.get("properties") or {}
    check_keys(
        props,
        _PROPS - {"vaultUri", "hsmPoolResourceId", "provisioningState", "privateEndpointConnections"},
        "VaultPatchProperties",
        "properties",
    )
    if props.get("enablePurgeProtection") is False or props.get("enableSoftDelete") is False:
        raise ArmError(400, "BadRequest", "Soft delete and purge protection cannot be disabled once enabled.")
    key = _key(req, caps)
    with state(req.ctx).change() as data:
        rec = section(data, "resources").get(key)
        if rec is None:
            raise not_found(VAULT_TYPE, caps[2], caps[1])
        if "tags" in body:
            rec["tags"] = body["tags"] or {}
        rec["properties"].update({k: v for k, v in props.items() if k != "createMode"})
    return _vault_response(req, key)


def _vault_response(req: ArmRequest, key: str, status: int = 200) -> Response:
    rec = section(state(req.ctx).read(), "resources")[key]
    out = public(rec)
    headers = None
    if out["properties"]["provisioningState"] != "Succeeded" and rec.get("_op"):
        op = lro.find(req.ctx, rec["_op"])
        headers = {"Retry-After": lro.retry_after(req.ctx, op)}
    return json_response(out, status, headers)


def _complete_create(ctx: SandboxContext, data: dict[str, Any], op: dict[str, Any]) -> None:
    rec = section(data, "resources").get(op["target"])
    if rec is not None:
        rec["properties"]["provisioningState"] = "Succeeded"


lro.COMPLETERS["vault.create"] = _complete_create


async def get_vault(req: ArmRequest, caps: list[str]) -> Response:
    key = _key(req, caps)
    if key not in section(state(req.ctx).read(), "resources"):
        raise not_found(VAULT_TYPE, caps[2], caps[1])
    return _vault_response(req, key)


async def list_vaults(req: ArmRequest, caps: list[str]) -> Response:
    with state(req.ctx).change() as data:
        live_group(data, caps[1])
    group = caps[1].lower()
    items = [
        public(r)
        for r in section(state(req.ctx).read(), "resources").values()
        if r["type"] == VAULT_TYPE and r.get("_group") == group
    ]
    return json_response({"value": items})


def soft_delete(ctx: SandboxContext, data: dict[str, Any], rec: dict[str, Any]) -> None:
    """Move a vault to ``deletedVaults`` (its secrets stay, unreachable, until purge or recover)."""
    now = ctx.clock.now()
    props = rec["properties"]
    _check_types(props)
    days = props.get("softDeleteRetentionInDays", 90)
    loc = rec["location"]
    sub = ctx.identity.subscription_id
    section(data, "deleted_vaults")[rec["name"].lower()] = {
        "id": f"/subscriptions/{sub}/providers/{PROVIDER}/locations/{loc}/deletedVaults/{rec['name']}",
        "name": rec["name"],
        "type": "Microsoft.KeyVault/deletedVaults",
        "properties": {
            "vaultId": rec["id"],
            "location": loc,
            "deletionDate": iso(now),
            "scheduledPurgeDate": iso(now + days * _DAY),
            "tags": rec.get("tags") or {},
            "purgeProtectionEnabled": bool(props.get("enablePurgeProtection")),
        },
        "_scheduled": now + days * _DAY,
    }
    section(data, "resources").pop(rec["id"].lower(), None)


async def delete_vault(req: ArmRequest, caps: list[str]) -> Response:
    with state(req.ctx).change() as data:
        rec = section(data, "resources").get(_key(req, caps))
        if rec is None:
            return no_content(204)
        soft_delete(req.ctx, data, rec)
    return no_content(200)


def _deleted(req: ArmRequest, location: str, name: str) -> dict[str, Any]:
    rec = section(state(req.ctx).read(), "deleted_vaults").get(name.lower())
    if rec is None or rec["properties"]["location"].lower() != location.lower():
        raise ArmError(404, "ResourceNotFound", f"The specified deleted vault '{name}' does not exist.")
    return rec


async def get_deleted(req: ArmRequest, caps: list[str]) -> Response:
    return json_response(public(_deleted(req, caps[1], caps[2])))


async def list_deleted(req: ArmRequest, caps: list[str]) -> Response:
    items = [public(r) for r in section(state(req.ctx).read(), "deleted_vaults").values()]
    return json_response({"value": items})


async def purge_deleted(req: ArmRequest, caps: list[str]) -> Response:
    ctx = req.ctx
    location, name = caps[1], caps[2]
    rec = _deleted(req, location, name)
    if rec["properties"]["purgeProtectionEnabled"] and ctx.clock.now() < rec["_scheduled"]:
        raise ArmError(
            403,
            "Forbidden",
            f"Operation 'DeletedVaultPurge' is not allowed. Vault '{name}' has purge protection enabled and "
            f"cannot be purged before its scheduled purge date '{rec['properties']['scheduledPurgeDate']}'.",
        )
    with state(ctx).change() as data:
        op_id = rec.get("_purge_op")
        if op_id is None:
            op = lro.start(
                ctx,
                data,
                kind="vault.purge",
                target=name.lower(),
                duration_key="vault.purge",
                provider=PROVIDER,
                location=location,
            )
            data["deleted_vaults"][name.lower()]["_purge_op"] = op["id"]
            op_id = op["id"]
    lro.settle_all(ctx)
    op = lro.find(ctx, op_id)
    if lro.is_done(op):
        return no_content(200)
    return no_content(202, lro.headers(ctx, op, req.api_version, async_op=False, location=True))


def _complete_purge(ctx: SandboxContext, data: dict[str, Any], op: dict[str, Any]) -> None:
    section(data, "deleted_vaults").pop(op["target"], None)
    with secrets_state(ctx).change() as secrets:
        secrets.pop(op["target"], None)


lro.COMPLETERS["vault.purge"] = _complete_purge


async def check_name(req: ArmRequest, caps: list[str]) -> Response:
    body = req.body()
    check_keys(body, {"name", "type"}, "VaultCheckNameAvailabilityParameters", "")
    name = str(required(body, "name", ""))
    if str(body.get("type", "")).lower() != VAULT_TYPE.lower():
        raise ArmError(
            400, "InvalidRequestContent", "The property 'type' must be 'Microsoft.KeyVault/vaults'."
        )
    if not _NAME.match(name):
        return json_response(
            {
                "nameAvailable": False,
                "reason": "AccountNameInvalid",
                "message": f"The vault name '{name}' is invalid.",
            }
        )
    taken = vault_by_name(req.ctx, name) is not None
    deleted = name.lower() in section(state(req.ctx).read(), "deleted_vaults")
    if taken or deleted:
        return json_response(
            {
                "nameAvailable": False,
                "reason": "AlreadyExists",
                "message": f"The vault name '{name}' is already in use."
                + (" It is in a deleted state and must be purged or recovered first." if deleted else ""),
            }
        )
    return json_response({"nameAvailable": True})


def _cascade(ctx: SandboxContext, data: dict[str, Any], rec: dict[str, Any]) -> None:
    soft_delete(ctx, data, rec)


CASCADE[VAULT_TYPE.lower()] = _cascade


def route_specs() -> list[RouteSpec]:
    base = ("subscriptions", "*", "resourcegroups", "*", "providers", PROVIDER)
    vault = (*base, "vaults", "*")
    sub = ("subscriptions", "*", "providers", PROVIDER)
    deleted = (*sub, "locations", "*", "deletedVaults", "*")
    return [
        RouteSpec(frozenset({"PUT"}), vault, PROVIDER, put_vault),
        RouteSpec(frozenset({"GET"}), vault, PROVIDER, get_vault),
        RouteSpec(frozenset({"DELETE"}), vault, PROVIDER, delete_vault),
        RouteSpec(frozenset({"PATCH"}), vault, PROVIDER, patch_vault),
        RouteSpec(frozenset({"GET"}), (*base, "vaults"), PROVIDER, list_vaults),
        RouteSpec(frozenset({"GET"}), deleted, PROVIDER, get_deleted),
        RouteSpec(frozenset({"POST"}), (*deleted, "purge"), PROVIDER, purge_deleted),
        RouteSpec(frozenset({"GET"}), (*sub, "deletedVaults"), PROVIDER, list_deleted),
        RouteSpec(frozenset({"POST"}), (*sub, "checkNameAvailability"), PROVIDER, check_name),
    ]
