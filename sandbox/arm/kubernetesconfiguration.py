"""Microsoft.KubernetesConfiguration: cluster extensions (create/update/get/list/delete as LROs).

Path: ``{managedClusterId}/providers/Microsoft.KubernetesConfiguration/extensions/{name}``
(the SDK's ``cluster_rp=Microsoft.ContainerService``, ``cluster_resource_name=managedClusters``).
Shapes: azure-specs ``kubernetesconfiguration/CreateExtension.json`` (201 ``Creating`` with
``Azure-AsyncOperation`` to ``{extension}/operations/{id}``), ``GetExtension.json``,
``DeleteExtension.json`` (202 + ``Azure-AsyncOperation``), ``GetExtensionAsyncOperationStatus.json``.

Rules and sources:
- The install runs when the operation completes, through ``ctx.services["clusters"]
  .ensure_extension`` (sandbox/clusters.py); a ``ValueError`` there (e.g. Argo CD HA on too few
  nodes, PITFALLS P17) fails the operation with that message (``provisioningState: Failed``).
- ``version`` may only be set when ``autoUpgradeMinorVersion`` is false (the spec's description of
  ``version``: "To use 'version', autoUpgradeMinorVersion must be 'false'"); the SDK sends
  ``autoUpgradeMinorVersion: true`` and ``releaseTrain: Stable`` unless told otherwise (P18).
- ``extensionType`` cannot change on an existing extension (400). Updates go through PATCH (the
  SDK's ``begin_update``); a PUT of an existing extension re-applies it.
- ``configurationProtectedSettings`` are passed to the install but never returned.
- The cluster must exist and not be mid-operation (409 ``OperationNotAllowed``, as for clusters).
"""

from __future__ import annotations

import copy
from typing import Any

from starlette.responses import Response

from sandbox.arm import lro
from sandbox.arm._fallback_clusters import backend
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

PROVIDER = "Microsoft.KubernetesConfiguration"
EXT_TYPE = "Microsoft.KubernetesConfiguration/extensions"
_PROPS = {
    "extensionType",
    "autoUpgradeMinorVersion",
    "releaseTrain",
    "version",
    "scope",
    "configurationSettings",
    "configurationProtectedSettings",
    "aksAssignedIdentity",
    "statuses",
    "provisioningState",
    "currentVersion",
    "customLocationSettings",
    "errorInfo",
    "packageUri",
    "isSystemExtension",
}


def _cluster(req: ArmRequest, scope: str) -> dict[str, Any]:
    segs = [s for s in scope.strip("/").split("/")]
    rec = section(state(req.ctx).read(), "resources").get(scope.lower())
    if rec is None or rec["type"].lower() != "microsoft.containerservice/managedclusters":
        group = segs[3] if len(segs) > 3 else ""
        raise ArmError(
            404,
            "ParentResourceNotFound",
            f"Can not perform requested operation on nested resource. Parent resource '{segs[-1]}' not found "
            f"in resource group '{group}'.",
        )
    return rec


def _check_cluster_idle(data: dict[str, Any], cluster: dict[str, Any]) -> None:
    op_id = cluster.get("_op")
    op = section(data, "operations").get(op_id) if op_id else None
    if op is not None and op["status"] == "InProgress":
        raise ArmError(
            409,
            "OperationNotAllowed",
            "Operation is not allowed because the managed cluster has an operation in progress. Please wait "
            "for it to finish before starting a new operation.",
        )


def _validate(props: Any) -> dict[str, Any]:
    if not isinstance(props, dict):
        raise ArmError(
            400, "InvalidRequestContent", "Required property 'properties' is missing from the request."
        )
    check_keys(props, _PROPS, "ExtensionProperties", "properties")
    for key in ("configurationSettings", "configurationProtectedSettings"):
        value = props.get(key)
        if value is not None and (
            not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values())
        ):
            raise ArmError(
                400,
                "InvalidRequestContent",
                f"The property 'properties.{key}' must map names to string values.",
            )
    if props.get("version") and props.get("autoUpgradeMinorVersion", True):
        raise ArmError(
            400,
            "BadRequest",
            "'version' can be set only when 'autoUpgradeMinorVersion' is false (to use 'version', "
            "autoUpgradeMinorVersion must be 'false').",
        )
    return props


def _status_path(ext_id: str, op_id: str) -> str:
    return f"{ext_id}/operations/{op_id}"


async def put_extension(req: ArmRequest, scope: str, name: str, *, patch: bool = False) -> Response:
    ctx = req.ctx
    body = req.body()
    check_keys(body, {"properties", "identity", "plan", "systemData", "id", "name", "type"}, "Extension", "")
    props = body.get("properties") or {}
    ext_id = f"{scope}/providers/{PROVIDER}/extensions/{name}"
    key = ext_id.lower()
    with state(ctx).change() as data:
        cluster = _cluster(req, scope)
        _check_cluster_idle(data, cluster)
        resources = section(data, "resources")
        rec = resources.get(key)
        if rec is not None:
            running = section(data, "operations").get(rec.get("_op") or "")
            if running is not None and running["status"] == "InProgress":
                raise ArmError(
                    409,
                    "OperationNotAllowed",
                    f"An operation on extension '{name}' is in progress. Please wait for it to finish.",
                )
        if patch:
            if rec is None:
                raise ArmError(404, "ResourceNotFound", f"The extension '{name}' was not found.")
            check_keys(
                props,
                {
                    "autoUpgradeMinorVersion",
                    "releaseTrain",
                    "version",
                    "configurationSettings",
                    "configurationProtectedSettings",
                },
                "PatchExtensionProperties",
                "properties",
            )
            merged = copy.deepcopy(rec["_spec"])
            for k, v in props.items():
                if k in ("configurationSettings", "configurationProtectedSettings"):
                    merged[k] = {**(merged.get(k) or {}), **(v or {})}
                else:
                    merged[k] = v
            props = merged
        props = _validate(props)
        ext_type = str(required(props, "extensionType", "properties"))
        if rec is not None and rec["properties"]["extensionType"].lower() != ext_type.lower():
            raise ArmError(
                400,
                "BadRequest",
                f"The extensionType of extension '{name}' cannot be changed (it is "
                f"'{rec['properties']['extensionType']}').",
            )
        now = ctx.clock.now()
        spec = {
            k: v for k, v in props.items() if k not in ("provisioningState", "statuses", "currentVersion")
        }
        spec.setdefault("autoUpgradeMinorVersion", True)
        spec.setdefault("releaseTrain", "Stable")
        status = 200 if rec is not None else 201
        if rec is None:
            rec = {
                "id": ext_id,
                "name": name,
                "type": EXT_TYPE,
                "systemData": {
                    "createdBy": req.caller_appid,
                    "createdByType": "Application",
                    "createdAt": iso(now),
                },
                "_group": cluster["_group"],
                "_cluster": cluster["id"].lower(),
                "_created": now,
            }
        rec["systemData"].update(
            {
                "lastModifiedBy": req.caller_appid,
                "lastModifiedByType": "Application",
                "lastModifiedAt": iso(now),
            }
        )
        rec["_spec"] = spec
        shown = {k: v for k, v in spec.items() if k != "configurationProtectedSettings"}
        rec["properties"] = {
            "configurationSettings": {},
            "configurationProtectedSettings": {},
            "version": None,
            "currentVersion": (rec.get("properties") or {}).get("currentVersion"),
            "statuses": [],
            "isSystemExtension": False,
            "customLocationSettings": None,
            "packageUri": None,
            **shown,
            "provisioningState": "Creating" if status == 201 else "Updating",
        }
        resources[key] = rec
        op = lro.start(
            ctx,
            data,
            kind="extension.apply",
            target=key,
            duration_key="extension.create",
            provider=PROVIDER,
            location=cluster["location"],
            extra={"status_path": _status_path(ext_id, "")},
        )
        op["status_path"] = _status_path(ext_id, op["id"])
        rec["_op"] = op["id"]
        accepted = copy.deepcopy(public(rec))
    return lro.put_response(ctx, op["id"], key, accepted, status, req.api_version)


def _complete_apply(ctx: SandboxContext, data: dict[str, Any], op: dict[str, Any]) -> None:
    rec = section(data, "resources").get(op["target"])
    if rec is None:
        return
    spec = rec["_spec"]
    settings = {
        **(spec.get("configurationSettings") or {}),
        **(spec.get("configurationProtectedSettings") or {}),
    }
    try:
        backend(ctx).ensure_extension(
            rec["_cluster"],
            name=rec["name"],
            extension_type=spec["extensionType"],
            version=spec.get("version"),
            release_train=spec.get("releaseTrain"),
            configuration_settings=settings,
        )
    except ValueError as exc:
        rec["properties"]["provisioningState"] = "Failed"
        rec["properties"]["errorInfo"] = {"code": "ExtensionOperationFailed", "message": str(exc)}
        raise lro.OperationFailed("ExtensionOperationFailed", str(exc)) from exc
    rec["properties"]["provisioningState"] = "Succeeded"
    rec["properties"].pop("errorInfo", None)
    # The version Azure picks for an unpinned extension is not knowable here: "latest".
    rec["properties"]["currentVersion"] = spec.get("version") or "latest"


lro.COMPLETERS["extension.apply"] = _complete_apply


async def get_extension(req: ArmRequest, scope: str, name: str) -> Response:
    _cluster(req, scope)
    key = f"{scope}/providers/{PROVIDER}/extensions/{name}".lower()
    rec = section(state(req.ctx).read(), "resources").get(key)
    if rec is None:
        raise ArmError(404, "ResourceNotFound", f"The extension '{name}' was not found.")
    headers = None
    op = section(state(req.ctx).read(), "operations").get(rec.get("_op") or "")
    if op is not None and op["status"] == "InProgress":
        headers = {"Retry-After": lro.retry_after(req.ctx, op)}
    return json_response(public(rec), 200, headers)


async def list_extensions(req: ArmRequest, scope: str) -> Response:
    _cluster(req, scope)
    prefix = f"{scope}/providers/{PROVIDER}/extensions/".lower()
    items = [
        public(r) for k, r in section(state(req.ctx).read(), "resources").items() if k.startswith(prefix)
    ]
    return json_response({"value": items})


async def delete_extension(req: ArmRequest, scope: str, name: str) -> Response:
    ctx = req.ctx
    ext_id = f"{scope}/providers/{PROVIDER}/extensions/{name}"
    key = ext_id.lower()
    with state(ctx).change() as data:
        _cluster(req, scope)
        rec = section(data, "resources").get(key)
        if rec is None:
            return no_content(204)
        running = section(data, "operations").get(rec.get("_op") or "")
        if running is None or running["status"] != "InProgress" or running["kind"] != "extension.delete":
            rec["properties"]["provisioningState"] = "Deleting"
            running = lro.start(
                ctx,
                data,
                kind="extension.delete",
                target=key,
                duration_key="extension.delete",
                provider=PROVIDER,
                location="global",
            )
            running["status_path"] = _status_path(ext_id, running["id"])
            rec["_op"] = running["id"]
        op_id = running["id"]
    lro.settle_all(ctx)
    op = lro.find(ctx, op_id)
    if lro.is_done(op):
        return no_content(200)
    return no_content(202, lro.headers(ctx, op, req.api_version, location=True))


def _complete_delete(ctx: SandboxContext, data: dict[str, Any], op: dict[str, Any]) -> None:
    rec = section(data, "resources").pop(op["target"], None)
    if rec is not None:
        backend(ctx).delete_extension(rec["_cluster"], rec["name"])


lro.COMPLETERS["extension.delete"] = _complete_delete


async def operation_status(req: ArmRequest, scope: str, name: str, op_id: str) -> Response:
    op = lro.find(req.ctx, op_id)
    body = lro.status_body(op)
    body["properties"] = {}
    body.setdefault("error", None)
    headers = {"Retry-After": lro.retry_after(req.ctx, op)} if not lro.is_done(op) else None
    return json_response(body, 200, headers)


def _bind(fn: Any, *args: str, **kw: Any) -> Handler:
    async def handler(req: ArmRequest, caps: list[str]) -> Response:
        result: Response = await fn(req, *args, **kw)
        return result

    return handler


def resolve(segments: list[str], method: str) -> tuple[RouteSpec, list[str]] | set[str] | None:
    hit = split_scoped(segments, PROVIDER, "extensions")
    if hit is None:
        return None
    scope, rest = hit
    if len(rest) == 0:
        if method != "GET":
            return {"GET"}
        return RouteSpec(frozenset({"GET"}), (), PROVIDER, _bind(list_extensions, scope)), []
    if len(rest) == 1:
        handlers: dict[str, Handler] = {
            "PUT": _bind(put_extension, scope, rest[0]),
            "PATCH": _bind(put_extension, scope, rest[0], patch=True),
            "GET": _bind(get_extension, scope, rest[0]),
            "DELETE": _bind(delete_extension, scope, rest[0]),
        }
        if method not in handlers:
            return set(handlers)
        return RouteSpec(frozenset({method}), (), PROVIDER, handlers[method]), []
    if len(rest) == 3 and rest[1].lower() == "operations":
        if method != "GET":
            return {"GET"}
        return RouteSpec(
            frozenset({"GET"}), (), PROVIDER, _bind(operation_status, scope, rest[0], rest[2])
        ), []
    return None
