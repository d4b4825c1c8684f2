"""Vaults (azure-mgmt-keyvault) and secrets (azure-keyvault-secrets) with RBAC on the data plane.

PITFALLS P8 (Owner has no data-plane rights; ForbiddenByRbac), P9 (wait for the create LRO),
P10 (soft delete, name conflict, purge protection), P20 (throttling and 503 retried).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.keyvault.secrets import SecretClient
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.keyvault import KeyVaultManagementClient
from azure.mgmt.resource.resources import ResourceManagementClient

from sandbox.arm.testing import credential, mgmt_client
from sandbox.server import Sandbox

OFFICER = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"
USER = "4633458b-17de-408a-b874-0445c86b69e6"


@pytest.fixture
def group(conn: dict[str, Any], unique: str) -> Iterator[str]:
    rm = mgmt_client(ResourceManagementClient, conn)
    name = f"rg-kv-{unique}"
    rm.resource_groups.create_or_update(name, {"location": "eastus"})
    yield name
    if rm.resource_groups.check_existence(name):
        rm.resource_groups.begin_delete(name).result(timeout=30)


@pytest.fixture
def kv(conn: dict[str, Any]) -> KeyVaultManagementClient:
    return mgmt_client(KeyVaultManagementClient, conn)


def vault_body(conn: dict[str, Any], **props: Any) -> dict[str, Any]:
    return {
        "location": "eastus",
        "properties": {"tenantId": conn["tenant_id"], "sku": {"family": "A", "name": "standard"}, **props},
    }


def my_object_id(conn: dict[str, Any]) -> str:
    token = credential(conn).get_token("https://management.azure.com/.default").token
    return str(jwt.decode(token, options={"verify_signature": False})["oid"])


def grant(conn: dict[str, Any], scope: str, role: str) -> None:
    auth = mgmt_client(AuthorizationManagementClient, conn)
    role_id = (
        f"/subscriptions/{conn['subscription_id']}/providers/Microsoft.Authorization/roleDefinitions/{role}"
    )
    auth.role_assignments.create(
        scope,
        str(uuid.uuid4()),
        {
            "role_definition_id": role_id,
            "principal_id": my_object_id(conn),
            "principal_type": "ServicePrincipal",
        },
    )


def secrets(conn: dict[str, Any], vault_uri: str) -> SecretClient:
    return SecretClient(
        vault_uri,
        credential(conn),
        verify_challenge_resource=False,
        connection_verify=conn["ca_bundle"],
        retry_backoff_factor=0.05,
    )


def test_rbac_vault_and_secrets(
    fresh_sandbox: Sandbox, conn: dict[str, Any], kv: KeyVaultManagementClient, group: str, unique: str
) -> None:
    name = f"kv-{unique}"
    vault = kv.vaults.begin_create_or_update(group, name, vault_body(conn)).result(timeout=30)
    assert vault.properties.enable_rbac_authorization is True
    assert vault.properties.vault_uri == f"{conn['arm_endpoint']}/vaults/{name}/"
    client = secrets(conn, vault.properties.vault_uri)
    # Owner on the subscription is not enough on the data plane (P8)
    with pytest.raises(HttpResponseError) as err:
        client.set_secret("db-password", "s3cr3t-value")
    assert err.value.status_code == 403 and "ForbiddenByRbac" in str(err.value)
    assert "s3cr3t-value" not in str(err.value)

    grant(conn, vault.id, USER)
    with pytest.raises(HttpResponseError) as err:  # Secrets User reads, never writes
        client.set_secret("db-password", "s3cr3t-value")
    assert err.value.status_code == 403
    grant(conn, vault.id, OFFICER)
    first = client.set_secret("db-password", "s3cr3t-value")
    second = client.set_secret("db-password", "rotated-value", content_type="text/plain")
    assert client.get_secret("db-password").value == "rotated-value"
    assert client.get_secret("db-password", first.properties.version).value == "s3cr3t-value"
    assert [p.name for p in client.list_properties_of_secrets()] == ["db-password"]
    versions = {p.version for p in client.list_properties_of_secret_versions("db-password")}
    assert versions == {first.properties.version, second.properties.version}
    deleted = client.begin_delete_secret("db-password").result()
    assert deleted.recovery_id.endswith("/deletedsecrets/db-password")
    with pytest.raises(ResourceNotFoundError):
        client.get_secret("db-password")
    with pytest.raises(ResourceExistsError):  # a soft-deleted name is blocked until purged
        client.set_secret("db-password", "again")
    client.purge_deleted_secret("db-password")
    client.set_secret("db-password", "again")
    journal = fresh_sandbox.ctx.journal.entries(0, service="keyvault")
    assert all("s3cr3t" not in e.path for e in journal)


def test_rbac_propagation_window(
    fresh_sandbox: Sandbox, conn: dict[str, Any], kv: KeyVaultManagementClient, group: str, unique: str
) -> None:
    vault = kv.vaults.begin_create_or_update(group, f"kv-p-{unique}", vault_body(conn)).result(timeout=30)
    fresh_sandbox.ctx.clock.overrides = {"propagation.rbac": 30.0}
    grant(conn, vault.id, OFFICER)
    with pytest.raises(HttpResponseError) as err:
        secrets(conn, vault.properties.vault_uri).set_secret("x", "y")
    assert err.value.status_code == 403


def test_access_policy_mode_denies_without_a_policy(
    conn: dict[str, Any], kv: KeyVaultManagementClient, group: str, unique: str
) -> None:
    body = vault_body(conn, enableRbacAuthorization=False, accessPolicies=[])
    vault = kv.vaults.begin_create_or_update(group, f"kv-ap-{unique}", body).result(timeout=30)
    with pytest.raises(HttpResponseError) as err:
        secrets(conn, vault.properties.vault_uri).get_secret("anything")
    assert err.value.status_code == 403 and "AccessDenied" in str(err.value)
    policy = {
        "tenantId": conn["tenant_id"],
        "objectId": my_object_id(conn),
        "permissions": {"secrets": ["get", "set"]},
    }
    body = vault_body(conn, enableRbacAuthorization=False, accessPolicies=[policy])
    vault = kv.vaults.begin_create_or_update(group, f"kv-ap-{unique}", body).result(timeout=30)
    client = secrets(conn, vault.properties.vault_uri)
    client.set_secret("k", "v")
    assert client.get_secret("k").value == "v"


def test_soft_delete_name_conflict_and_purge(
    conn: dict[str, Any], kv: KeyVaultManagementClient, group: str, unique: str
) -> None:
    name = f"kv-sd-{unique}"
    kv.vaults.begin_create_or_update(group, name, vault_body(conn)).result(timeout=30)
    kv.vaults.delete(group, name)
    deleted = kv.vaults.get_deleted(name, "eastus")
    assert deleted.properties.vault_id.endswith(f"/vaults/{name}") and deleted.properties.scheduled_purge_date
    assert name in [d.name for d in kv.vaults.list_deleted()]
    with pytest.raises(ResourceExistsError) as err:
        kv.vaults.begin_create_or_update(group, name, vault_body(conn)).result(timeout=30)
    assert err.value.error.code == "ConflictError"
    assert (
        kv.vaults.check_name_availability({"name": name, "type": "Microsoft.KeyVault/vaults"}).name_available
        is False
    )
    kv.vaults.begin_purge_deleted(name, "eastus").result(timeout=30)
    with pytest.raises(ResourceNotFoundError):
        kv.vaults.get_deleted(name, "eastus")
    kv.vaults.begin_create_or_update(group, name, vault_body(conn)).result(timeout=30)


def test_purge_protection_forbids_purge(
    conn: dict[str, Any], kv: KeyVaultManagementClient, group: str, unique: str
) -> None:
    name = f"kv-pp-{unique}"
    kv.vaults.begin_create_or_update(group, name, vault_body(conn, enablePurgeProtection=True)).result(
        timeout=30
    )
    kv.vaults.delete(group, name)
    assert kv.vaults.get_deleted(name, "eastus").properties.purge_protection_enabled is True
    with pytest.raises(HttpResponseError) as err:
        kv.vaults.begin_purge_deleted(name, "eastus").result(timeout=30)
    assert err.value.status_code == 403


def test_group_delete_soft_deletes_its_vault(
    conn: dict[str, Any], kv: KeyVaultManagementClient, group: str, unique: str
) -> None:
    name = f"kv-rg-{unique}"
    kv.vaults.begin_create_or_update(group, name, vault_body(conn)).result(timeout=30)
    mgmt_client(ResourceManagementClient, conn).resource_groups.begin_delete(group).result(timeout=30)
    assert kv.vaults.get_deleted(name, "eastus").name == name
    kv.vaults.begin_purge_deleted(name, "eastus").result(timeout=30)


def test_vault_create_is_polled_and_retried_through_faults(
    fresh_sandbox: Sandbox, conn: dict[str, Any], kv: KeyVaultManagementClient, group: str, unique: str
) -> None:
    ctx = fresh_sandbox.ctx
    ctx.clock.overrides = {"vault.create": 1.5}
    ctx.faults.add({"service": "arm", "method": "PUT", "path": "/vaults/", "action": "throttle", "count": 1})
    ctx.faults.add(
        {"service": "arm", "method": "GET", "path": "/vaults/", "action": "error", "status": 503, "count": 1}
    )
    since = ctx.journal.last_seq
    poller = kv.vaults.begin_create_or_update(group, f"kv-lro-{unique}", vault_body(conn))
    vault = poller.result(timeout=60)
    assert vault.properties.provisioning_state == "Succeeded"
    entries = [e for e in ctx.journal.entries(since, service="arm") if "/vaults/" in e.path]
    statuses = [(e.method, e.status) for e in entries]
    assert statuses[:2] == [("PUT", 429), ("PUT", 201)]
    assert ("GET", 503) in statuses and statuses[-1] == ("GET", 200)
    assert len([e for e in entries if e.write and e.status < 300]) == 1  # one real write


def test_bad_vault_bodies_are_400(conn: dict[str, Any], kv: KeyVaultManagementClient, group: str) -> None:
    with pytest.raises(HttpResponseError) as err:
        kv.vaults.begin_create_or_update(
            group, "kv-bad-body", {"location": "eastus", "properties": {"tenant_id": conn["tenant_id"]}}
        )
    assert err.value.status_code == 400 and "tenant_id" in str(err.value)


def test_secret_client_retries_throttling_and_503(
    fresh_sandbox: Sandbox, conn: dict[str, Any], kv: KeyVaultManagementClient, group: str, unique: str
) -> None:
    vault = kv.vaults.begin_create_or_update(group, f"kv-f-{unique}", vault_body(conn)).result(timeout=30)
    grant(conn, vault.id, OFFICER)
    client = secrets(conn, vault.properties.vault_uri)
    client.set_secret("warm-up", "x")  # challenge + token done
    ctx = fresh_sandbox.ctx
    ctx.faults.add({"service": "keyvault", "method": "PUT", "action": "throttle", "count": 1})
    ctx.faults.add({"service": "keyvault", "method": "PUT", "action": "error", "status": 503, "count": 1})
    since = ctx.journal.last_seq
    assert client.set_secret("retried", "value").name == "retried"
    statuses = [e.status for e in ctx.journal.entries(since, service="keyvault")]
    assert statuses == [429, 503, 200]


def test_vault_patch_switches_to_rbac(
    conn: dict[str, Any], kv: KeyVaultManagementClient, group: str, unique: str
) -> None:
    name = f"kv-pt-{unique}"
    kv.vaults.begin_create_or_update(group, name, vault_body(conn, enableRbacAuthorization=False)).result(
        timeout=30
    )
    updated = kv.vaults.update(
        group, name, {"properties": {"enableRbacAuthorization": True}, "tags": {"env": "dev"}}
    )
    assert updated.properties.enable_rbac_authorization is True and updated.tags == {"env": "dev"}


def test_purge_is_a_polled_operation(
    fresh_sandbox: Sandbox, conn: dict[str, Any], kv: KeyVaultManagementClient, group: str, unique: str
) -> None:
    name = f"kv-pl-{unique}"
    kv.vaults.begin_create_or_update(group, name, vault_body(conn)).result(timeout=30)
    kv.vaults.delete(group, name)
    fresh_sandbox.ctx.clock.overrides = {"vault.purge": 1.2}
    since = fresh_sandbox.ctx.journal.last_seq
    kv.vaults.begin_purge_deleted(name, "eastus", polling_interval=0.2).result(timeout=30)
    entries = fresh_sandbox.ctx.journal.entries(since, service="arm")
    assert (entries[0].method, entries[0].status) == ("POST", 202)
    assert any("/operationresults/" in e.path and e.status == 202 for e in entries)
    with pytest.raises(ResourceNotFoundError):
        kv.vaults.get_deleted(name, "eastus")


def test_challenge_and_bad_api_version_over_raw_https(
    conn: dict[str, Any], kv: KeyVaultManagementClient, group: str, unique: str
) -> None:
    import ssl

    import httpx

    vault = kv.vaults.begin_create_or_update(group, f"kv-raw-{unique}", vault_body(conn)).result(timeout=30)
    url = f"{vault.properties.vault_uri}secrets/x"
    verify = ssl.create_default_context(cafile=conn["ca_bundle"])
    r = httpx.get(url, params={"api-version": "2026-04-01"}, verify=verify)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == (
        f'Bearer authorization="{conn["authority_host"]}/{conn["tenant_id"]}", resource="https://vault.azure.net"'
    )
    token = credential(conn).get_token("https://vault.azure.net/.default").token
    r = httpx.get(
        url, params={"api-version": "1999-01-01"}, verify=verify, headers={"Authorization": f"Bearer {token}"}
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "BadParameter"
    arm_token = credential(conn).get_token("https://management.azure.com/.default").token
    r = httpx.get(
        url,
        params={"api-version": "2026-04-01"},
        verify=verify,
        headers={"Authorization": f"Bearer {arm_token}"},
    )
    assert r.status_code == 401  # a token for another audience
