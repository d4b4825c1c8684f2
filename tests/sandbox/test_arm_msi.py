"""Managed identities and federated identity credentials through azure-mgmt-msi (PITFALLS P4, P5)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.mgmt.msi import ManagedServiceIdentityClient
from azure.mgmt.resource.resources import ResourceManagementClient

from sandbox.arm.testing import mgmt_client
from sandbox.server import Sandbox

ISSUER = "https://oidc.example.test/tenant/issuer/"
AUD = ["api://AzureADTokenExchange"]


@pytest.fixture
def group(conn: dict[str, Any], unique: str) -> Iterator[str]:
    rm = mgmt_client(ResourceManagementClient, conn)
    name = f"rg-msi-{unique}"
    rm.resource_groups.create_or_update(name, {"location": "eastus"})
    yield name
    rm.resource_groups.begin_delete(name).result(timeout=30)


@pytest.fixture
def msi(conn: dict[str, Any]) -> ManagedServiceIdentityClient:
    return mgmt_client(ManagedServiceIdentityClient, conn)


def fic(subject: str, audiences: list[str] | None = None) -> dict[str, Any]:
    return {"properties": {"issuer": ISSUER, "subject": subject, "audiences": audiences or AUD}}


def test_identity_lifecycle(sandbox: Sandbox, msi: ManagedServiceIdentityClient, group: str) -> None:
    since = sandbox.ctx.journal.last_seq
    ident = msi.user_assigned_identities.create_or_update(
        group, "id-app", {"location": "eastus", "tags": {"k": "v"}}
    )
    assert ident.client_id and ident.principal_id and ident.tenant_id == sandbox.ctx.identity.tenant_id
    same = msi.user_assigned_identities.create_or_update(
        group, "id-app", {"location": "eastus", "tags": {"k": "v"}}
    )
    assert (same.client_id, same.principal_id) == (ident.client_id, ident.principal_id)
    assert msi.user_assigned_identities.get(group, "id-app").id == ident.id
    assert [i.name for i in msi.user_assigned_identities.list_by_resource_group(group)] == ["id-app"]
    assert [(w.method, w.status) for w in sandbox.ctx.journal.writes(since)] == [("PUT", 201), ("PUT", 200)]
    msi.user_assigned_identities.delete(group, "id-app")
    msi.user_assigned_identities.delete(group, "id-app")  # absent: 204, no error
    with pytest.raises(ResourceNotFoundError):
        msi.user_assigned_identities.get(group, "id-app")


def test_federated_credential_rules(
    fresh_sandbox: Sandbox, msi: ManagedServiceIdentityClient, group: str
) -> None:
    fresh_sandbox.ctx.clock.overrides = {"federated_credential.write": 0.01}
    msi.user_assigned_identities.create_or_update(group, "id-fic", {"location": "eastus"})
    created = msi.federated_identity_credentials.create_or_update(group, "id-fic", "fic-0", fic("sub-0"))
    assert created.issuer == ISSUER and created.audiences == AUD
    assert msi.federated_identity_credentials.get(group, "id-fic", "fic-0").subject == "sub-0"
    # same issuer + subject under another name: 400 (P5)
    with pytest.raises(HttpResponseError) as err:
        msi.federated_identity_credentials.create_or_update(group, "id-fic", "fic-dup", fic("sub-0"))
    assert err.value.status_code == 400 and "already exists" in str(err.value)
    # exactly one audience
    with pytest.raises(HttpResponseError) as err:
        msi.federated_identity_credentials.create_or_update(
            group, "id-fic", "fic-2aud", fic("s", [*AUD, "x"])
        )
    assert err.value.status_code == 400
    # at most 20
    for i in range(1, 20):
        msi.federated_identity_credentials.create_or_update(group, "id-fic", f"fic-{i}", fic(f"sub-{i}"))
    with pytest.raises(HttpResponseError) as err:
        msi.federated_identity_credentials.create_or_update(group, "id-fic", "fic-20", fic("sub-20"))
    assert err.value.status_code == 400 and "maximum" in str(err.value)
    assert len(list(msi.federated_identity_credentials.list(group, "id-fic"))) == 20
    msi.federated_identity_credentials.delete(group, "id-fic", "fic-0")
    with pytest.raises(ResourceNotFoundError):
        msi.federated_identity_credentials.get(group, "id-fic", "fic-0")


def test_concurrent_federated_credential_writes_conflict(
    fresh_sandbox: Sandbox, conn: dict[str, Any], group: str
) -> None:
    fresh_sandbox.ctx.clock.overrides = {"federated_credential.write": 1.0}
    clients = [mgmt_client(ManagedServiceIdentityClient, conn) for _ in range(2)]
    clients[0].user_assigned_identities.create_or_update(group, "id-race", {"location": "eastus"})
    clients[1].user_assigned_identities.get(group, "id-race")  # both clients hold a token
    barrier = threading.Barrier(2)
    outcomes: list[Any] = [None, None]

    def write(i: int) -> None:
        barrier.wait()
        try:
            outcomes[i] = clients[i].federated_identity_credentials.create_or_update(
                group, "id-race", f"fic-{i}", fic(f"race-{i}")
            )
        except ResourceExistsError as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=write, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    errors = [o for o in outcomes if isinstance(o, ResourceExistsError)]
    assert len(errors) == 1, outcomes
    assert errors[0].error.code == "ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity"
    # one at a time works (P4: serialise writes per identity)
    clients[0].federated_identity_credentials.create_or_update(group, "id-race", "fic-a", fic("seq-a"))
    clients[0].federated_identity_credentials.create_or_update(group, "id-race", "fic-b", fic("seq-b"))


def test_identity_in_a_missing_group_is_404(msi: ManagedServiceIdentityClient) -> None:
    # (msi's msrest serializer drops unknown dict keys, so body validation is shown with raw
    # requests in test_arm_resources / test_golden_shapes)
    with pytest.raises(ResourceNotFoundError):
        msi.user_assigned_identities.create_or_update("rg-does-not-exist", "id-x", {"location": "eastus"})
