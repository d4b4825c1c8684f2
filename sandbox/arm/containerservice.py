"""Microsoft.ContainerService: managed clusters (create/update/delete as LROs, user credentials).

Shapes: azure-specs ``containerservice/ManagedClustersCreate_*.json`` (201 ``Creating`` / 200),
``ManagedClustersGet.json``, ``ManagedClustersDelete.json`` (202 + location, 204),
``ManagedClustersListClusterUserCredentials.json`` (``kubeconfigs[].value`` base64; the SDK
decodes it to bytes, CLIENT-FACTS).

The Kubernetes side is driven only through ``ctx.services["clusters"]`` (sandbox/clusters.py):
``ensure_cluster`` when a create/update completes (its endpoints give ``oidcIssuerProfile.issuerURL``
and ``fqdn``), ``delete_cluster`` when a delete completes, ``kubeconfig`` for the credentials.

Rules:
- A PUT while another operation on the cluster runs is 409 ``OperationNotAllowed`` (PITFALLS P20,
  Azure/AKS#3283). There is no PATCH: enabling an addon later is GET + full PUT, a long update (P21).
- Create/update/delete take ``managed_cluster.create|update|delete`` (minutes at time_scale 1,
  PITFALLS P22); polls via ``Azure-AsyncOperation`` with ``Retry-After``.
- The OIDC issuer cannot be disabled once enabled, and workload identity needs it (AKS docs
  "workload identity overview": "requires the OIDC issuer"; the exact error codes are not
  documented: ``BadRequest`` here).
- Request properties are checked against the names the pinned SDK's models serialize (the
  ``ManagedClusterProperties`` and agent pool models of azure-mgmt-containerservice 41.8.0, which
  are generated from the REST spec): an unknown name is 400 ``InvalidRequestContent``.
- Secrets in the request (``windowsProfile.adminPassword``, ``servicePrincipalProfile.secret``)
  are never returned.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
import uuid
from functools import cache
from typing import Any

from starlette.responses import Response

from sandbox.arm import lro
from sandbox.arm._fallback_clusters import backend
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

PROVIDER = "Microsoft.ContainerService"
CLUSTER_TYPE = "Microsoft.ContainerService/ManagedClusters"
KUBERNETES_VERSION = "1.37.1"  # what the sandbox's API server reports (sandbox/k8s)


@cache
def _rest_names(model_name: str) -> frozenset[str]:
    """The JSON property names of a model in the pinned azure-mgmt-containerservice."""
    from azure.mgmt.containerservice import models

    cls = getattr(models, model_name)
    names = set()
    for klass in cls.__mro__:
        for attr, value in vars(klass).items():
            if type(value).__name__ != "_RestField":
                continue
            try:
                rest = value._rest_name
            except ValueError:  # no explicit JSON name: the attribute name, camelCased
                head, *tail = attr.split("_")
                rest = head + "".join(t.title() for t in tail)
            if isinstance(rest, str):
                names.add(rest)
    return frozenset(names)


def _key(req: ArmRequest, caps: list[str]) -> str:
    return resource_id(req.subscription_id, caps[1], PROVIDER, "managedClusters", caps[2]).lower()


def _validate(body: dict[str, Any]) -> dict[str, Any]:
    check_keys(
        body,
        {
            "location",
            "tags",
            "sku",
            "identity",
            "properties",
            "extendedLocation",
            "kind",
            "id",
            "name",
            "type",
            "eTag",
        },
        "ManagedCluster",
        "",
    )
    required(body, "location", "")
    props = body.get("properties") or {}
    check_keys(props, set(_rest_names("ManagedClusterProperties")), "ManagedClusterProperties", "properties")
    pools = props.get("agentPoolProfiles")
    if not isinstance(pools, list) or not pools:
        raise ArmError(
            400,
            "InvalidParameter",
            "The value of parameter agentPoolProfiles is invalid: a cluster needs at least one agent pool "
            "(a System mode pool).",
        )
    pool_names = set(_rest_names("ManagedClusterAgentPoolProfile"))
    for i, pool in enumerate(pools):
        check_keys(pool, pool_names, "ManagedClusterAgentPoolProfile", f"properties.agentPoolProfiles[{i}]")
        required(pool, "name", f"properties.agentPoolProfiles[{i}]")
        mode = str(pool.get("mode") or "System")
        _count(
            pool.get("count"), f"properties.agentPoolProfiles[{i}].count", 1 if mode == "System" else 0, 1000
        )
    lb = ((props.get("networkProfile") or {}).get("loadBalancerProfile") or {}).get("managedOutboundIPs")
    if isinstance(lb, dict):
        _count(
            lb.get("count"), "properties.networkProfile.loadBalancerProfile.managedOutboundIPs.count", 1, 100
        )
    identity = body.get("identity")
    if identity is not None:
        check_keys(
            identity,
            {"type", "userAssignedIdentities", "delegatedResources"},
            "ManagedClusterIdentity",
            "identity",
        )
    wi = ((props.get("securityProfile") or {}).get("workloadIdentity") or {}).get("enabled")
    oidc = (props.get("oidcIssuerProfile") or {}).get("enabled")
    if wi and not oidc:
        raise ArmError(
            400,
            "BadRequest",
            "Enabling workload identity requires enabling the OIDC issuer (oidcIssuerProfile.enabled).",
        )
    return props


def _count(value: Any, path: str, low: int, high: int) -> None:
    """An integer count within the range the REST spec states in the property's description
    (``ManagedClusterAgentPoolProfile.count``: 1..1000 for System pools, 0..1000 for User pools;
    ``managedOutboundIPs.count``: 1..100). A wrong JSON type is ARM's deserialization error; the
    out-of-range code is AKS's ``InvalidParameter`` (its exact message is not known here)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArmError(
            400,
            "InvalidRequestContent",
            "The request content was invalid and could not be deserialized: "
            f"'Could not convert {json.dumps(value)[:40]} to integer. Path '{path}'.'",
        )
    if not low <= value <= high:
        raise ArmError(
            400,
            "InvalidParameter",
            f"The value of parameter {path} is invalid: {value} is outside the range {low} to {high}.",
        )


def _node_count(props: dict[str, Any]) -> int:
    return sum(int(p.get("count") or 1) for p in props.get("agentPoolProfiles") or [])


def _render(ctx: SandboxContext, rec: dict[str, Any], body: dict[str, Any], state_name: str) -> None:
    """Fill ``rec`` from the desired ``body`` plus what AKS computes."""
    props = copy.deepcopy(body.get("properties") or {})
    name, group, location = rec["name"], rec["_group_name"], body["location"]
    version = props.get("kubernetesVersion") or KUBERNETES_VERSION
    (props.get("windowsProfile") or {}).pop("adminPassword", None)
    (props.get("servicePrincipalProfile") or {}).pop("secret", None)
    dns_prefix = props.get("dnsPrefix") or f"{name[:10]}-{group[:16]}-{ctx.identity.subscription_id[:6]}"
    suffix = hashlib.sha256(rec["id"].lower().encode()).hexdigest()[:8]
    pools = []
    for pool in props.get("agentPoolProfiles") or []:
        p = {
            "count": 1,
            "vmSize": "Standard_DS2_v2",
            "osType": "Linux",
            "type": "VirtualMachineScaleSets",
            "mode": "System",
            "maxPods": 110,
            "enableEncryptionAtHost": False,
            **pool,
        }
        p.update(
            provisioningState=state_name,
            orchestratorVersion=pool.get("orchestratorVersion") or version,
            currentOrchestratorVersion=pool.get("orchestratorVersion") or version,
            nodeImageVersion="AKSUbuntu-2204gen2containerd-202611.01.0",
            powerState={"code": "Running"},
            eTag=uuid.uuid4().hex[:8],
        )
        p.setdefault("upgradeSettings", {"maxSurge": "10%"})  # AKS's default for new pools
        pools.append(p)
    net = {
        "networkPlugin": "azure",
        "networkPluginMode": "overlay",
        "podCidr": "10.244.0.0/16",
        "serviceCidr": "10.0.0.0/16",
        "dnsServiceIP": "10.0.0.10",
        "loadBalancerSku": "standard",
        "outboundType": "loadBalancer",
        "podCidrs": ["10.244.0.0/16"],
        "serviceCidrs": ["10.0.0.0/16"],
        "ipFamilies": ["IPv4"],
        **(props.get("networkProfile") or {}),
    }
    node_rg = props.get("nodeResourceGroup") or f"MC_{group}_{name}_{location}"
    lb = {"managedOutboundIPs": {"count": 1}, **(net.get("loadBalancerProfile") or {})}
    lb.setdefault("allocatedOutboundPorts", 0)
    lb.setdefault("idleTimeoutInMinutes", 30)
    lb["effectiveOutboundIPs"] = [
        {
            "id": f"/subscriptions/{ctx.identity.subscription_id}/resourceGroups/{node_rg}/providers/"
            f"Microsoft.Network/publicIPAddresses/{suffix}-outbound-{i}"
        }
        for i in range(int((lb.get("managedOutboundIPs") or {}).get("count") or 1))
    ]
    net["loadBalancerProfile"] = lb
    oidc = dict(props.get("oidcIssuerProfile") or {"enabled": False})
    previous_issuer = ((rec.get("properties") or {}).get("oidcIssuerProfile") or {}).get("issuerURL")
    if oidc.get("enabled") and previous_issuer:
        oidc["issuerURL"] = previous_issuer
    else:
        oidc.pop("issuerURL", None)
    props.update(
        provisioningState=state_name,
        powerState={"code": "Running"},
        maxAgentPools=100,
        kubernetesVersion=version,
        currentKubernetesVersion=version,
        dnsPrefix=dns_prefix,
        fqdn=(rec.get("properties") or {}).get("fqdn") or f"{dns_prefix}-{suffix}.hcp.{location}.azmk8s.io",
        azurePortalFQDN=f"{dns_prefix}-{suffix}.portal.hcp.{location}.azmk8s.io",
        agentPoolProfiles=pools,
        nodeResourceGroup=node_rg,
        enableRBAC=props.get("enableRBAC", True),
        networkProfile=net,
        oidcIssuerProfile=oidc,
        supportPlan=props.get("supportPlan", "KubernetesOfficial"),
        resourceUID=rec.get("_uid") or suffix * 3,
    )
    rec["location"] = location
    rec["tags"] = body.get("tags") or {}
    rec["sku"] = body.get("sku") or {"name": "Base", "tier": "Free"}
    identity = copy.deepcopy(body.get("identity") or {"type": "SystemAssigned"})
    if identity.get("type") == "SystemAssigned":
        old = rec.get("identity") or {}
        identity["principalId"] = old.get("principalId") or _uuid_from(rec["id"], "principal")
        identity["tenantId"] = ctx.identity.tenant_id
    if identity.get("type") == "UserAssigned":
        for ident_id, value in (identity.get("userAssignedIdentities") or {}).items():
            found = section(state(ctx).read(), "resources").get(ident_id.lower())
            props_of = (found or {}).get("properties") or {}
            value = dict(value or {})
            value["principalId"] = props_of.get("principalId") or _uuid_from(ident_id, "principal")
            value["clientId"] = props_of.get("clientId") or _uuid_from(ident_id, "client")
            identity["userAssignedIdentities"][ident_id] = value
    rec["identity"] = identity
    rec["eTag"] = uuid.uuid4().hex[:8]
    rec["properties"] = props


def _uuid_from(seed: str, what: str) -> str:
    h = hashlib.sha256(f"{seed.lower()}:{what}".encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def _in_progress(data: dict[str, Any], rec: dict[str, Any]) -> dict[str, Any] | None:
    op_id = rec.get("_op")
    op = section(data, "operations").get(op_id) if op_id else None
    if op is not None and op["status"] == "InProgress":
        return op
    return None


def _conflict(op: dict[str, Any]) -> ArmError:
    what = {"cluster.create": "create", "cluster.update": "update", "cluster.delete": "delete"}.get(
        op["kind"], ""
    )
    return ArmError(
        409,
        "OperationNotAllowed",
        f"Operation is not allowed because there's an in progress {what} managed cluster operation which "
        "started at " + f"{op['start']:.0f}. Please wait for it to finish before starting a new operation.",
    )


# the containerservice REST spec's ``resourceName`` path parameter (minLength 1, maxLength 63)
_NAME = re.compile(r"^[a-zA-Z0-9]$|^[a-zA-Z0-9][-_a-zA-Z0-9]{0,61}[a-zA-Z0-9]$")


async def put_cluster(req: ArmRequest, caps: list[str]) -> Response:
    ctx = req.ctx
    if not _NAME.match(caps[2]):
        # the code is ARM's for a name the RP rejects (as for identities); AKS's exact text is not known
        raise ArmError(
            400,
            "InvalidResourceName",
            f"Resource name {caps[2][:80]} is invalid. The name can be 1-63 characters long, can contain "
            "letters, digits, hyphens and underscores, and must start and end with a letter or digit.",
        )
    body = req.body()
    _validate(body)
    key = _key(req, caps)
    with state(ctx).change() as data:
        live_group(data, caps[1])
        resources = section(data, "resources")
        rec = resources.get(key)
        status = 200
        if rec is None:
            status = 201
            rec = {
                "id": resource_id(req.subscription_id, caps[1], PROVIDER, "managedClusters", caps[2]),
                "name": caps[2],
                "type": CLUSTER_TYPE,
                "_group": caps[1].lower(),
                "_group_name": caps[1],
                "_created": ctx.clock.now(),
            }
            kind, duration, state_name = "cluster.create", "managed_cluster.create", "Creating"
        else:
            running = _in_progress(data, rec)
            if running is not None:
                raise _conflict(running)
            was_oidc = ((rec["properties"].get("oidcIssuerProfile") or {}).get("enabled")) is True
            if was_oidc and not ((body.get("properties") or {}).get("oidcIssuerProfile") or {}).get(
                "enabled"
            ):
                raise ArmError(
                    400, "BadRequest", "The OIDC issuer cannot be disabled once it has been enabled."
                )
            if rec["location"].lower() != str(body["location"]).lower():
                raise ArmError(
                    400,
                    "LocationChangeNotAllowed",
                    f"Changing property 'location' is not allowed (from '{rec['location']}').",
                )
            kind, duration, state_name = "cluster.update", "managed_cluster.update", "Updating"
        _render(ctx, rec, body, state_name)
        rec["_desired"] = {
            "oidc": bool((rec["properties"].get("oidcIssuerProfile") or {}).get("enabled")),
            "wi": bool(
                ((rec["properties"].get("securityProfile") or {}).get("workloadIdentity") or {}).get(
                    "enabled"
                )
            ),
            "csi": bool(
                (
                    (rec["properties"].get("addonProfiles") or {}).get("azureKeyvaultSecretsProvider") or {}
                ).get("enabled")
            ),
            "nodes": _node_count(rec["properties"]),
        }
        resources[key] = rec
        op = lro.start(
            ctx,
            data,
            kind=kind,
            target=key,
            duration_key=duration,
            provider=PROVIDER,
            location=rec["location"],
        )
        rec["_op"] = op["id"]
        accepted = copy.deepcopy(public(rec))
    return lro.put_response(ctx, op["id"], key, accepted, status, req.api_version)


def _complete_ensure(ctx: SandboxContext, data: dict[str, Any], op: dict[str, Any]) -> None:
    rec = section(data, "resources").get(op["target"])
    if rec is None:
        return
    desired = rec["_desired"]
    try:
        endpoints = backend(ctx).ensure_cluster(
            op["target"],
            name=rec["name"],
            location=rec["location"],
            oidc_issuer=desired["oidc"],
            workload_identity=desired["wi"],
            keyvault_secrets_provider=desired["csi"],
            node_count=desired["nodes"],
        )
    except (ValueError, KeyError) as exc:
        _set_state(rec, "Failed")
        raise lro.OperationFailed("ClusterOperationFailed", str(exc)) from exc
    props = rec["properties"]
    props["fqdn"] = endpoints.fqdn
    if desired["oidc"]:
        props["oidcIssuerProfile"]["issuerURL"] = endpoints.issuer_url
    rec["_server"] = endpoints.server_url
    _set_state(rec, "Succeeded")


def _set_state(rec: dict[str, Any], value: str) -> None:
    rec["properties"]["provisioningState"] = value
    for pool in rec["properties"].get("agentPoolProfiles") or []:
        pool["provisioningState"] = value


lro.COMPLETERS["cluster.create"] = _complete_ensure
lro.COMPLETERS["cluster.update"] = _complete_ensure


def _get(req: ArmRequest, caps: list[str]) -> dict[str, Any]:
    rec = section(state(req.ctx).read(), "resources").get(_key(req, caps))
    if rec is None:
        raise not_found("Microsoft.ContainerService/managedClusters", caps[2], caps[1])
    return rec


async def get_cluster(req: ArmRequest, caps: list[str]) -> Response:
    rec = _get(req, caps)
    headers = None
    op = _in_progress(state(req.ctx).read(), rec)
    if op is not None:
        headers = {"Retry-After": lro.retry_after(req.ctx, op)}
    return json_response(public(rec), 200, headers)


async def list_clusters(req: ArmRequest, caps: list[str]) -> Response:
    with state(req.ctx).change() as data:
        live_group(data, caps[1])
    group = caps[1].lower()
    items = [
        public(r)
        for r in section(state(req.ctx).read(), "resources").values()
        if r["type"] == CLUSTER_TYPE and r.get("_group") == group
    ]
    return json_response({"value": items})


async def delete_cluster(req: ArmRequest, caps: list[str]) -> Response:
    ctx = req.ctx
    key = _key(req, caps)
    with state(ctx).change() as data:
        rec = section(data, "resources").get(key)
        if rec is None:
            return no_content(204)
        running = _in_progress(data, rec)
        if running is not None and running["kind"] != "cluster.delete":
            raise _conflict(running)
        if running is None:
            _set_state(rec, "Deleting")
            running = lro.start(
                ctx,
                data,
                kind="cluster.delete",
                target=key,
                duration_key="managed_cluster.delete",
                provider=PROVIDER,
                location=rec["location"],
            )
            rec["_op"] = running["id"]
        op_id = running["id"]
    lro.settle_all(ctx)
    op = lro.find(ctx, op_id)
    # always 202 (the spec allows 202 and 204 only; 204 means there was nothing to delete)
    return no_content(202, lro.headers(ctx, op, req.api_version, location=True))


def _drop_cluster(ctx: SandboxContext, data: dict[str, Any], key: str) -> None:
    resources = section(data, "resources")
    for child in [k for k in resources if k.startswith(key + "/providers/")]:
        resources.pop(child)
    resources.pop(key, None)
    backend(ctx).delete_cluster(key)


def _complete_delete(ctx: SandboxContext, data: dict[str, Any], op: dict[str, Any]) -> None:
    _drop_cluster(ctx, data, op["target"])


lro.COMPLETERS["cluster.delete"] = _complete_delete


async def list_credential(req: ArmRequest, caps: list[str]) -> Response:
    action = caps[3].lower()
    if action not in ("listclusterusercredential", "listclusteradmincredential"):
        raise ArmError(
            404, "NotFound", f"No HTTP resource was found that matches the request URI '{req.path}'."
        )
    rec = _get(req, caps)
    admin = action == "listclusteradmincredential"
    if rec["properties"]["provisioningState"] not in ("Succeeded", "Updating"):
        raise ArmError(
            409,
            "OperationNotAllowed",
            f"The cluster is in '{rec['properties']['provisioningState']}' state; its credentials are not "
            "available.",
        )
    try:
        kubeconfig = backend(req.ctx).kubeconfig(rec["id"].lower(), admin=admin)
    except KeyError as exc:
        raise ArmError(404, "ResourceNotFound", "The cluster's API server is not available.") from exc
    name = "clusterAdmin" if admin else "clusterUser"
    return json_response({"kubeconfigs": [{"name": name, "value": base64.b64encode(kubeconfig).decode()}]})


def _cascade(ctx: SandboxContext, data: dict[str, Any], rec: dict[str, Any]) -> None:
    _drop_cluster(ctx, data, rec["id"].lower())


CASCADE[CLUSTER_TYPE.lower()] = _cascade


def route_specs() -> list[RouteSpec]:
    base = ("subscriptions", "*", "resourcegroups", "*", "providers", PROVIDER)
    cluster = (*base, "managedClusters", "*")
    return [
        RouteSpec(frozenset({"PUT"}), cluster, PROVIDER, put_cluster),
        RouteSpec(frozenset({"GET"}), cluster, PROVIDER, get_cluster),
        RouteSpec(frozenset({"DELETE"}), cluster, PROVIDER, delete_cluster),
        RouteSpec(frozenset({"GET"}), (*base, "managedClusters"), PROVIDER, list_clusters),
        RouteSpec(frozenset({"POST"}), (*cluster, "*"), PROVIDER, list_credential),
    ]
