"""Microsoft.Resources: resource groups (create/update, get, head, list, patch tags, delete as an LRO).

Shapes: azure-specs ``resources/CreateResourceGroup.json`` (200/201), ``ResourceGroups_Get.json``,
``ForceDeleteVMsInResourceGroup.json`` (delete: 202 with ``Location`` to
``/subscriptions/{sub}/operationresults/{id}``). Deleting a group cascades when the operation
completes (ARM deletes every resource in the group): vaults go to the soft-deleted state (PITFALLS
P10), clusters are removed from the Kubernetes side, identities go with their federated
credentials, and role assignments scoped inside the group disappear.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from starlette.responses import Response

from sandbox.arm import lro
from sandbox.arm.common import (
    ArmError,
    ArmRequest,
    check_keys,
    group_not_found,
    json_response,
    no_content,
    public,
    required,
    section,
    state,
)
from sandbox.arm.dispatch import RouteSpec
from sandbox.context import SandboxContext

PROVIDER = "Microsoft.Resources"
_NAME = re.compile(r"^[-\w._()]{1,90}$")

# resource type (lower) -> what to do with a resource of that type when its group is deleted.
CascadeHook = Callable[[SandboxContext, dict[str, Any], dict[str, Any]], None]
CASCADE: dict[str, CascadeHook] = {}


def _group_id(sub: str, name: str) -> str:
    return f"/subscriptions/{sub}/resourceGroups/{name}"


async def put_group(req: ArmRequest, caps: list[str]) -> Response:
    name = caps[1]
    if not _NAME.match(name) or name.endswith("."):
        raise ArmError(
            400,
            "InvalidResourceGroup",
            f"The provided resource group name '{name}' has these invalid characters: '{name}'. The name can "
            "only be a letter, digit, '-', '.', '(', ')' or '_'.",
        )
    body = req.body()
    check_keys(
        body, {"location", "tags", "managedBy", "properties", "id", "name", "type"}, "ResourceGroup", ""
    )
    location = str(required(body, "location", ""))
    with state(req.ctx).change() as data:
        groups = section(data, "groups")
        rec = groups.get(name.lower())
        if rec is not None:
            if rec["properties"]["provisioningState"] == "Deleting":
                raise ArmError(
                    409,
                    "ResourceGroupBeingDeleted",
                    f"The resource group '{rec['name']}' is in deprovisioning state and cannot perform this "
                    "operation.",
                )
            if rec["location"].replace(" ", "").lower() != location.replace(" ", "").lower():
                raise ArmError(
                    409,
                    "InvalidResourceGroupLocation",
                    f"Invalid resource group location '{location}'. The Resource group already exists in "
                    f"location '{rec['location']}'.",
                )
            rec["tags"] = body.get("tags") or {}
            return json_response(public(rec), 200)
        rec = {
            "id": _group_id(req.subscription_id, name),
            "name": name,
            "type": "Microsoft.Resources/resourceGroups",
            "location": location,
            "tags": body.get("tags") or {},
            "properties": {"provisioningState": "Succeeded"},
            "_created": req.ctx.clock.now(),
        }
        if body.get("managedBy"):
            rec["managedBy"] = body["managedBy"]
        groups[name.lower()] = rec
        return json_response(public(rec), 201)


def _get(req: ArmRequest, name: str) -> dict[str, Any]:
    rec = section(state(req.ctx).read(), "groups").get(name.lower())
    if rec is None:
        raise group_not_found(name)
    return public(rec)


async def get_group(req: ArmRequest, caps: list[str]) -> Response:
    return json_response(_get(req, caps[1]))


async def head_group(req: ArmRequest, caps: list[str]) -> Response:
    exists = caps[1].lower() in section(state(req.ctx).read(), "groups")
    return no_content(204 if exists else 404)


async def patch_group(req: ArmRequest, caps: list[str]) -> Response:
    body = req.body()
    check_keys(body, {"tags", "managedBy", "name", "properties"}, "ResourceGroupPatchable", "")
    with state(req.ctx).change() as data:
        rec = section(data, "groups").get(caps[1].lower())
        if rec is None:
            raise group_not_found(caps[1])
        if "tags" in body:
            rec["tags"] = body["tags"] or {}
        return json_response(public(rec))


async def list_groups(req: ArmRequest, caps: list[str]) -> Response:
    groups = section(state(req.ctx).read(), "groups")
    return json_response({"value": [public(g) for g in sorted(groups.values(), key=lambda g: g["name"])]})


async def delete_group(req: ArmRequest, caps: list[str]) -> Response:
    ctx = req.ctx
    name = caps[1]
    with state(ctx).change() as data:
        rec = section(data, "groups").get(name.lower())
        if rec is None:
            raise group_not_found(name)
        if rec["properties"]["provisioningState"] == "Deleting":
            op = section(data, "operations")[rec["_op"]]
        else:
            rec["properties"]["provisioningState"] = "Deleting"
            op = lro.start(
                ctx,
                data,
                kind="group.delete",
                target=name.lower(),
                duration_key="resource_group.delete",
                provider=PROVIDER,
                location=rec["location"],
            )
            rec["_op"] = op["id"]
    lro.settle_all(ctx)
    op = lro.find(ctx, op["id"])
    if lro.is_done(op):
        return no_content(200)
    return no_content(202, lro.headers(ctx, op, req.api_version, async_op=False, location=True))


def _complete_delete(ctx: SandboxContext, data: dict[str, Any], op: dict[str, Any]) -> None:
    group = op["target"]
    resources = section(data, "resources")
    # children before parents: longer ids first (FICs before identities, extensions before clusters)
    for rid in sorted(
        [r for r, rec in resources.items() if rec.get("_group") == group], key=len, reverse=True
    ):
        rec = resources.get(rid)
        if rec is None:
            continue
        hook = CASCADE.get(rec["type"].lower())
        if hook is not None:
            hook(ctx, data, rec)
        resources.pop(rid, None)
    prefix = f"/subscriptions/{ctx.identity.subscription_id}/resourcegroups/{group}".lower()
    assignments = section(data, "role_assignments")
    for rid in [
        r
        for r, rec in assignments.items()
        if (rec["properties"]["scope"].lower() + "/").startswith(prefix + "/")
    ]:
        assignments.pop(rid)
    section(data, "groups").pop(group, None)


lro.COMPLETERS["group.delete"] = _complete_delete


async def operation_result(req: ArmRequest, caps: list[str]) -> Response:
    """``Location`` poll target: 202 while running, then 200 (or the failure)."""
    op = lro.find(req.ctx, caps[-1])
    if not lro.is_done(op):
        return no_content(202, lro.headers(req.ctx, op, req.api_version, async_op=False, location=True))
    if op["status"] == "Failed":
        raise ArmError(400, op["error"]["code"], op["error"]["message"])
    return no_content(200)


async def operation_status(req: ArmRequest, caps: list[str]) -> Response:
    op = lro.find(req.ctx, caps[-1])
    headers = {"Retry-After": lro.retry_after(req.ctx, op)} if not lro.is_done(op) else None
    return json_response(lro.status_body(op), 200, headers)


def route_specs() -> list[RouteSpec]:
    rg = ("subscriptions", "*", "resourcegroups", "*")
    return [
        RouteSpec(frozenset({"PUT"}), rg, PROVIDER, put_group),
        RouteSpec(frozenset({"GET"}), rg, PROVIDER, get_group),
        RouteSpec(frozenset({"HEAD"}), rg, PROVIDER, head_group),
        RouteSpec(frozenset({"PATCH"}), rg, PROVIDER, patch_group),
        RouteSpec(frozenset({"DELETE"}), rg, PROVIDER, delete_group),
        RouteSpec(frozenset({"GET"}), ("subscriptions", "*", "resourcegroups"), PROVIDER, list_groups),
        RouteSpec(
            frozenset({"GET"}), ("subscriptions", "*", "operationresults", "*"), PROVIDER, operation_result
        ),
    ]
