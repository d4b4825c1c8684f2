"""Azure-side tasks on the sandbox with the real SDKs: end state, then a re-run that writes nothing."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
from azure.mgmt.authorization import AuthorizationManagementClient
from prefect import flow

from keyless_gitops.spec import KEY_VAULT_SECRETS_USER, EnvironmentSpec
from sandbox.server import Sandbox
from tasks.aks import ClusterFacts
from tasks.common import load_credentials
from tasks.identity import IdentityFacts, ensure_federated_credential, ensure_identity
from tasks.keyvault import ensure_key_vault
from tasks.resource_group import ensure_resource_group
from tasks.roles import ensure_identity_can_read_secrets, ensure_pipeline_can_write_secrets
from tasks.secrets import ensure_secrets_seeded

Writes = Callable[[int], list[Any]]


def test_resource_group_vault_identity_and_a_rerun_writes_nothing(
    sandbox: Sandbox, creds_block: str, spec: EnvironmentSpec, writes_since: Writes
) -> None:
    rg = ensure_resource_group(spec, creds_block)
    vault = ensure_key_vault(spec, creds_block, rg)
    identity = ensure_identity(spec, creds_block, rg)
    assert (rg.change, vault.change, identity.change) == ("created", "created", "created")
    assert vault.id.lower() == spec.names.key_vault_id.lower()
    assert vault.vault_uri.startswith("https://127.0.0.1:")
    assert identity.client_id and identity.principal_id

    seq = sandbox.ctx.journal.last_seq
    again = [
        ensure_resource_group(spec, creds_block),
        ensure_key_vault(spec, creds_block, rg),
        ensure_identity(spec, creds_block, rg),
    ]
    assert [f.change for f in again] == ["unchanged"] * 3
    assert writes_since(seq) == []
    assert again[2].client_id == identity.client_id


def test_role_assignment_rides_out_principal_not_found_and_is_typed(
    fresh_sandbox: Sandbox, creds_block: str, spec: EnvironmentSpec, writes_since: Writes
) -> None:
    """P2: right after the identity exists, ARM says PrincipalNotFound for a while; the task retries
    within its budget, and sends principalType=ServicePrincipal (the sandbox rejects a mismatch)."""
    fresh_sandbox.ctx.clock.overrides = {"propagation.principal": 1.5}
    rg = ensure_resource_group(spec, creds_block)
    vault = ensure_key_vault(spec, creds_block, rg)
    identity = ensure_identity(spec, creds_block, rg)
    seq = fresh_sandbox.ctx.journal.last_seq
    reader = ensure_identity_can_read_secrets(spec, creds_block, vault, identity)
    assert reader.change == "created"
    puts = [e for e in writes_since(seq) if "roleassignments" in e.path.lower()]
    assert puts[-1].status == 201
    assert any(e.status == 400 for e in puts), "expected at least one PrincipalNotFound before success"

    client = load_credentials(creds_block).get_client(AuthorizationManagementClient)
    assignments = [
        ra
        for ra in client.role_assignments.list_for_scope(vault.id)
        if ra.principal_id == identity.principal_id
    ]
    assert len(assignments) == 1
    assert assignments[0].principal_type == "ServicePrincipal"
    assert assignments[0].role_definition_id.endswith(KEY_VAULT_SECRETS_USER)

    seq = fresh_sandbox.ctx.journal.last_seq
    assert ensure_identity_can_read_secrets(spec, creds_block, vault, identity).change == "unchanged"
    assert writes_since(seq) == []


def test_federated_credential_writes_never_overlap(
    sandbox: Sandbox, creds_block: str, spec: EnvironmentSpec, writes_since: Writes
) -> None:
    """P4: three credentials on one identity, submitted in parallel, are written one at a time
    (a Prefect global concurrency limit keyed by the identity); the sandbox would answer 409 otherwise."""
    rg = ensure_resource_group(spec, creds_block)
    identity = ensure_identity(spec, creds_block, rg)
    cluster = ClusterFacts(
        step="cluster",
        resource="stand-in",
        id="/stand-in",
        change="unchanged",
        issuer_url="https://issuer.example/tenant/cluster/",
        fqdn=None,
        started=0.0,
        ended=0.0,
    )

    @flow
    def write_all(identity: IdentityFacts) -> list[str]:
        futures = [
            ensure_federated_credential.submit(
                spec, creds_block, cluster, identity, name=name, subject=subject
            )
            for name, subject in spec.federated_subjects.items()
        ]
        return [f.result().change for f in futures]

    seq = sandbox.ctx.journal.last_seq
    assert write_all(identity) == ["created"] * 3
    fic_writes = [e for e in writes_since(seq) if "federatedidentitycredentials" in e.path.lower()]
    assert [e.status for e in fic_writes] == [201, 201, 201] or all(
        e.status in (200, 201) for e in fic_writes
    )
    assert not any(e.status == 409 for e in fic_writes)
    spans = sorted((e.ts - e.latency_ms / 1000, e.ts) for e in fic_writes)
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end, f"FIC writes overlapped: {spans}"

    seq = sandbox.ctx.journal.last_seq
    assert write_all(identity) == ["unchanged"] * 3
    assert writes_since(seq) == []


def _stand_in_cluster() -> ClusterFacts:
    return ClusterFacts(
        step="cluster",
        resource="stand-in",
        id="/stand-in",
        change="unchanged",
        issuer_url="https://issuer.example/tenant/cluster/",
        fqdn=None,
        started=0.0,
        ended=0.0,
    )


def test_federated_credential_writes_never_overlap_across_flow_runs(
    sandbox: Sandbox, creds_block: str, spec: EnvironmentSpec, writes_since: Writes
) -> None:
    """P4 across runs: two flow runs at once, each writing credentials on the same identity."""
    import threading

    rg = ensure_resource_group(spec, creds_block)
    identity = ensure_identity(spec, creds_block, rg)
    cluster = _stand_in_cluster()

    @flow
    def write_some(names: list[str]) -> list[str]:
        futures = [
            ensure_federated_credential.submit(
                spec, creds_block, cluster, identity, name=n, subject=f"system:serviceaccount:ns:{n}"
            )
            for n in names
        ]
        return [f.result().change for f in futures]

    results: dict[str, list[str]] = {}
    seq = sandbox.ctx.journal.last_seq
    runs = [
        threading.Thread(target=lambda key=key, names=names: results.__setitem__(key, write_some(names)))
        for key, names in (("a", ["run-a-1", "run-a-2"]), ("b", ["run-b-1", "run-b-2"]))
    ]
    for t in runs:
        t.start()
    for t in runs:
        t.join(timeout=120)
    assert results == {"a": ["created", "created"], "b": ["created", "created"]}
    fic_writes = [e for e in writes_since(seq) if "federatedidentitycredentials" in e.path.lower()]
    assert len(fic_writes) == 4 and not any(e.status == 409 for e in fic_writes)
    spans = sorted((e.ts - e.latency_ms / 1000, e.ts) for e in fic_writes)
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end, f"FIC writes overlapped: {spans}"


def test_transient_errors_are_retried_by_the_task(
    fresh_sandbox: Sandbox, creds_block: str, spec: EnvironmentSpec
) -> None:
    """A 503 that outlasts azure-core's own retries fails the attempt; the task's retry_condition_fn
    sees a transient error and Prefect runs the step again, which then succeeds."""
    from prefect.client.orchestration import get_client

    rg = ensure_resource_group(spec, creds_block)
    fresh_sandbox.ctx.faults.add(
        {
            "service": "arm",
            "method": "PUT",
            "path": f"userAssignedIdentities/{spec.names.identity}$",
            "action": "error",
            "status": 503,
            "retry_after": 1,
            "count": 3,  # azure-core tries 3 times (retry_total=2 in these tests)
        }
    )
    state = ensure_identity(spec, creds_block, rg, return_state=True)
    assert state.is_completed()
    with get_client(sync_client=True) as client:
        task_run = client.read_task_run(state.state_details.task_run_id)
    assert task_run.run_count == 2


def test_extension_pinned_per_version_and_a_key_change_is_refused(
    sandbox: Sandbox, creds_block: str, spec: EnvironmentSpec, writes_since: Writes
) -> None:
    """P16/P18: the 0.0.x line installs with its own keys, pinned, releaseTrain and auto-upgrade explicit;
    moving to 1.0.0-preview (new keys) is refused with the documented way forward, before any write."""
    from azure.mgmt.kubernetesconfiguration import SourceControlConfigurationClient

    from tasks.aks import ensure_cluster
    from tasks.extension import ExtensionFailed, ensure_argocd_extension

    old = EnvironmentSpec.model_validate({**spec.model_dump(), "extension": {"version": "0.0.7-preview"}})
    rg = ensure_resource_group(old, creds_block)
    cluster = ensure_cluster(old, creds_block, rg)
    identity = ensure_identity(old, creds_block, rg)
    facts = ensure_argocd_extension(old, creds_block, cluster, identity)
    assert (facts.change, facts.version) == ("created", "0.0.7-preview")
    client = load_credentials(creds_block).get_client(SourceControlConfigurationClient)
    ext = client.extensions.get(
        old.names.resource_group, "Microsoft.ContainerService", "managedClusters", old.names.cluster, "argocd"
    )
    assert (ext.version, ext.release_train, ext.auto_upgrade_minor_version) == (
        "0.0.7-preview",
        "preview",
        False,
    )
    assert ext.configuration_settings["workloadIdentity.clientId"] == identity.client_id
    assert ext.configuration_settings["deployWithHighAvailability"] == "false"

    seq = sandbox.ctx.journal.last_seq
    with pytest.raises(ExtensionFailed, match="uninstall and reinstall"):
        ensure_argocd_extension.fn(spec, creds_block, cluster, identity)
    assert writes_since(seq) == []


def test_seeding_recovers_a_secret_deleted_by_hand(
    sandbox: Sandbox, creds_block: str, spec: EnvironmentSpec, writes_since: Writes
) -> None:
    """A seeded secret deleted behind the pipeline's back is soft-deleted and blocks its name (409);
    the seed step recovers it instead of failing, so re-running ``up`` converges."""
    rg = ensure_resource_group(spec, creds_block)
    vault = ensure_key_vault(spec, creds_block, rg)
    officer = ensure_pipeline_can_write_secrets(spec, creds_block, vault)
    first = ensure_secrets_seeded(spec, creds_block, vault, officer, True)
    assert first.change == "created"
    client = load_credentials(creds_block).get_secret_client(vault.vault_uri)
    name = sorted(spec.secrets)[0]
    client.begin_delete_secret(name).wait()

    again = ensure_secrets_seeded(spec, creds_block, vault, officer, True)
    versions = {s.name: s.version for s in again.secrets}
    assert versions == {s.name: s.version for s in first.secrets}  # recovered, not rewritten
    assert client.get_secret(name).properties.version == versions[name]
    seq = sandbox.ctx.journal.last_seq
    assert ensure_secrets_seeded(spec, creds_block, vault, officer, True).change == "unchanged"
    assert writes_since(seq) == []
