"""User-assigned managed identity and its federated identity credentials.

``ensure_identity`` upserts the identity (GET first; PUT only when missing or tags differ).
``ensure_federated_credential`` writes one credential with a stable name, issuer copied verbatim
from the cluster (P7), subject built from the real ServiceAccount, one audience (P5). Writes under
one identity are strictly sequential — a Prefect global concurrency limit keyed by the identity,
so also across concurrent flow runs and machines (P4); reads need no lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.mgmt.msi import ManagedServiceIdentityClient
from prefect import task
from prefect.tasks import exponential_backoff

from keyless_gitops.bodies import differs, federated_credential_body, identity_body
from keyless_gitops.spec import EnvironmentSpec, Names
from tasks.aks import ClusterFacts
from tasks.common import (
    Change,
    StepFacts,
    Stopwatch,
    load_credentials,
    lock_name,
    log,
    retry_transient,
    serialized,
    to_rest,
)
from tasks.resource_group import ResourceGroupFacts


@dataclass(frozen=True, kw_only=True)
class IdentityFacts(StepFacts):
    client_id: str
    principal_id: str
    tenant_id: str


@dataclass(frozen=True, kw_only=True)
class FederatedCredentialFacts(StepFacts):
    issuer: str
    subject: str


def get_identity(client: ManagedServiceIdentityClient, names: Names) -> dict[str, Any] | None:
    try:
        return to_rest(client.user_assigned_identities.get(names.resource_group, names.identity))
    except ResourceNotFoundError:
        return None


@task(
    name="managed identity",
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_condition_fn=retry_transient,
    timeout_seconds=300,
    persist_result=True,
)
def ensure_identity(
    spec: EnvironmentSpec, credentials_block: str, resource_group: ResourceGroupFacts
) -> IdentityFacts:
    """In ``resource_group`` (which must exist first)."""
    watch = Stopwatch()
    names = spec.names
    client = load_credentials(credentials_block).get_client(ManagedServiceIdentityClient)
    desired = identity_body(spec)
    actual = get_identity(client, names)
    change: Change = "unchanged"
    if actual is None:
        change = "created"
    elif differs({"tags": desired["tags"]}, actual):
        change = "updated"
    if change != "unchanged":
        actual = to_rest(
            client.user_assigned_identities.create_or_update(names.resource_group, names.identity, desired)
        )
    assert actual is not None
    props = actual.get("properties", {})
    log().info("identity %s: %s (client id %s)", names.identity, change, props.get("clientId"))
    return IdentityFacts(
        step="identity",
        resource=names.identity,
        id=str(actual.get("id") or names.identity_id),
        change=change,
        client_id=str(props["clientId"]),
        principal_id=str(props["principalId"]),
        tenant_id=str(props.get("tenantId") or ""),
        **watch.stamp(),
    )


def get_federated_credential(
    client: ManagedServiceIdentityClient, names: Names, name: str
) -> dict[str, Any] | None:
    try:
        return to_rest(client.federated_identity_credentials.get(names.resource_group, names.identity, name))
    except ResourceNotFoundError:
        return None


@task(
    name="federated credential",
    task_run_name="federated credential {name}",
    retries=4,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_condition_fn=retry_transient,
    timeout_seconds=15 * 60,
    persist_result=True,
)
def ensure_federated_credential(
    spec: EnvironmentSpec,
    credentials_block: str,
    cluster: ClusterFacts,
    identity: IdentityFacts,
    *,
    name: str,
    subject: str,
) -> FederatedCredentialFacts:
    watch = Stopwatch()
    issuer = cluster.issuer_url  # verbatim from the cluster (P7)
    names = spec.names
    client = load_credentials(credentials_block).get_client(ManagedServiceIdentityClient)
    desired = federated_credential_body(issuer, subject)
    actual = get_federated_credential(client, names, name)
    change: Change = "unchanged"
    if actual is None:
        change = "created"
    elif differs(desired, actual):
        change = "updated"
    if change != "unchanged":
        with serialized(lock_name("fic", names.identity_id)):
            actual = to_rest(
                client.federated_identity_credentials.create_or_update(
                    names.resource_group, names.identity, name, desired
                )
            )
    assert actual is not None
    log().info("federated credential %s (%s): %s", name, subject, change)
    return FederatedCredentialFacts(
        step="federated_credentials",
        resource=f"{names.identity}/{name}",
        id=str(actual.get("id") or f"{names.identity_id}/federatedIdentityCredentials/{name}"),
        change=change,
        issuer=issuer,
        subject=subject,
        **watch.stamp(),
    )
