"""The Argo CD extension and its Application controller (sandbox/k8s/controllers/argocd.py).

Sources: azure-specs/argocd-extension-notes.md (keys per version, HA node minimums), PITFALLS P15-P17,
P19, P23; argoproj/argo-cd types.go and gitops-engine health checks.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from sandbox.k8s.controllers import gitrepos
from sandbox.k8s.store import ClusterStore
from sandbox.server import Sandbox
from tests.sandbox.controllers_support import kubeconfig, kubectl, make_cluster, wait_until

APP = ("argoproj.io/v1alpha1", "Application")
STORE_DEMO = "https://github.com/Azure-Samples/aks-store-demo.git"


@pytest.fixture(scope="module")
def store(sandbox: Sandbox) -> ClusterStore:
    st = make_cluster(sandbox, "aks-argocd", nodes=2)
    _install(sandbox, st, "1.0.0-preview", {"redis-ha.enabled": "false"})
    return st


def _install(sb: Sandbox, st: ClusterStore, version: str | None, settings: dict[str, Any]) -> None:
    sb.ctx.services["k8s.extensions"].ensure_extension(
        st,
        name="argocd",
        extension_type="Microsoft.ArgoCD",
        version=version,
        release_train="preview",
        configuration_settings=settings,
    )


def _app(
    name: str,
    dest: str,
    *,
    path: str = "kustomize/overlays/dev",
    repo: str = STORE_DEMO,
    self_heal: bool = True,
    prune: bool = True,
    create_ns: bool = True,
    finalizer: bool = False,
    automated: bool = True,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "project": "default",
        "source": {"repoURL": repo, "targetRevision": "HEAD", "path": path},
        "destination": {"server": "https://kubernetes.default.svc", "namespace": dest},
        "syncPolicy": {},
    }
    if automated:
        spec["syncPolicy"]["automated"] = {"prune": prune, "selfHeal": self_heal}
    if create_ns:
        spec["syncPolicy"]["syncOptions"] = ["CreateNamespace=true"]
    meta: dict[str, Any] = {"name": name, "namespace": "argocd"}
    if finalizer:
        meta["finalizers"] = ["resources-finalizer.argocd.argoproj.io"]
    return {"apiVersion": APP[0], "kind": APP[1], "metadata": meta, "spec": spec}


def _status(st: ClusterStore, name: str) -> dict[str, Any]:
    return st.get(*APP, name, "argocd").get("status") or {}


def _synced_healthy(st: ClusterStore, name: str, timeout: float = 60) -> dict[str, Any]:
    return wait_until(
        lambda: (
            (s := _status(st, name)).get("sync", {}).get("status") == "Synced"
            and s.get("health", {}).get("status") == "Healthy"
            and s
        ),
        timeout=timeout,
        interval=0.1,
        what=f"Application {name} Synced/Healthy",
    )


def test_ha_on_too_few_nodes_fails_like_helm(sandbox: Sandbox) -> None:
    st = make_cluster(sandbox, "aks-argo-ha", nodes=3)
    with pytest.raises(ValueError, match=r"^Helm installation failed: context deadline exceeded$"):
        _install(sandbox, st, "1.0.0-preview", {})  # HA is the extension's default; 1.0.0+ needs 4 nodes
    assert st.find("v1", "Namespace", "argocd") is None
    _install(sandbox, st, "0.0.7-preview", {})  # 0.0.x needs 3 nodes: HA installs
    assert st.find("apps/v1", "StatefulSet", "argocd-redis-ha-server", "argocd") is not None


def test_install_creates_namespace_accounts_crds_and_default_project(sandbox: Sandbox) -> None:
    st = make_cluster(sandbox, "aks-argo-wi", nodes=2)
    _install(
        sandbox,
        st,
        "1.0.0-preview",
        {
            "redis-ha.enabled": "false",
            "azure.workloadIdentity.enabled": "true",
            "azure.workloadIdentity.clientId": "c0ffee00-0000-0000-0000-000000000001",
            "configs.params.application\\.namespaces": "default, argocd",
        },
    )
    for sa in (
        "argocd-application-controller",
        "argocd-server",
        "argocd-repo-server",
        "argocd-applicationset-controller",
        "argocd-notifications-controller",
        "argocd-dex-server",
    ):
        obj = st.get("v1", "ServiceAccount", sa, "argocd")
        annotated = obj["metadata"].get("annotations", {}).get("azure.workload.identity/client-id")
        if sa in ("argocd-application-controller", "argocd-server", "argocd-repo-server"):
            assert annotated == "c0ffee00-0000-0000-0000-000000000001"
            assert obj["metadata"]["labels"]["azure.workload.identity/use"] == "true"
        else:
            assert annotated is None
    for crd in ("applications.argoproj.io", "appprojects.argoproj.io"):
        assert st.find("apiextensions.k8s.io/v1", "CustomResourceDefinition", crd) is not None
    assert st.get("argoproj.io/v1alpha1", "AppProject", "default", "argocd")["spec"]["sourceRepos"] == ["*"]
    params = st.get("v1", "ConfigMap", "argocd-cmd-params-cm", "argocd")
    assert params["data"] == {"application.namespaces": "default, argocd"}
    # the labelled pod templates run through the workload-identity webhook
    pod = wait_until(
        lambda: [
            p for p in st.list("v1", "Pod", "argocd")[0] if p["metadata"]["name"].startswith("argocd-server-")
        ]
    )[0]
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0].get("env", [])}
    assert env["AZURE_CLIENT_ID"] == "c0ffee00-0000-0000-0000-000000000001"
    # P14: a hand edit of the annotation is reverted by the next extension update
    sa = st.get("v1", "ServiceAccount", "argocd-server", "argocd")
    sa["metadata"]["annotations"]["azure.workload.identity/client-id"] = "hand-edited"
    st.update(sa)
    _install(
        sandbox,
        st,
        "1.0.0-preview",
        {
            "redis-ha.enabled": "false",
            "azure.workloadIdentity.enabled": "true",
            "azure.workloadIdentity.clientId": "c0ffee00-0000-0000-0000-000000000001",
        },
    )
    sa = st.get("v1", "ServiceAccount", "argocd-server", "argocd")
    assert sa["metadata"]["annotations"]["azure.workload.identity/client-id"].startswith("c0ffee00")
    # delete_extension removes the release and the namespace
    sandbox.ctx.services["k8s.extensions"].delete_extension(st, "argocd")
    wait_until(lambda: st.find("v1", "Namespace", "argocd") is None, what="argocd namespace gone")


def test_keys_of_the_other_version_are_ignored(sandbox: Sandbox) -> None:
    # P16: the recipe's 0.0.x keys sent to 1.0.0-preview: no workload identity, and HA stays on
    st = make_cluster(sandbox, "aks-argo-keys", nodes=4)
    _install(
        sandbox,
        st,
        "1.0.0-preview",
        {
            "workloadIdentity.enable": "true",
            "workloadIdentity.clientId": "x",
            "deployWithHighAvailability": "false",
        },
    )
    sa = st.get("v1", "ServiceAccount", "argocd-server", "argocd")
    assert "azure.workload.identity/client-id" not in (sa["metadata"].get("annotations") or {})
    assert st.find("apps/v1", "StatefulSet", "argocd-redis-ha-server", "argocd") is not None


def test_aks_store_demo_dev_overlay_syncs_to_synced_and_healthy(
    sandbox: Sandbox, store: ClusterStore, unique: str, tmp_path: Path
) -> None:
    dest = f"store-{unique}"
    store.create(_app(f"store-{unique}", dest))
    status = _synced_healthy(store, f"store-{unique}")
    assert len(store.list("apps/v1", "Deployment", dest)[0]) == 7
    assert len(store.list("apps/v1", "StatefulSet", dest)[0]) == 2
    assert len(store.list("v1", "Service", dest)[0]) == 7
    assert len(status["resources"]) == 16
    assert all(r["status"] == "Synced" and r["health"]["status"] == "Healthy" for r in status["resources"])
    assert status["sourceType"] == "Kustomize"
    assert status["operationState"]["phase"] == "Succeeded"
    assert status["operationState"]["message"] == "successfully synced (all tasks run)"
    dep = store.get("apps/v1", "Deployment", "store-front", dest)
    assert dep["metadata"]["annotations"]["argocd.argoproj.io/tracking-id"] == (
        f"store-{unique}:apps/Deployment:{dest}/store-front"
    )
    # the mirror is one deterministic commit: a mirror built elsewhere has the same SHA
    gitrepos.ensure_builtin_mirrors(tmp_path)
    elsewhere = gitrepos.mirror_path(tmp_path, STORE_DEMO)
    assert elsewhere is not None
    assert status["sync"]["revision"] == gitrepos.resolve(elsewhere, "HEAD")
    # the mirror's commit stands for upstream 7ce10c5 (the vendored snapshot): reported by that SHA
    assert status["sync"]["revision"] == gitrepos.AKS_STORE_DEMO_UPSTREAM


def test_self_heal_restores_a_hand_edit(store: ClusterStore, unique: str) -> None:
    name, dest = f"heal-{unique}", f"heal-{unique}"
    store.create(_app(name, dest))
    _synced_healthy(store, name)
    dep = store.get("apps/v1", "Deployment", "order-service", dest)
    dep["spec"]["replicas"] = 3
    store.update(dep)
    wait_until(
        lambda: store.get("apps/v1", "Deployment", "order-service", dest)["spec"]["replicas"] == 1,
        what="selfHeal restores replicas",
    )
    _synced_healthy(store, name)


def test_without_self_heal_a_hand_edit_shows_out_of_sync(store: ClusterStore, unique: str) -> None:
    name, dest = f"drift-{unique}", f"drift-{unique}"
    store.create(_app(name, dest, self_heal=False))
    _synced_healthy(store, name)
    dep = store.get("apps/v1", "Deployment", "order-service", dest)
    dep["spec"]["replicas"] = 2
    store.update(dep)
    status = wait_until(
        lambda: (s := _status(store, name)).get("sync", {}).get("status") == "OutOfSync" and s
    )
    drifted = [r for r in status["resources"] if r["status"] == "OutOfSync"]
    assert [(r["kind"], r["name"]) for r in drifted] == [("Deployment", "order-service")]
    assert store.get("apps/v1", "Deployment", "order-service", dest)["spec"]["replicas"] == 2


def test_missing_destination_namespace_fails_the_sync(store: ClusterStore, unique: str) -> None:
    name = f"nons-{unique}"
    store.create(_app(name, f"absent-{unique}", create_ns=False))
    status = wait_until(
        lambda: (s := _status(store, name)).get("operationState", {}).get("phase") == "Failed" and s
    )
    assert status["operationState"]["message"] == (
        f'one or more objects failed to apply, reason: namespaces "absent-{unique}" not found'
    )
    assert status["sync"]["status"] == "OutOfSync"


def test_unknown_repository_is_a_comparison_error(store: ClusterStore, unique: str) -> None:
    name = f"norepo-{unique}"
    store.create(_app(name, name, repo="https://github.com/example/does-not-exist.git"))
    status = wait_until(lambda: (s := _status(store, name)).get("conditions") and s)
    assert status["conditions"][0]["type"] == "ComparisonError"
    assert "repository not found" in status["conditions"][0]["message"]
    assert status["sync"]["status"] == "Unknown"


def _git(*args: str, cwd: Path) -> None:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(cwd),
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    subprocess.run(
        ["git", "-c", "init.defaultBranch=main", *args], cwd=cwd, env=env, check=True, capture_output=True
    )


def _configmap(name: str) -> str:
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  k: v\n"


def test_plain_directory_prune_and_finalizer(
    sandbox: Sandbox, store: ClusterStore, unique: str, tmp_path: Path
) -> None:
    url = f"https://github.com/example/plain-{unique}.git"
    bare = gitrepos.mirror_path(sandbox.state_dir, url)
    assert bare is not None
    work = tmp_path / "work"
    (work / "manifests").mkdir(parents=True)
    (work / "manifests" / "a.yaml").write_text(_configmap("cm-a"))
    (work / "manifests" / "b.yaml").write_text(_configmap("cm-b"))
    _git("init", "-q", cwd=work)
    _git("add", "-A", cwd=work)
    _git("commit", "-q", "-m", "two", cwd=work)
    bare.parent.mkdir(parents=True, exist_ok=True)
    _git("clone", "-q", "--bare", str(work), str(bare), cwd=tmp_path)
    name, dest = f"plain-{unique}", f"plain-{unique}"
    store.create(_app(name, dest, repo=url, path="manifests", finalizer=True))
    status = _synced_healthy(store, name)
    assert status["sourceType"] == "Directory"
    assert {r["name"] for r in status["resources"]} == {"cm-a", "cm-b"}
    # a new commit drops b.yaml: automated prune deletes cm-b after a refresh
    (work / "manifests" / "b.yaml").unlink()
    _git("commit", "-q", "-am", "drop b", cwd=work)
    _git("push", "-q", str(bare), "HEAD:main", cwd=work)
    app = store.get(*APP, name, "argocd")
    app["metadata"].setdefault("annotations", {})["argocd.argoproj.io/refresh"] = "normal"
    store.update(app)
    wait_until(lambda: store.find("v1", "ConfigMap", "cm-b", dest) is None, what="cm-b pruned")
    assert store.find("v1", "ConfigMap", "cm-a", dest) is not None
    # P23: the resources finalizer deletes the app's resources before the Application goes
    store.delete(*APP, name, "argocd")
    wait_until(lambda: store.find(*APP, name, "argocd") is None, what="Application gone")
    assert store.find("v1", "ConfigMap", "cm-a", dest) is None


def test_kubectl_waits_on_sync_and_health_not_on_a_synced_condition(
    sandbox: Sandbox, store: ClusterStore, unique: str, tmp_path: Path
) -> None:
    """The recipe's step 10 Application through kubectl; P15: wait on status fields, not a condition."""
    config = kubeconfig(sandbox, "aks-argocd", tmp_path)
    name = f"sample-app-gitops-{unique}"
    app = _app(name, f"sample-{unique}")
    app["spec"]["source"]["targetRevision"] = gitrepos.AKS_STORE_DEMO_UPSTREAM  # pinned, as the pipeline does
    kubectl(config, "apply", "-f", "-", input_=yaml.safe_dump(app))
    kubectl(
        config,
        "wait",
        "--for=jsonpath={.status.sync.status}=Synced",
        f"application/{name}",
        "-n",
        "argocd",
        "--timeout=60s",
    )
    kubectl(
        config,
        "wait",
        "--for=jsonpath={.status.health.status}=Healthy",
        f"application/{name}",
        "-n",
        "argocd",
        "--timeout=60s",
    )
    revision = kubectl(
        config, "get", f"application/{name}", "-n", "argocd", "-o", "jsonpath={.status.sync.revision}"
    ).stdout
    assert revision == gitrepos.AKS_STORE_DEMO_UPSTREAM
    failed = kubectl(
        config,
        "wait",
        "--for=condition=Synced",
        f"application/{name}",
        "-n",
        "argocd",
        "--timeout=2s",
        check=False,
    )
    assert failed.returncode != 0  # the recipe's wait never succeeds (P15)
    listed = kubectl(
        config, "get", "deployments,statefulsets,services", "-n", f"sample-{unique}", "-o", "name"
    )
    kinds = [line.split("/")[0] for line in listed.stdout.split()]
    assert (kinds.count("deployment.apps"), kinds.count("statefulset.apps"), kinds.count("service")) == (
        7,
        2,
        7,
    )


def test_uninstalling_with_a_finalized_application_hangs_like_p23(sandbox: Sandbox) -> None:
    """P23: delete the extension before its Applications and nobody runs their finalizer any more."""
    st = make_cluster(sandbox, "aks-argo-p23", nodes=2)
    _install(sandbox, st, "1.0.0-preview", {"redis-ha.enabled": "false"})
    st.create(_app("stuck", "stuck-dest", finalizer=True))
    _synced_healthy(st, "stuck")
    sandbox.ctx.services["k8s.extensions"].delete_extension(st, "argocd")
    app = wait_until(
        lambda: (a := st.find(*APP, "stuck", "argocd")) and a["metadata"].get("deletionTimestamp") and a
    )
    assert app["metadata"]["finalizers"] == ["resources-finalizer.argocd.argoproj.io"]
    ns = st.get("v1", "Namespace", "argocd")
    assert ns["status"]["phase"] == "Terminating"
    assert st.find("apps/v1", "Deployment", "store-front", "stuck-dest") is not None  # resources stay
    # the way out the pipeline takes (teardown deletes Applications first): drop the finalizer by hand
    app["metadata"]["finalizers"] = []
    st.update(app)
    wait_until(lambda: st.find("v1", "Namespace", "argocd") is None, what="argocd namespace gone")


def test_extension_through_arm_installs_fails_on_ha_and_uninstalls(
    conn: dict[str, Any], unique: str, tmp_path: Path
) -> None:
    """The whole path: azure-mgmt-containerservice cluster, azure-mgmt-kubernetesconfiguration extension,
    kubectl with the kubeconfig ARM returns (P16, P17)."""
    from azure.core.exceptions import HttpResponseError
    from azure.mgmt.containerservice import ContainerServiceClient
    from azure.mgmt.kubernetesconfiguration import SourceControlConfigurationClient
    from azure.mgmt.resource.resources import ResourceManagementClient

    from sandbox.arm.testing import mgmt_client

    group = f"rg-argo-{unique}"
    mgmt_client(ResourceManagementClient, conn).resource_groups.create_or_update(
        group, {"location": "eastus"}
    )
    aks = mgmt_client(ContainerServiceClient, conn)
    aks.managed_clusters.begin_create_or_update(
        group,
        "aks-gitops",
        {
            "location": "eastus",
            "identity": {"type": "SystemAssigned"},
            "properties": {
                "dnsPrefix": "aks-gitops",
                "agentPoolProfiles": [
                    {"name": "system", "count": 2, "vmSize": "Standard_D2s_v5", "mode": "System"}
                ],
                "oidcIssuerProfile": {"enabled": True},
                "securityProfile": {"workloadIdentity": {"enabled": True}},
            },
        },
    ).result(timeout=60)
    config = tmp_path / "kubeconfig"
    config.write_bytes(
        aks.managed_clusters.list_cluster_user_credentials(group, "aks-gitops").kubeconfigs[0].value
    )
    ext = mgmt_client(SourceControlConfigurationClient, conn)
    args = (group, "Microsoft.ContainerService", "managedClusters", "aks-gitops", "argocd")
    base = {
        "extensionType": "Microsoft.ArgoCD",
        "autoUpgradeMinorVersion": False,
        "releaseTrain": "preview",
        "version": "1.0.0-preview",
    }
    # As on Azure (CreateExtension.json: 201 Creating + Azure-AsyncOperation), even at time_scale 0 the
    # failure reaches the client through the operation status: the poller raises, and the PUT's own
    # answer is the accepted state, never the terminal Failed.
    seen: list[Any] = []
    poller = ext.extensions.begin_create(
        *args, {"properties": base}, raw_response_hook=lambda r: seen.append(r.http_response)
    )
    with pytest.raises(HttpResponseError) as failed:
        poller.result(timeout=60)
    assert "Helm installation failed: context deadline exceeded" in str(failed.value)
    first = seen[0]
    assert (first.request.method, first.status_code) == ("PUT", 201)
    assert json.loads(first.text())["properties"]["provisioningState"] == "Creating"
    assert "api-version=2023-05-01" in first.headers["Azure-AsyncOperation"]
    assert int(first.headers["Retry-After"]) >= 1
    assert ext.extensions.get(*args).provisioning_state == "Failed"
    settings = {
        "redis-ha.enabled": "false",
        "azure.workloadIdentity.enabled": "true",
        "azure.workloadIdentity.clientId": "0000aaaa-0000-0000-0000-000000000002",
    }
    done = ext.extensions.begin_create(
        *args, {"properties": {**base, "configurationSettings": settings}}
    ).result(timeout=60)
    assert done.provisioning_state == "Succeeded"
    annotation = kubectl(
        config,
        "get",
        "serviceaccount",
        "argocd-repo-server",
        "-n",
        "argocd",
        "-o",
        "jsonpath={.metadata.annotations.azure\\.workload\\.identity/client-id}",
    ).stdout
    assert annotation == "0000aaaa-0000-0000-0000-000000000002"
    kubectl(
        config,
        "wait",
        "--for=condition=Available",
        "deployment/argocd-server",
        "-n",
        "argocd",
        "--timeout=30s",
    )
    ext.extensions.begin_delete(*args).result(timeout=60)
    gone = kubectl(config, "get", "namespace", "argocd", check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr


def test_manual_sync_through_the_operation_field(store: ClusterStore, unique: str) -> None:
    """Without automated sync the app stays OutOfSync/Missing until an operation asks for a sync
    (what ``argocd app sync`` writes)."""
    name, dest = f"manual-{unique}", f"manual-{unique}"
    store.create(_app(name, dest, automated=False))
    status = wait_until(
        lambda: (s := _status(store, name)).get("sync", {}).get("status") == "OutOfSync" and s
    )
    assert status["health"]["status"] == "Missing"
    assert "operationState" not in status
    app = store.get(*APP, name, "argocd")
    app["operation"] = {
        "sync": {"revision": "HEAD", "syncOptions": ["CreateNamespace=true"]},
        "initiatedBy": {"username": "admin"},
    }
    store.update(app)
    status = _synced_healthy(store, name)
    assert status["operationState"]["operation"]["initiatedBy"] == {"username": "admin"}
    assert "operation" not in store.get(*APP, name, "argocd")


def test_identity_reaches_running_argocd_pods_only_through_the_extension(sandbox: Sandbox) -> None:
    """P14: a hand annotation on the ServiceAccount changes no running pod; configuring workload
    identity through the extension rolls the pods, and the new ones are mutated."""
    st = make_cluster(sandbox, "aks-argo-p14", nodes=2)
    _install(sandbox, st, "1.0.0-preview", {"redis-ha.enabled": "false"})

    def server_pods() -> list[dict[str, Any]]:
        return [
            p for p in st.list("v1", "Pod", "argocd")[0] if p["metadata"]["name"].startswith("argocd-server-")
        ]

    def env(pod: dict[str, Any]) -> dict[str, str]:
        return {e["name"]: e.get("value", "") for e in pod["spec"]["containers"][0].get("env", [])}

    before = wait_until(server_pods)[0]
    sa = st.get("v1", "ServiceAccount", "argocd-server", "argocd")
    sa["metadata"]["annotations"]["azure.workload.identity/client-id"] = "by-hand"
    st.update(sa)
    assert "AZURE_CLIENT_ID" not in env(st.get("v1", "Pod", before["metadata"]["name"], "argocd"))
    _install(
        sandbox,
        st,
        "1.0.0-preview",
        {
            "redis-ha.enabled": "false",
            "azure.workloadIdentity.enabled": "true",
            "azure.workloadIdentity.clientId": "c1d2e3f4-0000-0000-0000-000000000003",
        },
    )
    after = wait_until(
        lambda: (
            [
                p
                for p in server_pods()
                if p["metadata"]["uid"] != before["metadata"]["uid"] and p["status"].get("phase") == "Running"
            ]
            == server_pods()
            and server_pods()
        )
    )
    assert env(after[0])["AZURE_CLIENT_ID"] == "c1d2e3f4-0000-0000-0000-000000000003"


def test_health_is_progressing_while_pods_start(
    fresh_sandbox: Sandbox, store: ClusterStore, unique: str
) -> None:
    """P19: with modelled image pulls the app is Synced but Progressing until its pods run."""
    fresh_sandbox.ctx.clock.overrides = {"pod.image_pull": 1.0, "pod.start": 0.2}
    name = f"slow-{unique}"
    store.create(_app(name, name))
    status = wait_until(lambda: (s := _status(store, name)).get("sync", {}).get("status") == "Synced" and s)
    assert status["health"]["status"] == "Progressing"
    waiting = [r for r in status["resources"] if r.get("health", {}).get("status") == "Progressing"]
    assert {r["kind"] for r in waiting} >= {"Deployment", "StatefulSet"}
    _synced_healthy(store, name, timeout=30)
