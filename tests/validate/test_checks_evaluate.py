"""The checks, evaluated on synthetic observations (pure): a healthy stack passes every row, and
each drift is reported on the right check with the right layer, severity, hint and step."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from keyless_gitops.bodies import extension_settings
from keyless_gitops.spec import KEY_VAULT_SECRETS_USER, EnvironmentSpec
from tasks.checks import evaluate
from tasks.drift import CheckRow, Layer, Severity, Status, Step, remediation_steps
from tasks.observation import (
    ApplicationObs,
    ClusterObs,
    DeploymentObs,
    ExtensionObs,
    FederatedCredentialObs,
    IdentityObs,
    LiveChainObs,
    MountObs,
    Observation,
    PodObs,
    ProofObs,
    ResourceGroupObs,
    RoleAssignmentObs,
    SecretObs,
    SecretProviderClassObs,
    ServiceAccountObs,
    VaultObs,
)

SUB = "00000000-0000-0000-0000-000000000001"
TENANT = "00000000-0000-0000-0000-0000000000aa"
CLIENT_ID = "11111111-1111-1111-1111-111111111111"
ISSUER = "https://127.0.0.1:9/oidc/cluster-1/"

SPEC = EnvironmentSpec().for_subscription(SUB)
NAMES = SPEC.names


def healthy() -> Observation:
    app = SPEC.sample_app
    label = {"azure.workload.identity/use": "true"}
    sas = [f"{SPEC.extension.namespace}/{sa}" for sa in SPEC.extension.federated_service_accounts]
    sas.append(f"{app.namespace}/{app.service_account}")
    return Observation(
        resource_group=ResourceGroupObs(location=SPEC.location, provisioning_state="Succeeded"),
        cluster=ClusterObs(
            provisioning_state="Succeeded",
            power_state="Running",
            oidc_issuer_enabled=True,
            issuer_url=ISSUER,
            workload_identity_enabled=True,
            csi_addon_enabled=True,
        ),
        vault=VaultObs(
            provisioning_state="Succeeded", rbac_authorization=True, vault_uri="x", tenant_id=TENANT
        ),
        secrets={s: SecretObs(version="v1", enabled=True) for s in SPEC.secrets},
        identity=IdentityObs(client_id=CLIENT_ID, principal_id="p", tenant_id=TENANT),
        federated_credentials={
            n: FederatedCredentialObs(issuer=ISSUER, subject=s, audiences=("api://AzureADTokenExchange",))
            for n, s in SPEC.federated_subjects.items()
        },
        role_assignments=(
            RoleAssignmentObs(
                id="ra1",
                scope=NAMES.key_vault_id,
                role_definition_id=NAMES.role_definition_id(KEY_VAULT_SECRETS_USER),
                principal_type="ServicePrincipal",
            ),
        ),
        extension=ExtensionObs(
            provisioning_state="Succeeded",
            version=SPEC.extension.version,
            release_train=SPEC.extension.release_train,
            auto_upgrade_minor_version=False,
            settings=extension_settings(SPEC, CLIENT_ID),
        ),
        service_accounts={
            k: ServiceAccountObs(annotations={"azure.workload.identity/client-id": CLIENT_ID}, labels=label)
            for k in sas
        },
        pods={k: (PodObs(name=f"{k}-0", labels=label, ready=True, service_account=k),) for k in sas},
        deployment=DeploymentObs(replicas=1, ready_replicas=1, template_labels=label),
        secret_provider_class=SecretProviderClassObs(
            parameters={"clientID": CLIENT_ID, "keyvaultName": NAMES.key_vault, "tenantId": TENANT},
            object_names=tuple(SPEC.secrets),
            secret_objects=(
                {
                    "secretName": app.synced_secret,
                    "type": "Opaque",
                    "data": [{"objectName": s, "key": s} for s in SPEC.secrets],
                },
            ),
        ),
        mounts=(MountObs(pod="p0", mounted=True, versions=dict.fromkeys(SPEC.secrets, "v1")),),
        proofs={
            s: ProofObs(vault_version="v1", mounted_versions=("v1",), synced_matches_vault=True)
            for s in SPEC.secrets
        },
        live_chain=LiveChainObs(client_id=CLIENT_ID, error=None, matches=dict.fromkeys(SPEC.secrets, True)),
        application=ApplicationObs(
            sync_status="Synced",
            health_status="Healthy",
            revision=SPEC.gitops.target_revision,
            target_revision=SPEC.gitops.target_revision,
            resources_out_of_sync=(),
        ),
    )


def rows_of(obs: Observation) -> list[CheckRow]:
    return evaluate(SPEC, NAMES, TENANT, obs)


def problems(obs: Observation) -> dict[str, CheckRow]:
    return {r.check: r for r in rows_of(obs) if not r.ok}


def test_a_healthy_stack_passes_every_row() -> None:
    rows = rows_of(healthy())
    assert rows and all(r.ok for r in rows), [r for r in rows if not r.ok]
    assert {r.layer for r in rows} == set(Layer)
    # one row per check id
    assert len({r.check for r in rows}) == len(rows)
    # the FICs, the SAs and the proof appear per item
    for fic in SPEC.federated_subjects:
        assert f"entra.fic.issuer/{fic}" in {r.check for r in rows}
    for secret in SPEC.secrets:
        assert f"kubernetes.e2e/{secret}" in {r.check for r in rows}


def replace(obj: Any, **changes: Any) -> Any:
    return dataclasses.replace(obj, **changes)


def drop(d: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k != key}


SA_KEY = "sample-app/sample-app-sa"


def _drifts() -> list[tuple[str, Observation, str, Layer, Severity, Step | None]]:
    h = healthy()
    sample_fic = SPEC.sample_app.federated_credential
    fics = dict(h.federated_credentials)
    changed_subject = dict(fics)
    changed_subject[sample_fic] = replace(fics[sample_fic], subject="system:serviceaccount:sample-app:other")
    sas = dict(h.service_accounts)
    sas_no_annotation = dict(sas)
    sas_no_annotation[SA_KEY] = ServiceAccountObs(annotations={}, labels={})
    pods = dict(h.pods)
    pods_unlabelled = dict(pods)
    pods_unlabelled[SA_KEY] = (replace(pods[SA_KEY][0], labels={}),)
    broader = (
        *h.role_assignments,
        RoleAssignmentObs(
            id="ra2",
            scope=NAMES.resource_group_id,
            role_definition_id=NAMES.role_definition_id("b24988ac-6180-42a0-ab88-20f7382dd24c"),
            principal_type="ServicePrincipal",
        ),
    )
    assert h.extension is not None
    ext_changed = replace(
        h.extension,
        settings={**h.extension.settings, SPEC.extension.key_map.workload_identity_client_id: "someone-else"},
    )
    return [
        (
            "fic deleted",
            replace(h, federated_credentials=drop(fics, sample_fic)),
            f"entra.fic/{sample_fic}",
            Layer.ENTRA,
            Severity.CRITICAL,
            Step.FEDERATED_CREDENTIALS,
        ),
        (
            "fic subject changed",
            replace(h, federated_credentials=changed_subject),
            f"entra.fic.subject/{sample_fic}",
            Layer.ENTRA,
            Severity.CRITICAL,
            Step.FEDERATED_CREDENTIALS,
        ),
        (
            "fic issuer with a trailing slash dropped",
            replace(
                h,
                federated_credentials={
                    **fics,
                    sample_fic: replace(fics[sample_fic], issuer=ISSUER.rstrip("/")),
                },
            ),
            f"entra.fic.issuer/{sample_fic}",
            Layer.ENTRA,
            Severity.CRITICAL,
            Step.FEDERATED_CREDENTIALS,
        ),
        (
            "SA annotation removed",
            replace(h, service_accounts=sas_no_annotation),
            f"kubernetes.sa.annotation/{SA_KEY}",
            Layer.KUBERNETES,
            Severity.CRITICAL,
            Step.WORKLOAD,
        ),
        (
            "pod label removed",
            replace(h, pods=pods_unlabelled),
            f"kubernetes.pods.label/{SA_KEY}",
            Layer.KUBERNETES,
            Severity.CRITICAL,
            Step.SAMPLE_APP,
        ),
        (
            "role assignment deleted",
            replace(h, role_assignments=()),
            "azure.role.secrets-user",
            Layer.AZURE,
            Severity.CRITICAL,
            Step.ROLE_ASSIGNMENT,
        ),
        (
            "broader role at resource group scope",
            replace(h, role_assignments=broader),
            "azure.role.no-broader",
            Layer.AZURE,
            Severity.HIGH,
            None,
        ),
        (
            "vault RBAC off",
            replace(h, vault=replace(h.vault, rbac_authorization=False)),
            "azure.key-vault.rbac",
            Layer.AZURE,
            Severity.CRITICAL,
            Step.KEY_VAULT,
        ),
        (
            "seeded secret deleted",
            replace(h, secrets=drop(h.secrets, "api-key")),
            "azure.key-vault.secret/api-key",
            Layer.AZURE,
            Severity.CRITICAL,
            Step.SEED_SECRETS,
        ),
        (
            "extension setting changed",
            replace(h, extension=ext_changed),
            f"azure.extension.setting/{SPEC.extension.key_map.workload_identity_client_id}",
            Layer.AZURE,
            Severity.CRITICAL,
            Step.EXTENSION,
        ),
        (
            "managed resource edited by hand",
            replace(
                h,
                application=replace(
                    h.application,
                    sync_status="OutOfSync",
                    resources_out_of_sync=("Deployment/order-service",),
                ),
            ),
            "argocd.application.sync",
            Layer.ARGOCD,
            Severity.MEDIUM,
            Step.APPLICATION,
        ),
        (
            "stale mount after rotation",
            replace(
                h,
                proofs={
                    **h.proofs,
                    "api-key": ProofObs(
                        vault_version="v2", mounted_versions=("v1",), synced_matches_vault=False
                    ),
                },
            ),
            "kubernetes.e2e/api-key",
            Layer.KUBERNETES,
            Severity.CRITICAL,
            Step.SAMPLE_APP,
        ),
        (
            "synced secret value differs",
            replace(
                h,
                proofs={
                    **h.proofs,
                    "api-key": ProofObs(
                        vault_version="v1", mounted_versions=("v1",), synced_matches_vault=False
                    ),
                },
            ),
            "kubernetes.e2e/api-key",
            Layer.KUBERNETES,
            Severity.CRITICAL,
            Step.SAMPLE_APP,
        ),
    ]


@pytest.mark.parametrize(
    ("obs", "check", "layer", "severity", "step"),
    [pytest.param(*d[1:], id=d[0]) for d in _drifts()],
)
def test_each_drift_is_reported_on_its_link(
    obs: Observation, check: str, layer: Layer, severity: Severity, step: Step | None
) -> None:
    bad = problems(obs)
    assert check in bad, sorted(bad)
    row = bad[check]
    assert row.status is Status.DRIFT
    assert (row.layer, row.severity, row.step) == (layer, severity, step)
    assert row.hint and row.expected != row.actual
    if step is None:
        assert remediation_steps([row]) == []
    else:
        assert step in remediation_steps([row])


def test_the_broader_role_names_role_and_scope() -> None:
    drift = _drifts()[6][1]
    row = problems(drift)["azure.role.no-broader"]
    assert "Contributor" in row.actual and NAMES.resource_group in row.actual


def test_an_unreadable_area_fails_its_checks_instead_of_guessing() -> None:
    h = healthy()
    rows = problems(replace(h, errors={"kubernetes": "ApiException 503", "secrets": "HttpResponseError 403"}))
    assert rows["kubernetes.api"].status is Status.FAIL
    assert rows["azure.key-vault.secret/api-key"].status is Status.FAIL
    assert not any(c.startswith("kubernetes.sa") for c in rows)
    # Failed checks are not remediated blindly.
    assert remediation_steps(list(rows.values())) == []


def test_a_missing_cluster_is_drift_and_its_details_are_not_checked() -> None:
    rows = problems(replace(healthy(), cluster=None))
    assert rows["azure.cluster"].status is Status.DRIFT
    assert "azure.cluster.oidc-issuer" not in rows
    # issuer unknown -> the FIC issuer rows cannot be evaluated
    assert all(r.status is Status.FAIL for c, r in rows.items() if c.startswith("entra.fic.issuer/"))


def test_an_unexpected_federated_credential_is_reported_not_removed() -> None:
    h = healthy()
    extra = FederatedCredentialObs(
        issuer="https://token.actions.githubusercontent.com",
        subject="repo:someone/else:ref:refs/heads/main",
        audiences=("api://AzureADTokenExchange",),
    )
    row = problems(replace(h, federated_credentials={**h.federated_credentials, "gh": extra}))[
        "entra.fic.unexpected"
    ]
    assert row.severity is Severity.HIGH and row.step is None and "repo:someone/else" in row.actual


def test_vault_rbac_off_names_one_link_instead_of_failing_every_secret_read() -> None:
    h = healthy()
    assert h.vault is not None
    obs = replace(
        h, vault=replace(h.vault, rbac_authorization=False), errors={"secrets": "HttpResponseError 403"}
    )
    bad = problems(obs)
    assert list(bad) == ["azure.key-vault.rbac"]
    assert bad["azure.key-vault.rbac"].status is Status.DRIFT


def test_secret_rows_show_names_and_versions_only() -> None:
    rows = {r.check: r for r in rows_of(healthy())}
    assert rows["azure.key-vault.secret/api-key"].resource.endswith("api-key (version v1)")


@pytest.mark.parametrize(
    ("error", "layer", "step", "word"),
    [
        ("Entra AADSTS70021", Layer.ENTRA, Step.FEDERATED_CREDENTIALS, "no federated credential matching"),
        ("Entra AADSTS700016", Layer.ENTRA, Step.WORKLOAD, "not a known identity"),
        (
            "Kubernetes: no azure.workload.identity/client-id annotation",
            Layer.KUBERNETES,
            Step.WORKLOAD,
            "annotation",
        ),
        ("Key Vault 403 Forbidden (ForbiddenByRbac)", Layer.AZURE, Step.ROLE_ASSIGNMENT, "Secrets User"),
        ("Entra AADSTS50166", Layer.ENTRA, None, "AADSTS50166"),
    ],
)
def test_a_broken_live_chain_names_the_link_and_the_step(
    error: str, layer: Layer, step: Step | None, word: str
) -> None:
    obs = dataclasses.replace(
        healthy(), live_chain=LiveChainObs(client_id=CLIENT_ID, error=error, matches={})
    )
    row = problems(obs)["e2e.live-chain"]
    assert (row.status, row.layer, row.severity, row.step) == (Status.DRIFT, layer, Severity.CRITICAL, step)
    assert word in row.hint and error in row.actual


def test_a_live_read_that_differs_from_the_vault_is_drift() -> None:
    obs = dataclasses.replace(
        healthy(), live_chain=LiveChainObs(client_id=CLIENT_ID, error=None, matches={"api-key": False})
    )
    assert "api-key differs" in problems(obs)["e2e.live-chain"].actual
