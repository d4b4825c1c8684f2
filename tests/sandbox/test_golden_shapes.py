"""Every example in /work/shared/azure-specs: the sandbox answers the example's request with one of
the example's status codes and a body of the same shape (every key of the example, with the same
JSON type; lists compared by their first element).

Requests are the examples' own bodies, with our names, subscription and tenant. Deviations, each
deliberate:
- ``connectedClusters`` (Arc) extension examples are sent to an AKS ``managedClusters`` parent;
  the role-assignment example's DocumentDB scope becomes a vault scope (same shapes).
- ``ManagedClustersCreate_SecurityProfile`` enables workload identity without the OIDC issuer;
  AKS requires the issuer for it, so the request adds ``oidcIssuerProfile.enabled``.
- ``NOT_MODELLED`` lists example keys the sandbox does not produce: vault network ACLs, private
  endpoints and HSM pools; user-supplied outbound IPs; paging ``nextLink`` (one page);
  ``version`` of an extension that was not pinned (Azure resolves it; the sandbox cannot); and
  in ``ManagedClustersCreate_SecurityProfile`` response profiles the request never sent.
"""

from __future__ import annotations

import json
import ssl
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox.arm.testing import credential
from sandbox.server import Sandbox

OFFICER = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
SPECS = Path("/work/shared/azure-specs")
GOLDEN = sorted(p for p in SPECS.rglob("*.json") if "common-types" not in p.parts)

NOT_MODELLED: dict[str, set[str]] = {
    "createVault.json": {
        "properties.hsmPoolResourceId",
        "properties.networkAcls",
        "properties.privateEndpointConnections",
    },
    "getVault.json": {"properties.hsmPoolResourceId"},
    "FederatedIdentityCredentialList.json": {"nextLink"},
    "GetSecrets-example.json": {"nextLink"},
    "ManagedClustersGet.json": {"properties.networkProfile.loadBalancerProfile.outboundIPs"},
    "CreateExtension.json": {"properties.version"},
    # this example's response shows profiles its request never sent (copied from another example)
    "ManagedClustersCreate_SecurityProfile.json": {
        "properties.windowsProfile",
        "properties.servicePrincipalProfile",
        "properties.diskEncryptionSetID",
    },
    "GetExtension.json": {"properties.version"},
}


# objects whose keys are data (tags, settings), not schema
MAPS = {"tags", "configurationSettings", "configurationProtectedSettings", "userAssignedIdentities", "config"}


def shape_diff(example: Any, actual: Any, path: str, ignore: set[str]) -> list[str]:
    if path in ignore or example is None:
        return []
    kinds = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    ek, ak = kinds.get(type(example)), kinds.get(type(actual))
    if ek != ak:
        return [f"{path or '<root>'}: example {ek}, sandbox {ak} ({actual!r:.60})"]
    out: list[str] = []
    if path.rsplit(".", 1)[-1] in MAPS:
        return []  # user-chosen keys: only the type of the map matters
    if isinstance(example, dict):
        for key, value in example.items():
            sub = f"{path}.{key}" if path else key
            if sub in ignore:
                continue
            if key not in actual:
                if value is not None:
                    out.append(f"{sub}: missing")
                continue
            out.extend(shape_diff(value, actual[key], sub, ignore))
    elif isinstance(example, list) and example:
        if not actual:
            return [f"{path}: example has items, sandbox none"]
        out.extend(shape_diff(example[0], actual[0], path, ignore))
    return out


class Env:
    """A tenant-authorised HTTP client plus helpers to make prerequisites."""

    def __init__(self, sandbox: Sandbox, conn: dict[str, Any]) -> None:
        self.sb, self.conn = sandbox, conn
        self.sub, self.tenant = conn["subscription_id"], conn["tenant_id"]
        verify = ssl.create_default_context(cafile=conn["ca_bundle"])
        cred = credential(conn)
        self.arm = httpx.Client(
            base_url=conn["arm_endpoint"],
            verify=verify,
            timeout=60,
            headers={
                "Authorization": f"Bearer {cred.get_token('https://management.azure.com/.default').token}"
            },
        )
        self.kv = httpx.Client(
            verify=verify,
            timeout=60,
            headers={"Authorization": f"Bearer {cred.get_token('https://vault.azure.net/.default').token}"},
        )
        self.oid = sandbox.ctx.identity.object_id
        self.granted = False
        self.suffix = uuid.uuid4().hex[:6]
        self.group = f"rg-golden-{self.suffix}"
        self.put(
            f"/subscriptions/{self.sub}/resourcegroups/{self.group}", "2025-04-01", {"location": "eastus"}
        )

    def call(self, method: str, path: str, version: str, body: Any = None) -> httpx.Response:
        return self.arm.request(method, path, params={"api-version": version}, json=body)

    def put(self, path: str, version: str, body: Any) -> httpx.Response:
        r = self.call("PUT", path, version, body)
        assert r.status_code in (200, 201, 202), r.text
        return r

    @property
    def rg_path(self) -> str:
        return f"/subscriptions/{self.sub}/resourceGroups/{self.group}"

    def identity(self, name: str) -> dict[str, Any]:
        path = f"{self.rg_path}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}"
        return self.put(path, "2024-11-30", {"location": "eastus"}).json()

    def vault(self, name: str, **props: Any) -> dict[str, Any]:
        body = {
            "location": "eastus",
            "properties": {"tenantId": self.tenant, "sku": {"family": "A", "name": "standard"}, **props},
        }
        return self.put(
            f"{self.rg_path}/providers/Microsoft.KeyVault/vaults/{name}", "2026-05-15", body
        ).json()

    def grant(self, scope: str, role: str, principal: str) -> None:
        role_id = f"/subscriptions/{self.sub}/providers/Microsoft.Authorization/roleDefinitions/{role}"
        body = {
            "properties": {
                "roleDefinitionId": role_id,
                "principalId": principal,
                "principalType": "ServicePrincipal",
            }
        }
        self.put(
            f"{scope}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}", "2022-04-01", body
        )

    def cluster_path(self, name: str) -> str:
        return f"{self.rg_path}/providers/Microsoft.ContainerService/managedClusters/{name}"

    def cluster(
        self, name: str, body: dict[str, Any] | None = None, version: str = "2026-08-01"
    ) -> httpx.Response:
        body = body or {
            "location": "eastus",
            "properties": {
                "dnsPrefix": name,
                "agentPoolProfiles": [{"name": "system", "count": 1, "mode": "System"}],
                "oidcIssuerProfile": {"enabled": True},
            },
        }
        return self.put(self.cluster_path(name), version, body)


@pytest.fixture(scope="module")
def env(sandbox: Sandbox, conn: dict[str, Any]) -> Iterator[Env]:
    e = Env(sandbox, conn)
    yield e
    e.call("DELETE", f"/subscriptions/{e.sub}/resourcegroups/{e.group}", "2025-04-01")


def _example(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def _params(ex: dict[str, Any]) -> dict[str, Any]:
    return dict(ex["parameters"])


# -- one scenario per example: prerequisites + the example's request -> response ----------------
Scenario = Callable[[Env, dict[str, Any]], httpx.Response]


def _rg_create(env: Env, ex: dict[str, Any]) -> httpx.Response:
    p = _params(ex)
    return env.call(
        "PUT", f"/subscriptions/{env.sub}/resourcegroups/rg-g-{env.suffix}", p["api-version"], p["parameters"]
    )


def _rg_get(env: Env, ex: dict[str, Any]) -> httpx.Response:
    return env.call("GET", env.rg_path, _params(ex)["api-version"])


def _rg_delete(env: Env, ex: dict[str, Any]) -> httpx.Response:
    path = f"/subscriptions/{env.sub}/resourcegroups/rg-del-{env.suffix}"
    env.put(path, "2025-04-01", {"location": "eastus"})
    return env.arm.delete(
        path, params={"api-version": "2025-04-01", "forceDeletionTypes": _params(ex)["forceDeletionTypes"]}
    )


def _identity_create(env: Env, ex: dict[str, Any]) -> httpx.Response:
    path = f"{env.rg_path}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-g"
    return env.call("PUT", path, _params(ex)["api-version"], _params(ex)["parameters"])


def _identity_get(env: Env, ex: dict[str, Any]) -> httpx.Response:
    path = f"{env.rg_path}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-g2"
    env.put(path, "2024-11-30", {"location": "eastus", "tags": {"key1": "value1"}})
    return env.call("GET", path, _params(ex)["api-version"])


def _identity_delete(env: Env, ex: dict[str, Any]) -> httpx.Response:
    env.identity("id-del")
    path = f"{env.rg_path}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-del"
    return env.call("DELETE", path, _params(ex)["api-version"])


def _fic_path(env: Env, name: str = "fic-g") -> str:
    env.identity("id-fic")
    ident = f"{env.rg_path}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-fic"
    return f"{ident}/federatedIdentityCredentials/{name}"


def _fic_create(env: Env, ex: dict[str, Any]) -> httpx.Response:
    return env.call(
        "PUT", _fic_path(env, "fic-create"), _params(ex)["api-version"], _params(ex)["parameters"]
    )


def _fic_existing(env: Env, ex: dict[str, Any], method: str, name: str) -> httpx.Response:
    path = _fic_path(env, name)
    body = {
        "properties": {
            "issuer": "https://issuer.example/x/",
            "subject": f"sub-{name}",
            "audiences": ["api://AzureADTokenExchange"],
        }
    }
    env.put(path, "2024-11-30", body)
    if method == "LIST":
        return env.call("GET", path.rsplit("/", 1)[0], _params(ex)["api-version"])
    return env.call(method, path, _params(ex)["api-version"])


def _vault_create(env: Env, ex: dict[str, Any]) -> httpx.Response:
    body = json.loads(
        json.dumps(_params(ex)["parameters"]).replace("00000000-0000-0000-0000-000000000000", env.tenant)
    )
    path = f"{env.rg_path}/providers/Microsoft.KeyVault/vaults/kv-g-{env.suffix}"
    return env.call("PUT", path, _params(ex)["api-version"], body)


def _vault_get(env: Env, ex: dict[str, Any]) -> httpx.Response:
    policy = {
        "tenantId": env.tenant,
        "objectId": env.oid,
        "permissions": {"secrets": ["get"], "keys": ["get"], "certificates": ["get"]},
    }
    env.vault(f"kv-get-{env.suffix}", accessPolicies=[policy], enabledForDeployment=True)
    return env.call(
        "GET",
        f"{env.rg_path}/providers/Microsoft.KeyVault/vaults/kv-get-{env.suffix}",
        _params(ex)["api-version"],
    )


def _vault_delete(env: Env, ex: dict[str, Any]) -> httpx.Response:
    env.vault(f"kv-del-{env.suffix}")
    return env.call(
        "DELETE",
        f"{env.rg_path}/providers/Microsoft.KeyVault/vaults/kv-del-{env.suffix}",
        _params(ex)["api-version"],
    )


def _deleted_vault(env: Env, name: str) -> str:
    env.vault(name)
    env.call("DELETE", f"{env.rg_path}/providers/Microsoft.KeyVault/vaults/{name}", "2026-05-15")
    return f"/subscriptions/{env.sub}/providers/Microsoft.KeyVault/locations/eastus/deletedVaults/{name}"


def _vault_get_deleted(env: Env, ex: dict[str, Any]) -> httpx.Response:
    return env.call("GET", _deleted_vault(env, f"kv-gd-{env.suffix}"), _params(ex)["api-version"])


def _vault_purge(env: Env, ex: dict[str, Any]) -> httpx.Response:
    return env.call("POST", _deleted_vault(env, f"kv-pu-{env.suffix}") + "/purge", _params(ex)["api-version"])


def _vault_check_name(env: Env, ex: dict[str, Any]) -> httpx.Response:
    path = f"/subscriptions/{env.sub}/providers/Microsoft.KeyVault/checkNameAvailability"
    return env.call(
        "POST",
        path,
        _params(ex)["api-version"],
        {"name": f"kv-free-{env.suffix}", "type": "Microsoft.KeyVault/vaults"},
    )


def _data_vault(env: Env) -> str:
    name = f"kv-dp-{env.suffix}"
    vault = env.vault(name)
    if not env.granted:
        env.grant(vault["id"], "b86a8fe4-44ce-4948-aee5-eccb2c155cd7", env.oid)
        env.granted = True
    return str(vault["properties"]["vaultUri"])


def _kv(env: Env, ex: dict[str, Any], method: str, rel: str, body: Any = None) -> httpx.Response:
    uri = _data_vault(env)
    return env.kv.request(method, uri + rel, params={"api-version": _params(ex)["api-version"]}, json=body)


def _secret_set(env: Env, ex: dict[str, Any]) -> httpx.Response:
    return _kv(env, ex, "PUT", "secrets/crpsecret", _params(ex)["parameters"])


def _secret_get(env: Env, ex: dict[str, Any]) -> httpx.Response:
    version = _kv(env, ex, "PUT", "secrets/mysecretname", {"value": "x"}).json()["id"].rsplit("/", 1)[-1]
    return _kv(env, ex, "GET", f"secrets/mysecretname/{version}")


def _secrets_list(env: Env, ex: dict[str, Any]) -> httpx.Response:
    _kv(env, ex, "PUT", "secrets/listsecrettest0", {"value": "x", "contentType": "plainText"})
    return _kv(env, ex, "GET", "secrets")


def _secret_delete(env: Env, ex: dict[str, Any]) -> httpx.Response:
    _kv(env, ex, "PUT", "secrets/GetDeletedSecretTest", {"value": "x"})
    return _kv(env, ex, "DELETE", "secrets/GetDeletedSecretTest")


def _role_def(env: Env, ex: dict[str, Any]) -> httpx.Response:
    path = f"/subscriptions/{env.sub}/providers/Microsoft.Authorization/roleDefinitions/{OFFICER}"
    return env.call("GET", path, _params(ex)["api-version"])


def _ra_body(env: Env, principal: str) -> dict[str, Any]:
    role = f"/subscriptions/{env.sub}/providers/Microsoft.Authorization/roleDefinitions/{READER}"
    return {
        "properties": {
            "roleDefinitionId": role,
            "principalId": principal,
            "principalType": "ServicePrincipal",
        }
    }


def _ra_create(env: Env, ex: dict[str, Any]) -> httpx.Response:
    vault = env.vault(f"kv-ra-{env.suffix}")
    principal = env.identity("id-ra")["properties"]["principalId"]
    path = f"{vault['id']}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}"
    return env.call("PUT", path, _params(ex)["api-version"], _ra_body(env, principal))


def _ra_existing(env: Env, ex: dict[str, Any], method: str) -> httpx.Response:
    principal = env.identity(f"id-ra-{method.lower()}")["properties"]["principalId"]
    path = f"{env.rg_path}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}"
    env.put(path, "2022-04-01", _ra_body(env, principal))
    if method == "LIST":
        return env.arm.get(
            f"{env.rg_path}/providers/Microsoft.Authorization/roleAssignments",
            params={"api-version": _params(ex)["api-version"], "$filter": f"principalId eq '{principal}'"},
        )
    return env.call(method, path, _params(ex)["api-version"])


def _cluster_create(env: Env, ex: dict[str, Any]) -> httpx.Response:
    p = _params(ex)
    body = json.loads(json.dumps(p["parameters"]))
    if (body["properties"].get("securityProfile") or {}).get("workloadIdentity", {}).get("enabled"):
        body["properties"]["oidcIssuerProfile"] = {"enabled": True}
    for ident in list((body.get("identity") or {}).get("userAssignedIdentities") or {}):
        body["identity"]["userAssignedIdentities"][ident] = {}
    env.sb.ctx.clock.overrides["managed_cluster.create"] = 30.0  # answer 201 Creating, as the example
    try:
        name = f"aks-c-{uuid.uuid4().hex[:6]}"
        return env.call("PUT", env.cluster_path(name), p["api-version"], body)
    finally:
        env.sb.ctx.clock.overrides.pop("managed_cluster.create", None)


def _cluster_get(env: Env, ex: dict[str, Any]) -> httpx.Response:
    create = _example(SPECS / "containerservice" / "ManagedClustersCreate_Update.json")
    body = json.loads(json.dumps(create["parameters"]["parameters"]))
    body.pop("identity", None)
    env.cluster("aks-get", body, "2025-07-01")
    return env.call("GET", env.cluster_path("aks-get"), _params(ex)["api-version"])


def _cluster_delete(env: Env, ex: dict[str, Any]) -> httpx.Response:
    env.cluster("aks-del")
    return env.call("DELETE", env.cluster_path("aks-del"), _params(ex)["api-version"])


def _cluster_creds(env: Env, ex: dict[str, Any]) -> httpx.Response:
    env.cluster("aks-cred")
    return env.call(
        "POST", env.cluster_path("aks-cred") + "/listClusterUserCredential", _params(ex)["api-version"]
    )


def _ext_path(env: Env, name: str) -> str:
    env.cluster("aks-ext")
    return env.cluster_path("aks-ext") + f"/providers/Microsoft.KubernetesConfiguration/extensions/{name}"


def _ext_create(env: Env, ex: dict[str, Any]) -> httpx.Response:
    env.sb.ctx.clock.overrides["extension.create"] = 30.0  # answer 201 Creating, as the example
    try:
        return env.call(
            "PUT", _ext_path(env, "monitor"), _params(ex)["api-version"], _params(ex)["extension"]
        )
    finally:
        env.sb.ctx.clock.overrides.pop("extension.create", None)


def _ext_existing(env: Env, ex: dict[str, Any], method: str) -> httpx.Response:
    path = _ext_path(env, f"ext-{method.lower()}")
    body = {
        "properties": {
            "extensionType": "azuremonitor-containers",
            "releaseTrain": "Preview",
            "scope": {"cluster": {"releaseNamespace": "kube-system"}},
            "configurationSettings": {"a": "b"},
        }
    }
    env.put(path, "2023-05-01", body)
    return env.call(method, path, _params(ex)["api-version"])


def _ext_operation(env: Env, ex: dict[str, Any]) -> httpx.Response:
    path = _ext_path(env, "ext-op")
    env.sb.ctx.clock.overrides["extension.create"] = 0.5
    try:
        r = env.put(path, "2023-05-01", {"properties": {"extensionType": "microsoft.flux"}})
    finally:
        env.sb.ctx.clock.overrides.pop("extension.create", None)
    status_url = r.headers["Azure-AsyncOperation"]
    time.sleep(0.6)
    return env.arm.get(status_url)


SCENARIOS: dict[str, Scenario] = {
    "CreateResourceGroup.json": _rg_create,
    "ResourceGroups_Get.json": _rg_get,
    "ForceDeleteVMsInResourceGroup.json": _rg_delete,
    "IdentityCreate.json": _identity_create,
    "IdentityGet.json": _identity_get,
    "IdentityDelete.json": _identity_delete,
    "FederatedIdentityCredentialCreate.json": _fic_create,
    "FederatedIdentityCredentialGet.json": lambda e, x: _fic_existing(e, x, "GET", "fic-get"),
    "FederatedIdentityCredentialList.json": lambda e, x: _fic_existing(e, x, "LIST", "fic-list"),
    "FederatedIdentityCredentialDelete.json": lambda e, x: _fic_existing(e, x, "DELETE", "fic-del"),
    "createVault.json": _vault_create,
    "getVault.json": _vault_get,
    "deleteVault.json": _vault_delete,
    "getDeletedVault.json": _vault_get_deleted,
    "purgeDeletedVault.json": _vault_purge,
    "checkVaultNameAvailability.json": _vault_check_name,
    "SetSecret-example.json": _secret_set,
    "GetSecret-example.json": _secret_get,
    "GetSecrets-example.json": _secrets_list,
    "DeleteSecret-example.json": _secret_delete,
    "GetRoleDefinitionByName.json": _role_def,
    "RoleAssignments_CreateForResource.json": _ra_create,
    "RoleAssignments_Get.json": lambda e, x: _ra_existing(e, x, "GET"),
    "RoleAssignments_Delete.json": lambda e, x: _ra_existing(e, x, "DELETE"),
    "RoleAssignments_ListForScope.json": lambda e, x: _ra_existing(e, x, "LIST"),
    "ManagedClustersCreate_AzureKeyvaultSecretsProvider.json": _cluster_create,
    "ManagedClustersCreate_SecurityProfile.json": _cluster_create,
    "ManagedClustersCreate_Update.json": _cluster_create,
    "ManagedClustersGet.json": _cluster_get,
    "ManagedClustersDelete.json": _cluster_delete,
    "ManagedClustersListClusterUserCredentials.json": _cluster_creds,
    "CreateExtension.json": _ext_create,
    "GetExtension.json": lambda e, x: _ext_existing(e, x, "GET"),
    "DeleteExtension.json": lambda e, x: _ext_existing(e, x, "DELETE"),
    "GetExtensionAsyncOperationStatus.json": _ext_operation,
}


def test_every_golden_example_has_a_scenario() -> None:
    assert {p.name for p in GOLDEN} == set(SCENARIOS)


@pytest.mark.parametrize("golden", GOLDEN, ids=[p.name for p in GOLDEN])
def test_golden_shape(env: Env, golden: Path) -> None:
    ex = _example(golden)
    response = SCENARIOS[golden.name](env, ex)
    codes = {int(c) for c in ex["responses"]}
    assert response.status_code in codes, f"{response.status_code}: {response.text[:300]}"
    expected = ex["responses"][str(response.status_code)].get("body")
    if expected is None:
        return
    diff = shape_diff(expected, response.json(), "", NOT_MODELLED.get(golden.name, set()))
    assert diff == [], diff
