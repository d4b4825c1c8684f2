"""Resource groups through the real azure-mgmt-resource client (azure-specs resources/*)."""

from __future__ import annotations

import ssl
from typing import Any

import httpx
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.mgmt.resource.resources import ResourceManagementClient

from sandbox.arm.testing import credential, mgmt_client
from sandbox.server import Sandbox


@pytest.fixture
def rm(conn: dict[str, Any]) -> ResourceManagementClient:
    return mgmt_client(ResourceManagementClient, conn)


def test_create_get_list_delete_group_counts_writes(
    sandbox: Sandbox, rm: ResourceManagementClient, unique: str
) -> None:
    name = f"rg-{unique}"
    since = sandbox.ctx.journal.last_seq
    created = rm.resource_groups.create_or_update(name, {"location": "eastus", "tags": {"a": "b"}})
    assert created.name == name and created.properties.provisioning_state == "Succeeded"
    again = rm.resource_groups.create_or_update(name, {"location": "eastus", "tags": {"a": "b"}})
    assert again.id == created.id
    assert rm.resource_groups.get(name).location == "eastus"
    assert rm.resource_groups.check_existence(name)
    assert name in [g.name for g in rm.resource_groups.list()]
    writes = sandbox.ctx.journal.writes(since, service="arm")
    assert [(w.method, w.status) for w in writes] == [("PUT", 201), ("PUT", 200)]
    assert {w.api_version for w in writes} == {"2025-04-01"}
    rm.resource_groups.begin_delete(name).result(timeout=30)
    with pytest.raises(ResourceNotFoundError):
        rm.resource_groups.get(name)
    assert not rm.resource_groups.check_existence(name)


def test_group_delete_is_polled_through_location(
    fresh_sandbox: Sandbox, rm: ResourceManagementClient, unique: str
) -> None:
    """ARM async-operations doc: DELETE 202 + ``Location`` (with api-version), 202 while running, then 200.

    Only this operation's polls count: the session sandbox is shared, and another client's
    ``operationresults`` polls (a leftover poller, a flow's teardown) may land in the same journal
    window; counting them made this test fail once under load (its last "poll" was someone else's 202).
    """
    name = f"rg-{unique}"
    rm.resource_groups.create_or_update(name, {"location": "eastus"})
    fresh_sandbox.ctx.clock.overrides = {"resource_group.delete": 1.5}
    since = fresh_sandbox.ctx.journal.last_seq
    first: list[Any] = []
    poller = rm.resource_groups.begin_delete(
        name,
        polling_interval=0.2,
        raw_response_hook=lambda r: first or first.append(r.http_response),
    )
    assert rm.resource_groups.get(name).properties.provisioning_state == "Deleting"
    poller.result(timeout=30)
    assert poller.done() and poller.status() == "Succeeded"
    assert not rm.resource_groups.check_existence(name)
    location = first[0].headers["Location"]
    assert first[0].status_code == 202 and "api-version=2025-04-01" in location
    assert int(first[0].headers["Retry-After"]) >= 1
    op_path = location.split("?", 1)[0].removeprefix(fresh_sandbox.connection["arm_endpoint"])
    entries = fresh_sandbox.ctx.journal.entries(since, service="arm")
    mine = [e for e in entries if e.path.lower() == op_path.lower()]
    delete = [
        e for e in entries if e.method == "DELETE" and e.path.lower().endswith(f"/resourcegroups/{name}")
    ]
    assert [e.status for e in delete] == [202]
    assert mine and 202 in [p.status for p in mine], [(e.method, e.path[-40:], e.status) for e in entries]
    assert mine[-1].status == 200 and [p.status for p in mine].count(200) == 1
    assert all(p.api_version == "2025-04-01" and p.method == "GET" for p in mine)


def test_bad_requests_get_arm_400s_not_500s(conn: dict[str, Any], unique: str) -> None:
    token = credential(conn).get_token("https://management.azure.com/.default").token
    base = f"{conn['arm_endpoint']}/subscriptions/{conn['subscription_id']}/resourcegroups/rg-{unique}"
    with httpx.Client(verify=conn["ca_bundle"], headers={"Authorization": f"Bearer {token}"}) as c:
        r = c.put(f"{base}?api-version=2019-01-01", json={"location": "eastus"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "InvalidApiVersionParameter"
        r = c.put(base, json={"location": "eastus"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "MissingApiVersionParameter"
        r = c.put(
            f"{base}?api-version=2025-04-01",
            content=b"{not json",
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code == 400 and r.json()["error"]["code"] == "InvalidRequestContent"
        r = c.put(f"{base}?api-version=2025-04-01", json={"location": "eastus", "tenant_id": "x"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "InvalidRequestContent"
        assert "tenant_id" in r.json()["error"]["message"]
        r = c.put(f"{base}?api-version=2025-04-01", json={"tags": {}})
        assert r.status_code == 400


def test_arm_requires_a_valid_token(conn: dict[str, Any]) -> None:
    sub = conn["subscription_id"]
    url = f"{conn['arm_endpoint']}/subscriptions/{sub}/resourcegroups?api-version=2025-04-01"
    r = httpx.get(url, verify=conn["ca_bundle"])
    assert r.status_code == 401 and r.json()["error"]["code"] == "AuthenticationFailed"
    assert "WWW-Authenticate" in r.headers
    r = httpx.get(url, verify=conn["ca_bundle"], headers={"Authorization": "Bearer abc.def.ghi"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "InvalidAuthenticationToken"
    vault_token = credential(conn).get_token("https://vault.azure.net/.default").token
    r = httpx.get(url, verify=conn["ca_bundle"], headers={"Authorization": f"Bearer {vault_token}"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "InvalidAuthenticationTokenAudience"


@pytest.mark.parametrize(
    ("path", "version", "body"),
    [
        (
            "providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-x",
            "2024-11-30",
            {"location": "eastus", "tenant_id": "t"},
        ),
        (
            "providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-x/federatedIdentityCredentials/fic-x",
            "2024-11-30",
            {"properties": {"issuer": "https://i/", "subject": "s", "audience": ["a"]}},
        ),
        (
            "providers/Microsoft.KeyVault/vaults/kv-x",
            "2026-05-15",
            {"location": "eastus", "properties": {"tenant_id": "t"}},
        ),
        (
            "providers/Microsoft.ContainerService/managedClusters/aks-x",
            "2026-08-01",
            {
                "location": "eastus",
                "properties": {"agentPoolProfiles": [{"name": "a"}], "oidc_issuer_profile": {}},
            },
        ),
        (
            "providers/Microsoft.Authorization/roleAssignments/00000000-0000-0000-0000-000000000001",
            "2022-04-01",
            {"properties": {"role_definition_id": "x", "principalId": "y"}},
        ),
    ],
    ids=["identity", "fic", "vault", "cluster", "role-assignment"],
)
def test_a_property_the_spec_does_not_have_is_400(
    rm: ResourceManagementClient, conn: dict[str, Any], unique: str, path: str, version: str, body: Any
) -> None:
    group = f"rg-bad-{unique}"
    rm.resource_groups.create_or_update(group, {"location": "eastus"})
    token = credential(conn).get_token("https://management.azure.com/.default").token
    base = f"{conn['arm_endpoint']}/subscriptions/{conn['subscription_id']}/resourceGroups/{group}"
    with httpx.Client(verify=ssl.create_default_context(cafile=conn["ca_bundle"])) as c:
        if "federatedIdentityCredentials" in path:
            ident = path.split("/federatedIdentityCredentials")[0]
            c.put(
                f"{base}/{ident}",
                params={"api-version": version},
                json={"location": "eastus"},
                headers={"Authorization": f"Bearer {token}"},
            )
        r = c.put(
            f"{base}/{path}",
            params={"api-version": version},
            json=body,
            headers={"Authorization": f"Bearer {token}"},
        )
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "InvalidRequestContent"
    rm.resource_groups.begin_delete(group).result(timeout=30)
