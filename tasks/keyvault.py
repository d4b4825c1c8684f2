"""Key Vault (RBAC mode): ``ensure_key_vault`` upserts the vault and waits for its create LRO (P9).

Idempotent: GET first, PUT only when missing or different. A vault of the same name that is
soft-deleted (P10) is recovered (``createMode: recover``) instead of failing on the name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.mgmt.keyvault import KeyVaultManagementClient
from prefect import task
from prefect.tasks import exponential_backoff

from keyless_gitops.bodies import differs, key_vault_body
from keyless_gitops.spec import EnvironmentSpec, Names
from tasks.common import (
    Change,
    StepFacts,
    Stopwatch,
    load_credentials,
    log,
    retry_transient,
    to_rest,
    wait_for_poller,
)
from tasks.resource_group import ResourceGroupFacts

CREATE_TIMEOUT = 10 * 60


@dataclass(frozen=True, kw_only=True)
class VaultFacts(StepFacts):
    vault_uri: str
    tenant_id: str


def get_key_vault(client: KeyVaultManagementClient, names: Names) -> dict[str, Any] | None:
    try:
        return to_rest(client.vaults.get(names.resource_group, names.key_vault))
    except ResourceNotFoundError:
        return None


def _is_soft_deleted(client: KeyVaultManagementClient, name: str, location: str) -> bool:
    try:
        client.vaults.get_deleted(name, location)
    except ResourceNotFoundError:
        return False
    return True


@task(
    name="key vault",
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_condition_fn=retry_transient,
    timeout_seconds=CREATE_TIMEOUT + 5 * 60,
    persist_result=True,
)
def ensure_key_vault(
    spec: EnvironmentSpec, credentials_block: str, resource_group: ResourceGroupFacts
) -> VaultFacts:
    """In ``resource_group`` (which must exist first)."""
    watch = Stopwatch()
    names = spec.names
    creds = load_credentials(credentials_block)
    credential = creds.get_credential()
    client = creds.get_client(KeyVaultManagementClient, credential)
    tenant_id = creds.tenant_id or creds.pipeline_principal(credential).tenant_id
    desired = key_vault_body(spec, tenant_id)
    actual = get_key_vault(client, names)
    change: Change = "unchanged"
    if actual is None:
        change = "created"
        if _is_soft_deleted(client, names.key_vault, spec.location):
            log().info("vault %s is soft-deleted: recovering it", names.key_vault)
            desired["properties"]["createMode"] = "recover"
    elif differs({"tags": desired["tags"], "properties": desired["properties"]}, actual):
        change = "updated"
    if change != "unchanged":
        poller = client.vaults.begin_create_or_update(
            names.resource_group,
            names.key_vault,
            desired,  # type: ignore[call-overload]
        )
        actual = to_rest(wait_for_poller(poller, what=f"vault {names.key_vault}", timeout=CREATE_TIMEOUT))
    assert actual is not None
    props = actual.get("properties", {})
    vault_uri = props.get("vaultUri")
    if not vault_uri:
        raise RuntimeError(f"vault {names.key_vault} reports no vaultUri")
    log().info("key vault %s: %s", names.key_vault, change)
    return VaultFacts(
        step="key_vault",
        resource=names.key_vault,
        id=str(actual.get("id") or names.key_vault_id),
        change=change,
        vault_uri=vault_uri,
        tenant_id=str(props.get("tenantId") or tenant_id),
        **watch.stamp(),
    )
