"""The keyless chain through the Key Vault CSI addon (sandbox/k8s/controllers/keyvault_csi.py).

Positive: ServiceAccount token -> real ClientAssertionCredential at the sandbox Entra with the
SecretProviderClass clientID -> real SecretClient read allowed by RBAC -> SecretProviderClassPodStatus
+ synced Secret. Negative: each broken link fails as AKS shows it (PITFALLS P6, P7, P11-P13).
Identities, federated credentials, the vault, secrets and role assignments are made with the real
azure-mgmt SDKs against the sandbox ARM.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from azure.keyvault.secrets import SecretClient
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.keyvault import KeyVaultManagementClient
from azure.mgmt.msi import ManagedServiceIdentityClient
from azure.mgmt.resource.resources import ResourceManagementClient

from sandbox.arm.testing import credential, mgmt_client
from sandbox.k8s.store import ClusterStore
from sandbox.server import Sandbox
from tests.sandbox.controllers_support import deployment, kubeconfig, kubectl, make_cluster, wait_until

OFFICER = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"  # Key Vault Secrets Officer
USER = "4633458b-17de-408a-b874-0445c86b69e6"  # Key Vault Secrets User
AUDIENCE = "api://AzureADTokenExchange"
SPC_API = "secrets-store.csi.x-k8s.io/v1"
SECRETS = {"database-connection-string": "Server=db;Password=not-a-real-one", "api-key": "k-123"}


@dataclass
class Chain:
    conn: dict[str, Any]
    store: ClusterStore
    issuer: str
    group: str
    vault: str
    vault_id: str
    msi: ManagedServiceIdentityClient
    auth: AuthorizationManagementClient
    good: Any  # identity with Key Vault Secrets User at vault scope
    norole: Any  # identity without any role
    cluster: str


def _assign(
    auth: AuthorizationManagementClient, conn: dict[str, Any], scope: str, role: str, principal: str
) -> None:
    role_id = (
        f"/subscriptions/{conn['subscription_id']}/providers/Microsoft.Authorization/roleDefinitions/{role}"
    )
    auth.role_assignments.create(
        scope,
        str(uuid.uuid5(uuid.NAMESPACE_URL, f"{scope}|{role}|{principal}")),
        {"role_definition_id": role_id, "principal_id": principal, "principal_type": "ServicePrincipal"},
    )


@pytest.fixture(scope="module")
def chain(sandbox: Sandbox, conn: dict[str, Any]) -> Chain:
    suffix = uuid.uuid4().hex[:6]
    store = make_cluster(sandbox, f"aks-csi-{suffix}", keyvault=True)
    issuer = sandbox.ctx.services["k8s"].issuer_url(store.key)
    rm = mgmt_client(ResourceManagementClient, conn)
    group = f"rg-csi-{suffix}"
    rm.resource_groups.create_or_update(group, {"location": "eastus"})
    kv = mgmt_client(KeyVaultManagementClient, conn)
    vault_name = f"kv-csi-{suffix}"
    vault = kv.vaults.begin_create_or_update(
        group,
        vault_name,
        {
            "location": "eastus",
            "properties": {
                "tenantId": conn["tenant_id"],
                "sku": {"family": "A", "name": "standard"},
                "enableRbacAuthorization": True,
            },
        },
    ).result(timeout=30)
    auth = mgmt_client(AuthorizationManagementClient, conn)
    me = jwt.decode(
        credential(conn).get_token("https://management.azure.com/.default").token,
        options={"verify_signature": False},
    )["oid"]
    _assign(auth, conn, vault.id, OFFICER, me)
    client = SecretClient(
        vault.properties.vault_uri,
        credential(conn),
        verify_challenge_resource=False,
        connection_verify=conn["ca_bundle"],
        retry_backoff_factor=0.05,
    )
    for name, value in SECRETS.items():
        client.set_secret(name, value)
    msi = mgmt_client(ManagedServiceIdentityClient, conn)
    good = msi.user_assigned_identities.create_or_update(group, "id-app", {"location": "eastus"})
    norole = msi.user_assigned_identities.create_or_update(group, "id-norole", {"location": "eastus"})
    _assign(auth, conn, vault.id, USER, good.principal_id)
    return Chain(
        conn, store, issuer, group, vault_name, vault.id, msi, auth, good, norole, f"aks-csi-{suffix}"
    )


_CREATED: list[tuple[ClusterStore, str]] = []


@pytest.fixture(autouse=True)
def _delete_namespaces() -> Iterator[None]:
    """Failed mounts retry forever (as the kubelet does): delete each test's namespace afterwards, so
    no retries keep calling Entra and Key Vault while later tests read the shared journal."""
    yield
    while _CREATED:
        store, ns = _CREATED.pop()
        if store.find("v1", "Namespace", ns) is not None:
            store.delete("v1", "Namespace", ns)


def _fic(
    c: Chain, identity: str, name: str, subject: str, *, issuer: str | None = None, audience: str = AUDIENCE
) -> None:
    c.msi.federated_identity_credentials.create_or_update(
        c.group,
        identity,
        name,
        {"properties": {"issuer": issuer or c.issuer, "subject": subject, "audiences": [audience]}},
    )


def _spc(ns: str, *, params: dict[str, str], secret_objects: bool = True) -> dict[str, Any]:
    objects = "array:\n" + "".join(
        f'  - |\n    objectName: {n}\n    objectType: secret\n    objectVersion: ""\n' for n in SECRETS
    )
    spec: dict[str, Any] = {
        "provider": "azure",
        "parameters": {"usePodIdentity": "false", "objects": objects, **params},
    }
    if secret_objects:
        spec["secretObjects"] = [
            {
                "secretName": "sample-app-secrets",
                "type": "Opaque",
                "data": [
                    {"objectName": "database-connection-string", "key": "database-connection-string"},
                    {"objectName": "api-key", "key": "api-key"},
                ],
            }
        ]
    return {
        "apiVersion": SPC_API,
        "kind": "SecretProviderClass",
        "metadata": {"name": "sample-app-secrets", "namespace": ns},
        "spec": spec,
    }


def _deploy(
    c: Chain,
    ns: str,
    *,
    client_id: str,
    spc_params: dict[str, str] | None = None,
    label: bool = True,
    secret_objects: bool = True,
    env_from_secret: bool = True,
    sa: str = "sample-app-sa",
) -> None:
    """The recipe's step 8-9 objects, fixed (clientID, secretObjects; P11, P12)."""
    st = c.store
    st.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    _CREATED.append((st, ns))
    st.create(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {
                "name": sa,
                "namespace": ns,
                "annotations": {"azure.workload.identity/client-id": client_id},
            },
        }
    )
    params = {
        "useVMManagedIdentity": "false",
        "clientID": client_id,
        "keyvaultName": c.vault,
        "tenantId": c.conn["tenant_id"],
    }
    if spc_params is not None:
        params = spc_params
    st.create(_spc(ns, params=params, secret_objects=secret_objects))
    env = (
        [
            {
                "name": "DATABASE_CONNECTION_STRING",
                "valueFrom": {
                    "secretKeyRef": {"name": "sample-app-secrets", "key": "database-connection-string"}
                },
            }
        ]
        if env_from_secret
        else None
    )
    volumes = [
        {
            "name": "secrets-store",
            "csi": {
                "driver": "secrets-store.csi.k8s.io",
                "readOnly": True,
                "volumeAttributes": {"secretProviderClass": "sample-app-secrets"},
            },
        }
    ]
    labels = {"azure.workload.identity/use": "true"} if label else {}
    st.create(deployment("sample-app", ns, env=env, labels=labels, sa=sa, volumes=volumes))


def _pod(st: ClusterStore, ns: str) -> dict[str, Any] | None:
    pods = st.list("v1", "Pod", ns)[0]
    return pods[0] if pods else None


def _failed_mount(st: ClusterStore, ns: str, needle: str, timeout: float = 20) -> str:
    def find() -> str | None:
        for e in st.list("v1", "Event", ns)[0]:
            if e["reason"] == "FailedMount" and needle in e["message"]:
                return str(e["message"])
        return None

    return wait_until(find, timeout=timeout, interval=0.05, what=f"FailedMount with {needle!r}")


def _assert_not_ready(st: ClusterStore, ns: str) -> None:
    pod = _pod(st, ns)
    assert pod is not None
    assert pod["status"]["phase"] == "Pending"
    waiting = pod["status"]["containerStatuses"][0]["state"]["waiting"]
    assert waiting["reason"] == "ContainerCreating"
    assert (
        st.find(
            SPC_API, "SecretProviderClassPodStatus", f"{pod['metadata']['name']}-{ns}-sample-app-secrets", ns
        )
        is None
    )


def test_keyless_chain_mounts_and_syncs_the_secret(
    sandbox: Sandbox, chain: Chain, unique: str, tmp_path: Path
) -> None:
    ns = f"ok-{unique}"
    _fic(chain, "id-app", f"fic-{ns}", f"system:serviceaccount:{ns}:sample-app-sa")
    _deploy(chain, ns, client_id=chain.good.client_id)
    st = chain.store
    wait_until(
        lambda: (
            (d := st.get("apps/v1", "Deployment", "sample-app", ns))
            and any(
                c["type"] == "Available" and c["status"] == "True"
                for c in (d.get("status") or {}).get("conditions", [])
            )
        ),
        timeout=20,
        what="sample-app Available",
    )
    pod = _pod(st, ns)
    assert pod is not None
    status = st.get(
        SPC_API, "SecretProviderClassPodStatus", f"{pod['metadata']['name']}-{ns}-sample-app-secrets", ns
    )
    assert status["status"]["mounted"] is True
    assert status["status"]["podName"] == pod["metadata"]["name"]
    assert sorted(o["id"] for o in status["status"]["objects"]) == [
        "secret/api-key",
        "secret/database-connection-string",
    ]
    assert all(o["version"] for o in status["status"]["objects"])
    assert status["metadata"]["ownerReferences"][0]["uid"] == pod["metadata"]["uid"]
    secret = st.get("v1", "Secret", "sample-app-secrets", ns)
    assert secret["metadata"]["labels"]["secrets-store.csi.k8s.io/managed"] == "true"
    assert set(secret["data"]) == {"database-connection-string", "api-key"}
    # the values arrived (compare hashes, never print them)
    import base64
    import hashlib

    got = hashlib.sha256(base64.b64decode(secret["data"]["api-key"])).hexdigest()
    assert got == hashlib.sha256(SECRETS["api-key"].encode()).hexdigest()
    # the recipe's validation with kubectl: the account, the pod status object, the synced Secret
    config = kubeconfig(sandbox, chain.cluster, tmp_path)
    sa_yaml = kubectl(config, "get", "serviceaccount", "sample-app-sa", "-n", ns, "-o", "yaml").stdout
    assert f"azure.workload.identity/client-id: {chain.good.client_id}" in sa_yaml
    ids = kubectl(
        config,
        "get",
        "secretproviderclasspodstatuses",
        "-n",
        ns,
        "-o",
        "jsonpath={.items[0].status.objects[*].id}",
    ).stdout
    assert sorted(ids.split()) == ["secret/api-key", "secret/database-connection-string"]
    keys = kubectl(config, "get", "secret", "sample-app-secrets", "-n", ns, "-o", "jsonpath={.data}").stdout
    assert "database-connection-string" in keys and "api-key" in keys
    # the synced Secret lives only while a pod mounts it (P12): scale to zero -> it is collected
    dep = st.get("apps/v1", "Deployment", "sample-app", ns)
    dep["spec"]["replicas"] = 0
    st.update(dep)
    wait_until(
        lambda: st.find("v1", "Secret", "sample-app-secrets", ns) is None,
        timeout=20,
        what="synced Secret garbage-collected",
    )


def test_wrong_issuer_fails_with_aadsts70021_then_heals(chain: Chain, unique: str) -> None:
    ns = f"iss-{unique}"
    subject = f"system:serviceaccount:{ns}:sample-app-sa"
    _fic(chain, "id-app", f"fic-{ns}", subject, issuer=chain.issuer.rstrip("/"))  # P7: the trailing slash
    _deploy(chain, ns, client_id=chain.good.client_id)
    msg = _failed_mount(chain.store, ns, "AADSTS70021")
    pod = _pod(chain.store, ns)
    assert pod is not None
    assert msg.startswith(
        'MountVolume.SetUp failed for volume "secrets-store" : rpc error: code = Unknown desc = '
        f"failed to mount secrets store objects for pod {ns}/{pod['metadata']['name']}, err: "
    )
    assert "failed to get objectType:secret, objectName:" in msg
    _assert_not_ready(chain.store, ns)
    # fix the link: the kubelet's retry with backoff heals the pod
    _fic(chain, "id-app", f"fic-{ns}", subject)
    wait_until(
        lambda: (p := _pod(chain.store, ns)) and p["status"].get("phase") == "Running",
        timeout=30,
        what="pod Running after the FIC was fixed",
    )


def test_wrong_subject_fails(chain: Chain, unique: str) -> None:
    ns = f"sub-{unique}"
    _fic(chain, "id-app", f"fic-{ns}", f"system:serviceaccount:{ns}:other-sa")
    _deploy(chain, ns, client_id=chain.good.client_id)
    msg = _failed_mount(chain.store, ns, "AADSTS70021")
    assert f"Assertion Subject: 'system:serviceaccount:{ns}:sample-app-sa'" in msg
    _assert_not_ready(chain.store, ns)


def test_wrong_audience_fails(chain: Chain, unique: str) -> None:
    ns = f"aud-{unique}"
    _fic(chain, "id-app", f"fic-{ns}", f"system:serviceaccount:{ns}:sample-app-sa", audience="api://Other")
    _deploy(chain, ns, client_id=chain.good.client_id)
    _failed_mount(chain.store, ns, "AADSTS70021")
    _assert_not_ready(chain.store, ns)


def test_missing_role_assignment_is_forbidden_by_rbac(chain: Chain, unique: str) -> None:
    ns = f"role-{unique}"
    _fic(chain, "id-norole", f"fic-{ns}", f"system:serviceaccount:{ns}:sample-app-sa")
    _deploy(chain, ns, client_id=chain.norole.client_id)
    msg = _failed_mount(chain.store, ns, "ForbiddenByRbac")
    assert SECRETS["api-key"] not in msg
    _assert_not_ready(chain.store, ns)


def test_wrong_client_id_fails(chain: Chain, unique: str) -> None:
    ns = f"cid-{unique}"
    _fic(chain, "id-app", f"fic-{ns}", f"system:serviceaccount:{ns}:sample-app-sa")
    _deploy(chain, ns, client_id=str(uuid.uuid4()))
    msg = _failed_mount(chain.store, ns, "AADSTS")
    assert "AADSTS700016" in msg or "AADSTS70021" in msg
    _assert_not_ready(chain.store, ns)


def test_user_assigned_identity_id_instead_of_client_id_fails(chain: Chain, unique: str) -> None:
    # P11: the recipe's SecretProviderClass: no workload identity without clientID
    ns = f"uai-{unique}"
    _fic(chain, "id-app", f"fic-{ns}", f"system:serviceaccount:{ns}:sample-app-sa")
    _deploy(
        chain,
        ns,
        client_id=chain.good.client_id,
        spc_params={
            "useVMManagedIdentity": "false",
            "userAssignedIdentityID": chain.good.client_id,
            "keyvaultName": chain.vault,
            "tenantId": chain.conn["tenant_id"],
        },
    )
    msg = _failed_mount(chain.store, ns, "nodePublishSecretRef")
    assert msg.endswith(
        "failed to mount objects, error: failed to create auth config, error: "
        "failed to get credentials, nodePublishSecretRef secret is not set"
    )
    _assert_not_ready(chain.store, ns)


def test_missing_secret_objects_gives_create_container_config_error(chain: Chain, unique: str) -> None:
    # P12: the mount works, but nothing creates the Secret the env var reads
    ns = f"sobj-{unique}"
    _fic(chain, "id-app", f"fic-{ns}", f"system:serviceaccount:{ns}:sample-app-sa")
    _deploy(chain, ns, client_id=chain.good.client_id, secret_objects=False)

    def config_error() -> str | None:
        pod = _pod(chain.store, ns)
        statuses = (pod or {}).get("status", {}).get("containerStatuses") or [{}]
        waiting = statuses[0].get("state", {}).get("waiting") or {}
        return waiting.get("message") if waiting.get("reason") == "CreateContainerConfigError" else None

    assert wait_until(config_error, timeout=20) == 'secret "sample-app-secrets" not found'
    pod = _pod(chain.store, ns)
    assert pod is not None
    assert (
        chain.store.find(
            SPC_API, "SecretProviderClassPodStatus", f"{pod['metadata']['name']}-{ns}-sample-app-secrets", ns
        )
        is not None
    )


def test_pod_label_matters_for_the_webhook_not_for_the_csi_mount(chain: Chain, unique: str) -> None:
    # P13: without the pod label the app gets no AZURE_* env (its own SDK calls would fail), while
    # the CSI provider, which asks the kubelet for the token itself, still mounts.
    ns = f"lbl-{unique}"
    _fic(chain, "id-app", f"fic-{ns}", f"system:serviceaccount:{ns}:sample-app-sa")
    _deploy(chain, ns, client_id=chain.good.client_id, label=False)
    pod = wait_until(
        lambda: (p := _pod(chain.store, ns)) and p["status"].get("phase") == "Running" and p, timeout=20
    )
    env = {e["name"] for e in pod["spec"]["containers"][0].get("env", [])}
    assert "AZURE_CLIENT_ID" not in env and "AZURE_FEDERATED_TOKEN_FILE" not in env
    labelled_ns = f"lbl2-{unique}"
    _fic(chain, "id-app", f"fic-{labelled_ns}", f"system:serviceaccount:{labelled_ns}:sample-app-sa")
    _deploy(chain, labelled_ns, client_id=chain.good.client_id, label=True)
    pod = wait_until(lambda: _pod(chain.store, labelled_ns))
    env = {e["name"] for e in pod["spec"]["containers"][0].get("env", [])}
    assert {"AZURE_CLIENT_ID", "AZURE_FEDERATED_TOKEN_FILE"} <= env


def test_fresh_federated_credential_propagates_then_the_mount_heals(
    fresh_sandbox: Sandbox, chain: Chain, unique: str
) -> None:
    # P6: right after FIC creation the exchange fails with AADSTS70021; the kubelet retries with backoff
    fresh_sandbox.ctx.clock.overrides = {"propagation.federated_credential": 1.5}
    ns = f"prop-{unique}"
    _fic(chain, "id-app", f"fic-{ns}", f"system:serviceaccount:{ns}:sample-app-sa")
    _deploy(chain, ns, client_id=chain.good.client_id)
    _failed_mount(chain.store, ns, "AADSTS70021")
    wait_until(
        lambda: (p := _pod(chain.store, ns)) and p["status"].get("phase") == "Running",
        timeout=15,
        what="mount healed after the propagation window",
    )


def test_without_the_addon_the_csi_driver_is_not_registered(sandbox: Sandbox, unique: str) -> None:
    st = make_cluster(sandbox, f"aks-noaddon-{unique}", keyvault=False)
    st.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "app"}})
    volumes = [
        {
            "name": "secrets-store",
            "csi": {
                "driver": "secrets-store.csi.k8s.io",
                "readOnly": True,
                "volumeAttributes": {"secretProviderClass": "x"},
            },
        }
    ]
    st.create(deployment("app", "app", volumes=volumes))
    msg = _failed_mount(st, "app", "not found in the list of registered CSI drivers")
    assert msg == (
        'MountVolume.SetUp failed for volume "secrets-store" : kubernetes.io/csi: mounter.SetUpAt '
        "failed to get CSI client: driver name secrets-store.csi.k8s.io not found in the list of "
        "registered CSI drivers"
    )
    pod = _pod(st, "app")
    assert pod is not None and pod["status"]["phase"] == "Pending"
