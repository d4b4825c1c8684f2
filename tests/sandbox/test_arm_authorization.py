"""Role definitions and assignments through azure-mgmt-authorization (PITFALLS P2, P3)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.msi import ManagedServiceIdentityClient
from azure.mgmt.resource.resources import ResourceManagementClient

from sandbox.arm.testing import mgmt_client
from sandbox.server import Sandbox

SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
SECRETS_OFFICER = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"


@pytest.fixture
def auth(conn: dict[str, Any]) -> AuthorizationManagementClient:
    return mgmt_client(AuthorizationManagementClient, conn)


@pytest.fixture
def group(conn: dict[str, Any], unique: str) -> Iterator[str]:
    rm = mgmt_client(ResourceManagementClient, conn)
    name = f"rg-auth-{unique}"
    rm.resource_groups.create_or_update(name, {"location": "eastus"})
    yield name
    rm.resource_groups.begin_delete(name).result(timeout=30)


def test_built_in_role_definitions_by_name(auth: AuthorizationManagementClient, conn: dict[str, Any]) -> None:
    scope = f"/subscriptions/{conn['subscription_id']}"
    for name, guid in (
        ("Key Vault Secrets User", SECRETS_USER),
        ("Key Vault Secrets Officer", SECRETS_OFFICER),
    ):
        found = list(auth.role_definitions.list(scope, filter=f"roleName eq '{name}'"))
        assert [d.name for d in found] == [guid]
        assert found[0].role_name == name and found[0].permissions[0].data_actions
    owner = auth.role_definitions.get(scope, "8e3af657-a8ff-443a-a75c-2fe8c4bcb635")
    assert owner.role_name == "Owner" and owner.id.startswith(scope)
    names = {d.role_name for d in auth.role_definitions.list(scope)}
    assert {"Owner", "Contributor", "Reader"} <= names


def test_role_assignment_rules(
    fresh_sandbox: Sandbox, auth: AuthorizationManagementClient, conn: dict[str, Any], group: str
) -> None:
    sub = conn["subscription_id"]
    scope = f"/subscriptions/{sub}/resourceGroups/{group}"
    role = f"/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{SECRETS_USER}"
    fresh_sandbox.ctx.clock.overrides = {"propagation.principal": 1.0}
    msi = mgmt_client(ManagedServiceIdentityClient, conn)
    ident = msi.user_assigned_identities.create_or_update(group, "id-ra", {"location": "eastus"})
    name = str(uuid.uuid4())
    params = {
        "role_definition_id": role,
        "principal_id": ident.principal_id,
        "principal_type": "ServicePrincipal",
    }

    # replication lag right after the identity was created (P2)
    with pytest.raises(HttpResponseError) as err:
        auth.role_assignments.create(scope, name, params)
    assert err.value.status_code == 400 and err.value.error.code == "PrincipalNotFound"
    time.sleep(1.05)
    # the SDK's default principalType is User (CLIENT-FACTS)
    with pytest.raises(HttpResponseError) as err:
        auth.role_assignments.create(
            scope, name, {"role_definition_id": role, "principal_id": ident.principal_id}
        )
    assert err.value.error.code == "UnmatchedPrincipalType"

    since = fresh_sandbox.ctx.journal.last_seq
    created = auth.role_assignments.create(scope, name, params)
    assert created.scope == scope and created.principal_type == "ServicePrincipal"
    assert created.role_definition_id.endswith(SECRETS_USER)
    assert auth.role_assignments.create(scope, name, params).id == created.id  # same name: idempotent
    # same scope + principal + role under a new random name (P3)
    with pytest.raises(ResourceExistsError) as exists:
        auth.role_assignments.create(scope, str(uuid.uuid4()), params)
    assert exists.value.error.code == "RoleAssignmentExists"
    assert len(fresh_sandbox.ctx.journal.writes(since)) == 3

    by_principal = list(
        auth.role_assignments.list_for_scope(scope, filter=f"principalId eq '{ident.principal_id}'")
    )
    assert [a.name for a in by_principal] == [name]
    sub_scope = f"/subscriptions/{sub}"
    assert name in [a.name for a in auth.role_assignments.list_for_scope(sub_scope)]  # below the scope
    assert name not in [a.name for a in auth.role_assignments.list_for_scope(sub_scope, filter="atScope()")]
    assert auth.role_assignments.get(scope, name).principal_id == ident.principal_id

    # a Contributor caller may not write or delete role assignments
    fresh_sandbox.ctx.settings.caller_role = "Contributor"
    with pytest.raises(HttpResponseError) as err:
        auth.role_assignments.delete(scope, name)
    assert err.value.status_code == 403 and err.value.error.code == "AuthorizationFailed"
    fresh_sandbox.ctx.settings.caller_role = "Owner"

    assert auth.role_assignments.delete(scope, name).name == name
    assert auth.role_assignments.delete(scope, name) is None  # absent: 204


def test_unknown_principal_and_role(
    auth: AuthorizationManagementClient, conn: dict[str, Any], group: str
) -> None:
    sub = conn["subscription_id"]
    scope = f"/subscriptions/{sub}/resourceGroups/{group}"
    role = f"/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{SECRETS_USER}"
    with pytest.raises(HttpResponseError) as err:
        auth.role_assignments.create(
            scope, str(uuid.uuid4()), {"role_definition_id": role, "principal_id": str(uuid.uuid4())}
        )
    assert err.value.error.code == "PrincipalNotFound"
    bogus = role.replace(SECRETS_USER, str(uuid.uuid4()))
    with pytest.raises(HttpResponseError) as err:
        auth.role_assignments.create(
            scope, str(uuid.uuid4()), {"role_definition_id": bogus, "principal_id": "x"}
        )
    assert err.value.error.code == "RoleDefinitionDoesNotExist"
