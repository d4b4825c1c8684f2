"""Role assignments at vault scope: Secrets User for the managed identity, Secrets Officer for the
pipeline's own principal (needed before it can seed secrets into an RBAC vault, PITFALLS P8).

Idempotent without an upsert: the assignment name is deterministic (uuid5 of scope, role and
principal, P3); an existing assignment of the same role to the same principal at that scope under
any name counts as done, and 409 ``RoleAssignmentExists`` is success. ``principalType`` is always
sent (the SDK default is ``User``, P2), and ``PrincipalNotFound`` right after an identity was
created is retried within a time budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.mgmt.authorization import AuthorizationManagementClient
from prefect import task
from prefect.tasks import exponential_backoff

from blocks.credentials import AzureCredentials
from keyless_gitops.bodies import role_assignment_body, role_assignment_name
from keyless_gitops.spec import KEY_VAULT_SECRETS_OFFICER, KEY_VAULT_SECRETS_USER, EnvironmentSpec
from tasks.common import (
    Change,
    StepFacts,
    Stopwatch,
    error_code,
    load_credentials,
    log,
    retry_transient,
    to_rest,
    wait_until,
)
from tasks.identity import IdentityFacts
from tasks.keyvault import VaultFacts

PROPAGATION_BUDGET = 5 * 60


@dataclass(frozen=True, kw_only=True)
class RoleAssignmentFacts(StepFacts):
    scope: str
    role_definition_id: str
    principal_id: str


def _same_role(a: str, b: str) -> bool:
    return a.rstrip("/").split("/")[-1].lower() == b.rstrip("/").split("/")[-1].lower()


def get_role_assignment(
    client: AuthorizationManagementClient, scope: str, role_definition_id: str, principal_id: str
) -> dict[str, Any] | None:
    """The assignment of this role to this principal at exactly this scope, under any name."""
    name = role_assignment_name(scope, role_definition_id, principal_id)
    try:
        return to_rest(client.role_assignments.get(scope, name))
    except ResourceNotFoundError:
        pass
    for ra in client.role_assignments.list_for_scope(scope, filter=f"principalId eq '{principal_id}'"):
        rest = to_rest(ra)
        props = rest.get("properties", {})
        if (
            str(props.get("principalId", "")).lower() == principal_id.lower()
            and _same_role(str(props.get("roleDefinitionId", "")), role_definition_id)
            and str(props.get("scope", scope)).lower() == scope.lower()
        ):
            return rest
    return None


def ensure_assignment(
    creds: AzureCredentials,
    *,
    step: str,
    label: str,
    scope: str,
    role_definition_id: str,
    principal_id: str,
    principal_type: str,
) -> RoleAssignmentFacts:
    watch = Stopwatch()
    client = creds.get_client(AuthorizationManagementClient)
    name = role_assignment_name(scope, role_definition_id, principal_id)
    existing = get_role_assignment(client, scope, role_definition_id, principal_id)
    change: Change = "unchanged"
    if existing is None:
        change = "created"
        body = role_assignment_body(role_definition_id, principal_id, principal_type)

        def create() -> dict[str, Any]:
            try:
                return to_rest(client.role_assignments.create(scope, name, body))
            except ResourceExistsError as exc:
                if error_code(exc) == "RoleAssignmentExists":
                    return {"id": f"{scope}/providers/Microsoft.Authorization/roleAssignments/{name}"}
                raise

        existing = wait_until(
            create,
            what=f"role assignment {label} (Entra replication)",
            timeout=PROPAGATION_BUDGET,
            interval=1.0,
            max_interval=15.0,
            retry_on=lambda e: isinstance(e, HttpResponseError) and error_code(e) == "PrincipalNotFound",
        )
    log().info("role assignment %s: %s", label, change)
    return RoleAssignmentFacts(
        step=step,
        resource=label,
        id=str(existing.get("id") or name),
        change=change,
        scope=scope,
        role_definition_id=role_definition_id,
        principal_id=principal_id,
        **watch.stamp(),
    )


_TASK = dict(
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_condition_fn=retry_transient,
    timeout_seconds=PROPAGATION_BUDGET + 120,
    persist_result=True,
)


@task(name="identity: Key Vault Secrets User", **_TASK)  # type: ignore[call-overload]
def ensure_identity_can_read_secrets(
    spec: EnvironmentSpec, credentials_block: str, vault: VaultFacts, identity: IdentityFacts
) -> RoleAssignmentFacts:
    """Exactly Secrets User at vault scope for the managed identity, nothing broader."""
    names = spec.names
    return ensure_assignment(
        load_credentials(credentials_block),
        step="role_assignment",
        label=f"Key Vault Secrets User for {names.identity} on {names.key_vault}",
        scope=vault.id,
        role_definition_id=names.role_definition_id(KEY_VAULT_SECRETS_USER),
        principal_id=identity.principal_id,
        principal_type="ServicePrincipal",
    )


@task(name="pipeline: Key Vault Secrets Officer", **_TASK)  # type: ignore[call-overload]
def ensure_pipeline_can_write_secrets(
    spec: EnvironmentSpec, credentials_block: str, vault: VaultFacts
) -> RoleAssignmentFacts:
    """Secrets Officer at vault scope for the principal running the pipeline (P8)."""
    names = spec.names
    creds = load_credentials(credentials_block)
    principal = creds.pipeline_principal()
    return ensure_assignment(
        creds,
        step="secrets_officer",
        label=f"Key Vault Secrets Officer for the pipeline on {names.key_vault}",
        scope=vault.id,
        role_definition_id=names.role_definition_id(KEY_VAULT_SECRETS_OFFICER),
        principal_id=principal.object_id,
        principal_type=principal.principal_type,
    )
