"""Microsoft.Authorization: built-in role definitions and role assignments at any scope.

Shapes: azure-specs ``authorization/GetRoleDefinitionByName.json``, ``RoleAssignments_Get.json``,
``RoleAssignments_CreateForResource.json``, ``RoleAssignments_Delete.json`` (200 with body, 204
when absent), ``RoleAssignments_ListForScope.json``. Built-in role ids and permissions: the
"Azure built-in roles" reference (learn.microsoft.com/azure/role-based-access-control/built-in-roles).

Rules:
- 409 ``RoleAssignmentExists`` for the same scope + principal + role under another name
  (PITFALLS P3, Azure/azure-cli#8568); the same name with the same content is idempotent (201);
  the same name with other content is 400 ``RoleAssignmentUpdateNotPermitted``.
- 400 ``PrincipalNotFound`` for an unknown principal and, during the ``propagation.principal``
  window after a managed identity is created, for that identity too (PITFALLS P2,
  Azure/azure-cli#8530). Azure's docs say a set ``principalType`` can avoid the replication
  check; the SDK always sends one (default ``User``), and P2's reports show the error anyway, so
  the sandbox keeps the window regardless of ``principalType`` (a deliberate simplification).
- 400 ``UnmatchedPrincipalType`` when ``principalType`` differs from the principal's type (every
  principal here is a ``ServicePrincipal``; the SDK default is ``User``: CLIENT-FACTS).
- 403 ``AuthorizationFailed`` for writes and deletes when the caller lacks
  ``Microsoft.Authorization/roleAssignments/write|delete`` at the scope: the pipeline principal
  holds ``ctx.settings.caller_role`` (Owner, or Contributor whose notActions exclude it) on the
  subscription; other principals hold what their role assignments grant.
- List filters: none (at, above and below the scope), ``atScope()`` (at or above),
  ``principalId eq '{id}'`` and ``assignedTo('{id}')`` (ARM "list role assignments" doc).
"""

from __future__ import annotations

import re
from typing import Any

from starlette.responses import Response

from sandbox.arm import directory
from sandbox.arm.common import (
    ArmError,
    ArmRequest,
    check_keys,
    iso,
    json_response,
    no_content,
    public,
    required,
    section,
    state,
)
from sandbox.arm.dispatch import Handler, RouteSpec, split_scoped
from sandbox.context import SandboxContext

PROVIDER = "Microsoft.Authorization"
_TS = "2015-02-02T21:55:09.8806423Z"

_CONTRIBUTOR_NOT = [
    "Microsoft.Authorization/*/Delete",
    "Microsoft.Authorization/*/Write",
    "Microsoft.Authorization/elevateAccess/Action",
    "Microsoft.Blueprint/blueprintAssignments/write",
    "Microsoft.Blueprint/blueprintAssignments/delete",
    "Microsoft.Compute/galleries/share/action",
    "Microsoft.Purview/consents/write",
    "Microsoft.Purview/consents/delete",
]

# guid -> (roleName, description, actions, notActions, dataActions)
BUILT_IN_ROLES: dict[str, tuple[str, str, list[str], list[str], list[str]]] = {
    "8e3af657-a8ff-443a-a75c-2fe8c4bcb635": (
        "Owner",
        "Grants full access to manage all resources, including the ability to assign roles in Azure RBAC.",
        ["*"],
        [],
        [],
    ),
    "b24988ac-6180-42a0-ab88-20f7382dd24c": (
        "Contributor",
        "Grants full access to manage all resources, but does not allow you to assign roles in Azure RBAC, "
        "manage assignments in Azure Blueprints, or share image galleries.",
        ["*"],
        _CONTRIBUTOR_NOT,
        [],
    ),
    "acdd72a7-3385-48ef-bd42-f606fba81ae7": (
        "Reader",
        "View all resources, but does not allow you to make any changes.",
        ["*/read"],
        [],
        [],
    ),
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9": (
        "User Access Administrator",
        "Lets you manage user access to Azure resources.",
        ["*/read", "Microsoft.Authorization/*", "Microsoft.Support/*"],
        [],
        [],
    ),
    "00482a5a-887f-4fb3-b363-3b7fe8e74483": (
        "Key Vault Administrator",
        "Perform all data plane operations on a key vault and all objects in it, including certificates, "
        "keys, and secrets. Cannot manage key vault resources or manage role assignments.",
        [
            "Microsoft.Authorization/*/read",
            "Microsoft.Resources/subscriptions/resourceGroups/read",
            "Microsoft.KeyVault/checkNameAvailability/read",
            "Microsoft.KeyVault/deletedVaults/read",
            "Microsoft.KeyVault/locations/*/read",
            "Microsoft.KeyVault/vaults/*/read",
            "Microsoft.KeyVault/operations/read",
        ],
        [],
        ["Microsoft.KeyVault/vaults/*"],
    ),
    "b86a8fe4-44ce-4948-aee5-eccb2c155cd7": (
        "Key Vault Secrets Officer",
        "Perform any action on the secrets of a key vault, except manage permissions.",
        [
            "Microsoft.Authorization/*/read",
            "Microsoft.Resources/subscriptions/resourceGroups/read",
            "Microsoft.KeyVault/checkNameAvailability/read",
            "Microsoft.KeyVault/deletedVaults/read",
            "Microsoft.KeyVault/locations/*/read",
            "Microsoft.KeyVault/vaults/*/read",
            "Microsoft.KeyVault/operations/read",
        ],
        [],
        ["Microsoft.KeyVault/vaults/secrets/*"],
    ),
    "4633458b-17de-408a-b874-0445c86b69e6": (
        "Key Vault Secrets User",
        "Read secret contents. Only works for key vaults that use the 'Azure role-based access control' "
        "permission model.",
        [],
        [],
        [
            "Microsoft.KeyVault/vaults/secrets/getSecret/action",
            "Microsoft.KeyVault/vaults/secrets/readMetadata/action",
        ],
    ),
    "21090545-7ca7-4776-b22c-e363652d74d2": (
        "Key Vault Reader",
        "Read metadata of key vaults and its certificates, keys, and secrets.",
        ["Microsoft.Authorization/*/read", "Microsoft.KeyVault/vaults/*/read"],
        [],
        ["Microsoft.KeyVault/vaults/*/read", "Microsoft.KeyVault/vaults/secrets/readMetadata/action"],
    ),
    "4abbcc35-e782-43d8-92c5-2d3f1bd2253f": (
        "Azure Kubernetes Service Cluster User Role",
        "List cluster user credential action.",
        [
            "Microsoft.ContainerService/managedClusters/listClusterUserCredential/action",
            "Microsoft.ContainerService/managedClusters/read",
        ],
        [],
        [],
    ),
}
ROLE_IDS_BY_NAME = {v[0].lower(): k for k, v in BUILT_IN_ROLES.items()}
PRINCIPAL_TYPES = ("User", "Group", "ServicePrincipal", "ForeignGroup", "Device")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def norm_scope(scope: str) -> str:
    return "/" + scope.strip("/").lower() if scope.strip("/") else "/"


def is_at_or_above(assignment_scope: str, scope: str) -> bool:
    """True when ``assignment_scope`` is ``scope`` or one of its ancestors (it applies there)."""
    a, s = norm_scope(assignment_scope), norm_scope(scope)
    return a == "/" or s == a or s.startswith(a + "/")


def role_definition(ctx: SandboxContext, guid: str, scope: str = "") -> dict[str, Any]:
    name, description, actions, not_actions, data_actions = BUILT_IN_ROLES[guid.lower()]
    sub = ctx.identity.subscription_id
    prefix = scope.rstrip("/") if scope.strip("/") else f"/subscriptions/{sub}"
    return {
        "id": f"{prefix}/providers/Microsoft.Authorization/roleDefinitions/{guid.lower()}",
        "type": "Microsoft.Authorization/roleDefinitions",
        "name": guid.lower(),
        "properties": {
            "roleName": name,
            "type": "BuiltInRole",
            "description": description,
            "assignableScopes": ["/"],
            "permissions": [
                {
                    "actions": actions,
                    "notActions": not_actions,
                    "dataActions": data_actions,
                    "notDataActions": [],
                }
            ],
            "createdOn": _TS,
            "updatedOn": _TS,
            "createdBy": None,
            "updatedBy": None,
        },
    }


def _wild(pattern: str, action: str) -> bool:
    rx = "^" + re.escape(pattern.lower()).replace(r"\*", ".*") + "$"
    return re.match(rx, action.lower()) is not None


def _grants(guid: str, action: str, *, data: bool) -> bool:
    _, _, actions, not_actions, data_actions = BUILT_IN_ROLES[guid]
    if data:
        return any(_wild(p, action) for p in data_actions)
    return any(_wild(p, action) for p in actions) and not any(_wild(p, action) for p in not_actions)


def _role_guid(role_definition_id: str) -> str:
    return role_definition_id.rstrip("/").rsplit("/", 1)[-1].lower()


def effective_assignments(ctx: SandboxContext, principal_id: str, scope: str) -> list[dict[str, Any]]:
    """Role assignments of ``principal_id`` that apply at ``scope`` (at or above it)."""
    return [
        a
        for a in section(state(ctx).read(), "role_assignments").values()
        if a["properties"]["principalId"].lower() == principal_id.lower()
        and is_at_or_above(a["properties"]["scope"], scope)
    ]


def allowed(ctx: SandboxContext, principal_id: str, scope: str, action: str, *, data: bool = False) -> bool:
    """Whether the principal may perform ``action`` (a data action when ``data``) at ``scope``.

    Data-plane grants count only once the assignment is older than ``propagation.rbac``
    (PITFALLS P8). The pipeline principal holds ``ctx.settings.caller_role`` on the subscription.
    """
    if not data and principal_id.lower() == ctx.identity.object_id.lower():
        if _grants(ROLE_IDS_BY_NAME[ctx.settings.caller_role.lower()], action, data=False):
            return True
    now = ctx.clock.now()
    window = ctx.clock.duration("propagation.rbac") if data else 0.0
    for a in effective_assignments(ctx, principal_id, scope):
        guid = _role_guid(a["properties"]["roleDefinitionId"])
        if guid in BUILT_IN_ROLES and _grants(guid, action, data=data) and now - a["_created"] >= window:
            return True
    return False


def _authorization_failed(req: ArmRequest, action: str, target: str) -> ArmError:
    return ArmError(
        403,
        "AuthorizationFailed",
        f"The client '{req.caller_appid}' with object id '{req.caller_oid}' does not have authorization to "
        f"perform action '{action}' over scope '{target}' or the scope is invalid. If access was recently "
        "granted, please refresh your credentials.",
    )


def _check_scope_exists(req: ArmRequest, scope: str) -> None:
    segs = [s for s in scope.strip("/").split("/") if s]
    low = [s.lower() for s in segs]
    if not segs:
        return
    if low[0] != "subscriptions" or len(segs) < 2 or low[1] != req.subscription_id.lower():
        raise ArmError(400, "InvalidScope", f"The scope '{scope}' is not valid for role assignments.")
    data = state(req.ctx).read()
    if len(segs) >= 4 and low[2] == "resourcegroups":
        group = section(data, "groups").get(low[3])
        if group is None:
            raise ArmError(404, "ResourceGroupNotFound", f"Resource group '{segs[3]}' could not be found.")
        if len(segs) > 4 and norm_scope(scope) not in section(data, "resources"):
            raise ArmError(
                404,
                "ResourceNotFound",
                f"The Resource '{'/'.join(segs[5:])}' under resource group '{segs[3]}' was not found. "
                "For more details please go to https://aka.ms/ARMResourceNotFoundFix",
            )


def _assignment_id(scope: str, name: str) -> str:
    return f"{scope.rstrip('/')}/providers/Microsoft.Authorization/roleAssignments/{name}"


async def put_assignment(req: ArmRequest, scope: str, name: str) -> Response:
    ctx = req.ctx
    rid = _assignment_id(scope, name)
    if not _GUID.match(name):
        raise ArmError(
            400,
            "InvalidRoleAssignmentId",
            f"The role assignment ID '{name}' is not valid. The role assignment ID must be a GUID.",
        )
    action = "Microsoft.Authorization/roleAssignments/write"
    if not allowed(ctx, req.caller_oid, scope or "/", action):
        raise _authorization_failed(req, action, rid)
    body = req.body()
    check_keys(body, {"properties", "id", "name", "type"}, "RoleAssignmentCreateParameters", "")
    props = body.get("properties")
    if not isinstance(props, dict):
        raise ArmError(
            400, "InvalidRequestContent", "Required property 'properties' is missing from the request."
        )
    check_keys(
        props,
        {
            "roleDefinitionId",
            "principalId",
            "principalType",
            "description",
            "condition",
            "conditionVersion",
            "delegatedManagedIdentityResourceId",
            "scope",
        },
        "RoleAssignmentProperties",
        "properties",
    )
    role_def_id = str(required(props, "roleDefinitionId", "properties"))
    principal_id = str(required(props, "principalId", "properties"))
    principal_type = props.get("principalType") or "User"
    if principal_type not in PRINCIPAL_TYPES:
        raise ArmError(
            400,
            "InvalidRequestContent",
            f"The request content was invalid and could not be deserialized: 'Requested value "
            f"'{principal_type}' was not found. Path 'properties.principalType'.'",
        )
    guid = _role_guid(role_def_id)
    if guid not in BUILT_IN_ROLES:
        raise ArmError(
            400,
            "RoleDefinitionDoesNotExist",
            f"The specified role definition with ID '{guid}' does not exist.",
        )
    _check_scope_exists(req, scope)
    who = directory.principal(ctx, principal_id)
    window = ctx.clock.duration("propagation.principal")
    if who is None or ctx.clock.now() - who["created"] < window:
        raise ArmError(
            400,
            "PrincipalNotFound",
            f"Principal {principal_id.replace('-', '')} does not exist in the directory "
            f"{ctx.identity.tenant_id}. Check that you have the correct principal ID. If you are creating "
            "this principal and then immediately assigning a role, this error might be related to a "
            "replication delay. In this case, set the role assignment principalType property to a value, "
            "such as ServicePrincipal, User, or Group.  See https://aka.ms/docs-principaltype",
        )
    if who["type"] != principal_type:
        raise ArmError(
            400,
            "UnmatchedPrincipalType",
            f"The PrincipalId '{principal_id.replace('-', '')}' has type '{who['type']}' , which is "
            "different "
            f"from specified PrincipalType '{principal_type}'.",
        )
    sub = req.subscription_id
    full_role_id = f"/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{guid}"
    with state(ctx).change() as data:
        assignments = section(data, "role_assignments")
        key = rid.lower()
        for other_key, other in assignments.items():
            p = other["properties"]
            same = (
                norm_scope(p["scope"]) == norm_scope(scope)
                and p["principalId"].lower() == principal_id.lower()
                and _role_guid(p["roleDefinitionId"]) == guid
            )
            if other_key == key:
                if not same:
                    raise ArmError(
                        400,
                        "RoleAssignmentUpdateNotPermitted",
                        "Tenant ID, application ID, principal ID, and scope are not allowed to be updated.",
                    )
                return json_response(public(other), 201)
            if same:
                raise ArmError(
                    409,
                    "RoleAssignmentExists",
                    f"The role assignment already exists. The ID of the existing role assignment is "
                    f"{other['name'].replace('-', '')}.",
                )
        now = ctx.clock.now()
        caller = req.caller_oid
        rec = {
            "id": rid,
            "type": "Microsoft.Authorization/roleAssignments",
            "name": name,
            "properties": {
                "roleDefinitionId": full_role_id,
                "principalId": principal_id,
                "principalType": principal_type,
                "scope": scope or "/",
                "condition": props.get("condition"),
                "conditionVersion": props.get("conditionVersion"),
                "description": props.get("description"),
                "delegatedManagedIdentityResourceId": props.get("delegatedManagedIdentityResourceId"),
                "createdOn": iso(now),
                "updatedOn": iso(now),
                "createdBy": caller,
                "updatedBy": caller,
            },
            "_created": now,
        }
        assignments[key] = rec
        return json_response(public(rec), 201)


async def get_assignment(req: ArmRequest, scope: str, name: str) -> Response:
    rec = section(state(req.ctx).read(), "role_assignments").get(_assignment_id(scope, name).lower())
    if rec is None:
        raise ArmError(404, "RoleAssignmentNotFound", f"The role assignment '{name}' is not found.")
    return json_response(public(rec))


async def delete_assignment(req: ArmRequest, scope: str, name: str) -> Response:
    rid = _assignment_id(scope, name)
    action = "Microsoft.Authorization/roleAssignments/delete"
    if not allowed(req.ctx, req.caller_oid, scope or "/", action):
        raise _authorization_failed(req, action, rid)
    with state(req.ctx).change() as data:
        rec = section(data, "role_assignments").pop(rid.lower(), None)
    if rec is None:
        return no_content(204)
    return json_response(public(rec))


_FILTER_PRINCIPAL = re.compile(r"principalId\s+eq\s+'([^']+)'", re.IGNORECASE)
_FILTER_ASSIGNED = re.compile(r"assignedTo\('([^']+)'\)", re.IGNORECASE)


async def list_assignments(req: ArmRequest, scope: str) -> Response:
    flt = req.query.get("$filter", "")
    at_scope = "atscope()" in flt.lower().replace(" ", "")
    principal = _FILTER_PRINCIPAL.search(flt) or _FILTER_ASSIGNED.search(flt)
    out = []
    for a in section(state(req.ctx).read(), "role_assignments").values():
        a_scope = a["properties"]["scope"]
        above = is_at_or_above(a_scope, scope or "/")
        below = is_at_or_above(scope or "/", a_scope)
        if not (above or (below and not at_scope)):
            continue
        if principal and a["properties"]["principalId"].lower() != principal.group(1).lower():
            continue
        out.append(public(a))
    return json_response({"value": sorted(out, key=lambda a: a["id"])})


async def get_definition(req: ArmRequest, scope: str, guid: str) -> Response:
    if guid.lower() not in BUILT_IN_ROLES:
        raise ArmError(
            404,
            "RoleDefinitionDoesNotExist",
            f"The specified role definition with ID '{guid}' does not exist.",
        )
    return json_response(role_definition(req.ctx, guid, scope))


_FILTER_ROLE_NAME = re.compile(r"roleName\s+eq\s+'([^']+)'", re.IGNORECASE)


async def list_definitions(req: ArmRequest, scope: str) -> Response:
    flt = _FILTER_ROLE_NAME.search(req.query.get("$filter", ""))
    guids = list(BUILT_IN_ROLES)
    if flt:
        guids = [g for g in guids if BUILT_IN_ROLES[g][0].lower() == flt.group(1).lower()]
    return json_response({"value": [role_definition(req.ctx, g, scope) for g in guids]})


def _bind(fn: Any, *args: str) -> Handler:
    async def handler(req: ArmRequest, caps: list[str]) -> Response:
        result: Response = await fn(req, *args)
        return result

    return handler


def resolve(segments: list[str], method: str) -> tuple[RouteSpec, list[str]] | set[str] | None:
    """Routes ``{scope}/providers/Microsoft.Authorization/{roleAssignments|roleDefinitions}[/{name}]``."""
    hit = split_scoped(segments, PROVIDER, "roleAssignments")
    if hit is not None:
        scope, rest = hit
        if len(rest) == 0:
            if method != "GET":
                return {"GET"}
            return RouteSpec(frozenset({"GET"}), (), PROVIDER, _bind(list_assignments, scope)), []
        if len(rest) == 1:
            handlers = {"PUT": put_assignment, "GET": get_assignment, "DELETE": delete_assignment}
            if method not in handlers:
                return set(handlers)
            return RouteSpec(frozenset({method}), (), PROVIDER, _bind(handlers[method], scope, rest[0])), []
        return None
    hit = split_scoped(segments, PROVIDER, "roleDefinitions")
    if hit is not None:
        scope, rest = hit
        if method != "GET":
            return {"GET"}
        if len(rest) == 0:
            return RouteSpec(frozenset({"GET"}), (), PROVIDER, _bind(list_definitions, scope)), []
        if len(rest) == 1:
            return RouteSpec(frozenset({"GET"}), (), PROVIDER, _bind(get_definition, scope, rest[0])), []
    return None


_VERBS = {"GET": "read", "HEAD": "read", "PUT": "write", "PATCH": "write", "DELETE": "delete"}


def arm_action(segments: list[str], method: str) -> tuple[str, str] | None:
    """``(action, scope)`` ARM authorizes for a request, or None (operation polls need no role).

    Actions follow ARM's ``{namespace}/{type}[/{subtype}]/{read|write|delete|<name>/action}``
    (Azure RBAC "resource provider operations" reference).
    """
    low = [s.lower() for s in segments]
    if "operations" in low or "operationresults" in low:
        return None
    provider_at = max((i for i, s in enumerate(low[:-1]) if s == "providers"), default=-1)
    if provider_at < 0:
        verb = _VERBS.get(method, "action")
        scope = "/" + "/".join(segments)
        return f"Microsoft.Resources/subscriptions/resourceGroups/{verb}", scope
    namespace, after = segments[provider_at + 1], segments[provider_at + 2 :]
    scope_segments = segments
    if method == "POST" and len(after) % 2 == 1:
        types = after[:-1:2]
        action = (
            f"{namespace}/{'/'.join(types)}/{after[-1]}/action"
            if types
            else f"{namespace}/{after[-1]}/action"
        )
        scope_segments = segments[:-1]
    else:
        types = after[0::2]
        verb = "read" if len(after) % 2 == 1 else _VERBS.get(method, "action")
        action = f"{namespace}/{'/'.join(types)}/{verb}"
    return action, "/" + "/".join(scope_segments)


def check_arm_access(req: ArmRequest) -> None:
    """403 ``AuthorizationFailed`` unless the caller's roles grant the request's action at its scope."""
    found = arm_action(req.segments, req.method)
    if found is None:
        return
    action, scope = found
    if not allowed(req.ctx, req.caller_oid, scope, action):
        raise _authorization_failed(req, action, scope)
