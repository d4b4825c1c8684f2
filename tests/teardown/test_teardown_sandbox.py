"""Teardown on the sandbox: after provision nothing of the environment is left in the sandbox's
state and the vault is purged; a second teardown writes nothing; a protected environment refuses
before any call; purge protection keeps the soft-deleted vault with a clear message."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from azure.mgmt.keyvault import KeyVaultManagementClient
from azure.mgmt.resource.resources import ResourceManagementClient

from flows.provision import provision
from flows.teardown import teardown
from keyless_gitops.bodies import key_vault_body, resource_group_body
from keyless_gitops.spec import EnvironmentSpec
from keyless_gitops.target import sandbox_credentials
from sandbox.server import Sandbox
from tasks.common import load_credentials
from tasks.teardown_plan import TEARDOWN_ORDER, ProtectedEnvironmentError

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

BLOCK = "keyless-gitops-teardown-tests"


@pytest.fixture(scope="module")
def block(sandbox: Sandbox, prefect_harness: Path) -> str:
    creds = sandbox_credentials(sandbox.connection)
    creds.retry_total = 2
    creds.polling_interval = 1
    creds.save(BLOCK, overwrite=True)
    return BLOCK


def writes(sandbox: Sandbox, since: int) -> list[Any]:
    return [e for e in sandbox.ctx.journal.entries(since, writes_only=True) if e.service != "admin"]


def state_text(sandbox: Sandbox) -> str:
    """Every persisted state document of the sandbox, lower-cased (what survives a restart), minus
    ARM's record of finished async operations: those are operation history (Azure keeps
    ``Azure-AsyncOperation`` status URLs answerable for a while), not resources."""
    docs = []
    for p in sorted((sandbox.state_dir / "state").glob("*.json")):
        data = json.loads(p.read_text())
        if p.name == "arm.json":
            data = {k: v for k, v in data.items() if k != "operations"}
        docs.append(json.dumps(data))
    return "\n".join(docs).lower()


def new_spec(sandbox: Sandbox, **kw: Any) -> EnvironmentSpec:
    return EnvironmentSpec(environment=f"x{uuid.uuid4().hex[:5]}", **kw).for_subscription(
        sandbox.connection["subscription_id"]
    )


def test_teardown_after_provision_leaves_nothing_and_a_second_run_writes_nothing(
    sandbox: Sandbox, block: str
) -> None:
    spec = new_spec(sandbox)
    provision(spec=spec, credentials_block=block, generate_missing_secrets=True)
    names = spec.names
    assert names.resource_group.lower() in state_text(sandbox)

    results = teardown(spec=spec, credentials_block=block)
    steps = [r["step"] for r in results]
    # reverse order, as planned
    assert [s for s in dict.fromkeys(steps)] == [s.value for s in TEARDOWN_ORDER]
    by_step = {r["step"]: r for r in results}
    assert by_step["applications"]["outcome"] == "deleted"
    assert by_step["extension"]["outcome"] == "deleted"
    assert by_step["resource_group"]["outcome"] == "deleted"
    assert by_step["purge_vault"]["outcome"] == "deleted"
    assert by_step["verify"]["outcome"] == "verified"
    assert {r["resource"].split(" ")[-1] for r in results if r["step"] == "sample_namespace"} == {
        spec.sample_app.namespace,
        spec.gitops.destination_namespace,
    }

    text = state_text(sandbox)
    for name in (names.resource_group, names.key_vault, names.identity):
        assert name.lower() not in text, f"{name} is still in the sandbox state"

    mark = sandbox.ctx.journal.last_seq
    again = teardown(spec=spec, credentials_block=block)
    assert writes(sandbox, mark) == []
    assert {r["outcome"] for r in again} <= {"absent", "verified"}


def test_protected_environment_refuses_before_any_call(sandbox: Sandbox, block: str) -> None:
    spec = EnvironmentSpec(environment="prod", protected=True)
    mark = sandbox.ctx.journal.last_seq
    with pytest.raises(ProtectedEnvironmentError, match="confirm"):
        teardown(spec=spec, credentials_block=block)
    assert sandbox.ctx.journal.entries(mark) == []
    with pytest.raises(ProtectedEnvironmentError):
        teardown(spec=spec, credentials_block=block, confirm="dev")


def test_purge_protection_keeps_the_vault_with_a_clear_message(sandbox: Sandbox, block: str) -> None:
    # Only a group and a purge-protected vault (the other steps find nothing: absent = done).
    spec = new_spec(sandbox, purge_protection=True, protected=True)
    names = spec.names
    creds = load_credentials(block)
    creds.get_client(ResourceManagementClient).resource_groups.create_or_update(
        names.resource_group, resource_group_body(spec)
    )
    creds.get_client(KeyVaultManagementClient).vaults.begin_create_or_update(
        names.resource_group, names.key_vault, key_vault_body(spec, sandbox.connection["tenant_id"])
    ).result()

    results = teardown(spec=spec, credentials_block=block, confirm=spec.environment)
    purge = next(r for r in results if r["step"] == "purge_vault")
    assert purge["outcome"] == "kept"
    assert "purge protection" in purge["detail"] and "cannot be reused" in purge["detail"]
    verify = results[-1]
    assert verify["outcome"] == "verified" and "purge-protected" in verify["detail"]
