"""Drift on the sandbox: each drift is introduced behind the pipeline's back (real ``kubectl`` or the
Azure SDKs), reported by a read-only validation on the right row (layer, severity, hint), and
``remediate=True`` brings validation back to all-pass by re-running only the steps behind it.

One provisioned environment for the module; every test starts from and ends in a passing state.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.keyvault.secrets import SecretClient
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.keyvault import KeyVaultManagementClient
from azure.mgmt.kubernetesconfiguration import SourceControlConfigurationClient
from azure.mgmt.msi import ManagedServiceIdentityClient

from flows.provision import provision
from flows.validate import validate
from keyless_gitops.spec import EnvironmentSpec
from sandbox.server import Sandbox
from tasks.aks import get_kubeconfig
from tasks.common import load_credentials, to_rest, wait_until
from tasks.drift import Step
from tests.validate.conftest import new_spec

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

KUBECTL = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "kubectl"
CONTRIBUTOR = "b24988ac-6180-42a0-ab88-20f7382dd24c"


class Env:
    def __init__(self, spec: EnvironmentSpec, block: str, kubeconfig: Path, sandbox: Sandbox) -> None:
        self.spec = spec
        self.block = block
        self.kubeconfig = kubeconfig
        self.sandbox = sandbox
        self.creds = load_credentials(block)
        self.names = spec.names

    def kubectl(self, *args: str) -> str:
        out = subprocess.run(
            [str(KUBECTL), "--kubeconfig", str(self.kubeconfig), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        return out.stdout

    def client(self, kind: type) -> Any:
        return self.creds.get_client(kind)

    def identity(self) -> Any:
        return self.client(ManagedServiceIdentityClient).user_assigned_identities.get(
            self.names.resource_group, self.names.identity
        )

    def validate(self, *, remediate: bool = False) -> dict[str, Any]:
        mark = self.sandbox.ctx.journal.last_seq
        doc = validate(spec=self.spec, credentials_block=self.block, remediate=remediate, fail_on_drift=False)
        if not remediate:
            writes = [
                e for e in self.sandbox.ctx.journal.entries(mark, writes_only=True) if e.service != "admin"
            ]
            assert writes == [], f"validation wrote: {[(e.method, e.path) for e in writes]}"
        return dict(doc)


@pytest.fixture(scope="module")
def env(sandbox: Sandbox, creds_block: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    spec = new_spec(sandbox, f"d{uuid.uuid4().hex[:5]}")
    provision(spec=spec, credentials_block=creds_block, generate_missing_secrets=True)
    kubeconfig = tmp_path_factory.mktemp("kube") / "config"
    kubeconfig.write_bytes(get_kubeconfig(load_credentials(creds_block), spec.names))
    kubeconfig.chmod(0o600)
    e = Env(spec, creds_block, kubeconfig, sandbox)
    assert e.validate()["exit_code"] == 0
    yield e


def problems(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["check"]: r for r in doc["rows"] if r["status"] != "pass"}


def assert_drift_then_fixed(
    env: Env,
    check: str,
    layer: str,
    severity: str,
    step: Step,
    *,
    hint_words: tuple[str, ...] = (),
    live_chain: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """``live_chain``: (layer, word of the hint) the fresh token exchange must report for this break."""
    doc = env.validate()
    bad = problems(doc)
    assert check in bad, sorted(bad)
    if live_chain is not None:
        live = bad["e2e.live-chain"]
        assert (live["status"], live["layer"]) == ("drift", live_chain[0]), live
        assert live_chain[1] in live["hint"], live["hint"]
    row = bad[check]
    assert (row["status"], row["layer"], row["severity"], row["step"]) == (
        "drift",
        layer,
        severity,
        step.value,
    )
    for w in hint_words:
        assert w in row["hint"], row["hint"]
    assert doc["exit_code"] == 1
    fixed = env.validate(remediate=True)
    assert problems(fixed) == {}, problems(fixed)
    assert step.value in fixed["remediation"]["steps"]
    return fixed


def test_federated_credential_deleted(env: Env) -> None:
    fic = env.spec.sample_app.federated_credential
    env.client(ManagedServiceIdentityClient).federated_identity_credentials.delete(
        env.names.resource_group, env.names.identity, fic
    )
    fixed = assert_drift_then_fixed(
        env,
        f"entra.fic/{fic}",
        "Entra",
        "critical",
        Step.FEDERATED_CREDENTIALS,
        hint_words=("AADSTS70021",),
        live_chain=("Entra", "AADSTS70021"),
    )
    # only the steps behind the drift (and their inputs) ran; e.g. not the extension or the Application
    ran = {c["step"] for c in fixed["remediation"]["changes"]}
    assert "extension" not in ran and "application" not in ran
    # The drift was announced as a Prefect event on the environment (for Automations), and the
    # repaired state as a passed event.
    assert {"keyless-gitops.validation.drift", "keyless-gitops.validation.passed"} <= _events(env)


def _events(env: Env) -> set[str]:
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    flt = EventFilter(
        event=EventNameFilter(prefix=["keyless-gitops.validation."]),
        resource=EventResourceFilter(id=[f"keyless-gitops.environment.{env.spec.environment}"]),
    )

    def names() -> set[str]:
        with get_client(sync_client=True) as client:
            return {e.event for e in client.read_events(filter=flt, limit=50).events}  # server max is 50

    return wait_until(lambda: names() if len(names()) >= 2 else set(), what="validation events", timeout=30)


def test_federated_credential_subject_changed(env: Env) -> None:
    fic = env.spec.sample_app.federated_credential
    msi = env.client(ManagedServiceIdentityClient)
    current = msi.federated_identity_credentials.get(env.names.resource_group, env.names.identity, fic)
    msi.federated_identity_credentials.create_or_update(
        env.names.resource_group,
        env.names.identity,
        fic,
        {
            "properties": {
                "issuer": current.issuer,
                "subject": "system:serviceaccount:sample-app:someone-else",
                "audiences": ["api://AzureADTokenExchange"],
            }
        },
    )
    assert_drift_then_fixed(
        env,
        f"entra.fic.subject/{fic}",
        "Entra",
        "critical",
        Step.FEDERATED_CREDENTIALS,
        live_chain=("Entra", "AADSTS70021"),
    )


def test_service_account_annotation_removed(env: Env) -> None:
    app = env.spec.sample_app
    env.kubectl(
        "annotate",
        "serviceaccount",
        app.service_account,
        "-n",
        app.namespace,
        "azure.workload.identity/client-id-",
    )
    assert_drift_then_fixed(
        env,
        f"kubernetes.sa.annotation/{app.namespace}/{app.service_account}",
        "Kubernetes",
        "critical",
        Step.WORKLOAD,
        live_chain=("Kubernetes", "client-id annotation"),
    )


def test_pod_label_removed(env: Env) -> None:
    app = env.spec.sample_app
    pods = env.kubectl("get", "pods", "-n", app.namespace, "-l", "app=sample-app", "-o", "name").split()
    assert pods
    for pod in pods:
        env.kubectl("label", pod, "-n", app.namespace, "azure.workload.identity/use-")
    assert_drift_then_fixed(
        env,
        f"kubernetes.pods.label/{app.namespace}/{app.service_account}",
        "Kubernetes",
        "critical",
        Step.SAMPLE_APP,
        hint_words=("labelled",),
    )


def _secrets_user_assignment(env: Env) -> Any:
    pid = env.identity().principal_id
    auth = env.client(AuthorizationManagementClient)
    for ra in auth.role_assignments.list_for_scope(env.names.key_vault_id, filter=f"principalId eq '{pid}'"):
        if ra.role_definition_id.lower().endswith("4633458b-17de-408a-b874-0445c86b69e6"):
            return ra
    raise AssertionError("no Secrets User assignment")


def test_role_assignment_deleted(env: Env) -> None:
    ra = _secrets_user_assignment(env)
    env.client(AuthorizationManagementClient).role_assignments.delete_by_id(ra.id)
    assert_drift_then_fixed(
        env,
        "azure.role.secrets-user",
        "Azure",
        "critical",
        Step.ROLE_ASSIGNMENT,
        live_chain=("Azure", "ForbiddenByRbac"),
    )


def test_broader_role_is_reported_not_removed(env: Env) -> None:
    auth = env.client(AuthorizationManagementClient)
    pid = env.identity().principal_id
    ra = auth.role_assignments.create(
        env.names.resource_group_id,
        str(uuid.uuid4()),
        {
            "properties": {
                "roleDefinitionId": env.names.role_definition_id(CONTRIBUTOR),
                "principalId": pid,
                "principalType": "ServicePrincipal",
            }
        },
    )
    doc = env.validate()
    row = problems(doc)["azure.role.no-broader"]
    assert (row["layer"], row["severity"], row["step"]) == ("Azure", "high", None)
    assert "Contributor" in row["actual"] and env.names.resource_group in row["actual"]
    after = env.validate(remediate=True)
    assert "azure.role.no-broader" in problems(after)  # reported, never silently removed
    assert auth.role_assignments.get_by_id(ra.id) is not None
    auth.role_assignments.delete_by_id(ra.id)  # a person decides
    assert problems(env.validate()) == {}


def test_vault_rbac_switched_off(env: Env) -> None:
    kv = env.client(KeyVaultManagementClient)
    vault = to_rest(kv.vaults.get(env.names.resource_group, env.names.key_vault))
    props = {
        k: v
        for k, v in vault["properties"].items()
        if k not in ("provisioningState", "vaultUri", "hsmPoolResourceId")
    }
    props["enableRbacAuthorization"] = False
    props.setdefault("accessPolicies", [])
    kv.vaults.begin_create_or_update(
        env.names.resource_group,
        env.names.key_vault,
        {"location": vault["location"], "tags": vault.get("tags"), "properties": props},
    ).result()
    assert_drift_then_fixed(env, "azure.key-vault.rbac", "Azure", "critical", Step.KEY_VAULT)


def test_seeded_secret_deleted(env: Env) -> None:
    vault = env.client(KeyVaultManagementClient).vaults.get(env.names.resource_group, env.names.key_vault)
    sc: SecretClient = env.creds.get_secret_client(vault.properties.vault_uri)
    sc.begin_delete_secret("api-key").wait()
    assert_drift_then_fixed(env, "azure.key-vault.secret/api-key", "Azure", "critical", Step.SEED_SECRETS)


def test_extension_setting_changed(env: Env) -> None:
    ext_client = env.client(SourceControlConfigurationClient)
    args = (env.names.resource_group, "Microsoft.ContainerService", "managedClusters", env.names.cluster)
    ext = ext_client.extensions.get(*args, env.spec.extension.name)
    key = env.spec.extension.key_map.workload_identity_client_id
    settings = dict(ext.configuration_settings or {})
    settings[key] = str(uuid.uuid4())
    body = ext.as_dict()
    ext_client.extensions.begin_create(
        *args,
        env.spec.extension.name,
        {
            "properties": {
                "extensionType": body["extension_type"],
                "autoUpgradeMinorVersion": body.get("auto_upgrade_minor_version"),
                "releaseTrain": body.get("release_train"),
                "version": body.get("version"),
                "scope": {"cluster": {"releaseNamespace": env.spec.extension.namespace}},
                "configurationSettings": settings,
            }
        },
    ).result()
    assert_drift_then_fixed(env, f"azure.extension.setting/{key}", "Azure", "critical", Step.EXTENSION)


def test_managed_resource_edited_by_hand(env: Env) -> None:
    g = env.spec.gitops
    ns = env.spec.extension.namespace
    # Someone turns auto-sync off and scales a Deployment the Application manages.
    env.kubectl("patch", "application", g.application, "-n", ns, "--type", "json", "-p",
                '[{"op": "remove", "path": "/spec/syncPolicy/automated"}]')  # fmt: skip
    deployments = env.kubectl("get", "deployments", "-n", g.destination_namespace, "-o", "name").split()
    assert deployments
    env.kubectl("scale", deployments[0], "-n", g.destination_namespace, "--replicas=3")

    def out_of_sync() -> bool:
        status = env.kubectl(
            "get", "application", g.application, "-n", ns, "-o", "jsonpath={.status.sync.status}"
        )
        return status == "OutOfSync"

    wait_until(out_of_sync, what="Application OutOfSync", timeout=60)
    fixed = assert_drift_then_fixed(
        env, "argocd.application.sync", "Argo CD", "medium", Step.APPLICATION, hint_words=("edited by hand",)
    )
    assert "cluster" not in {c["step"] for c in fixed["remediation"]["changes"] if c["change"] != "unchanged"}


def test_validation_artifacts_are_keyed_per_environment(env: Env, creds_block: str) -> None:
    import json

    from prefect.blocks.system import Secret
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterKey,
        LogFilter,
        LogFilterFlowRunId,
    )

    # A drifted run (so every row, hint and the failure message are published), then a passing one.
    app = env.spec.sample_app
    env.kubectl(
        "annotate",
        "serviceaccount",
        app.service_account,
        "-n",
        app.namespace,
        "azure.workload.identity/client-id-",
    )
    state = validate(spec=env.spec, credentials_block=env.block, return_state=True)
    assert state.is_failed() and "drift" in (state.message or "")
    doc = env.validate(remediate=True)
    assert doc["exit_code"] == 0
    key = f"validation-{env.spec.environment}"
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[key, f"validation-summary-{env.spec.environment}"])
            )
        )
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[state.state_details.flow_run_id]))
        )
    kinds = {(a.key, a.type) for a in arts}
    assert (key, "table") in kinds and (f"validation-summary-{env.spec.environment}", "markdown") in kinds
    # Canary: no secret value in the report, the artifacts, the run's logs or its state message (P24, P28).
    published = json.dumps(doc) + "".join(str(a.data) for a in arts) + "".join(log.message for log in logs)
    published += state.message or ""
    assert logs and any("DRIFT" in log.message for log in logs)
    for block in env.spec.secrets.values():
        value = Secret.load(block).get()
        assert value and str(value) not in published
