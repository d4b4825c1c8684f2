"""A sandbox cluster driven by the real kubectl 1.37 (``.venv/bin/kubectl``, CLIENT-FACTS.md).

Each test names what real kubectl sends and relies on: discovery, openapi/v3 + fieldValidation=Strict,
client-side apply (GET, POST, strategic merge patch), server-side apply (apply-patch+yaml with
conflicts), merge patches for annotate/label, watch-list with the initial-events-end bookmark
for ``kubectl wait``.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import yaml

from sandbox.server import Sandbox

KUBECTL = str(Path(sys.executable).parent / "kubectl")
FIXTURE = (
    Path(__file__).parents[2] / "sandbox" / "fixtures" / "aks-store-demo" / "kustomize" / "overlays" / "dev"
)
CRDS = Path(__file__).parents[2] / "sandbox" / "k8s" / "crds"


@pytest.fixture(scope="module")
def cluster(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    backend = sandbox.ctx.services["clusters"]
    name = f"aks-kubectl-{time.time_ns() % 100000}"
    cid = (
        f"/subscriptions/{sandbox.ctx.identity.subscription_id}/resourcegroups/rg-k8s"
        f"/providers/microsoft.containerservice/managedclusters/{name}"
    )
    backend.ensure_cluster(
        cid,
        name=name,
        location="eastus",
        oidc_issuer=True,
        workload_identity=True,
        keyvault_secrets_provider=True,
        node_count=2,
    )
    kube_dir = tmp_path_factory.mktemp("kube")
    kubeconfig = kube_dir / "config"
    kubeconfig.write_bytes(backend.kubeconfig(cid))
    yield {
        "id": cid,
        "kubeconfig": kubeconfig,
        "store": sandbox.ctx.services["k8s"].store(backend.key_for(cid)),
        "journal": sandbox.ctx.journal,
        "cache": kube_dir / "cache",
    }
    backend.delete_cluster(cid)


def kubectl(cluster: dict[str, Any], *args: str, stdin: str | None = None, check: bool = True) -> str:
    proc = subprocess.run(
        [KUBECTL, "--kubeconfig", str(cluster["kubeconfig"]), "--cache-dir", str(cluster["cache"]), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc.stdout + proc.stderr if not check else proc.stdout


def ns(cluster: dict[str, Any], unique: str) -> str:
    name = f"t-{unique}"
    kubectl(
        cluster, "apply", "-f", "-", stdin=f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n"
    )
    return name


def test_discovery_version_and_get(cluster: dict[str, Any]) -> None:
    assert "Server Version: v1.37.1" in kubectl(cluster, "version")
    resources = kubectl(cluster, "api-resources", "-o", "name")
    for r in (
        "pods",
        "deployments.apps",
        "statefulsets.apps",
        "customresourcedefinitions.apiextensions.k8s.io",
        "secretproviderclasses.secrets-store.csi.x-k8s.io",
        "serviceaccounts",
        "events",
    ):
        assert r in resources.split()
    out = kubectl(cluster, "get", "ns")
    assert "kube-system" in out and "Active" in out
    assert len(kubectl(cluster, "get", "nodes", "-o", "name").split()) == 2
    assert (
        kubectl(cluster, "get", "sa", "default", "-n", "default", "-o", "jsonpath={.metadata.name}")
        == "default"
    )


def test_unauthenticated_requests_get_401(cluster: dict[str, Any], tmp_path: Path) -> None:
    bad = yaml.safe_load(cluster["kubeconfig"].read_text())
    bad["users"][0]["user"]["token"] = "wrong"
    path = tmp_path / "bad"
    path.write_text(yaml.safe_dump(bad))
    proc = subprocess.run(
        [KUBECTL, "--kubeconfig", str(path), "get", "ns"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode != 0
    assert "Unauthorized" in proc.stderr or "provide credentials" in proc.stderr


def test_kustomize_dev_overlay_apply_is_idempotent(cluster: dict[str, Any], unique: str) -> None:
    """P19: 7 Deployments, 2 StatefulSets, 7 Services; a second apply changes nothing."""
    namespace = ns(cluster, unique)
    rendered = kubectl(cluster, "kustomize", str(FIXTURE))
    out = kubectl(cluster, "apply", "-n", namespace, "-f", "-", stdin=rendered)
    assert out.count(" created") == 16, out
    store = cluster["store"]
    assert len(store.list("apps/v1", "Deployment", namespace)[0]) == 7
    assert len(store.list("apps/v1", "StatefulSet", namespace)[0]) == 2
    assert len(store.list("v1", "Service", namespace)[0]) == 7
    journal = cluster["journal"]
    since = journal.last_seq
    again = kubectl(cluster, "apply", "-n", namespace, "-f", "-", stdin=rendered)
    assert again.count(" unchanged") == 16, again
    writes = [
        e for e in journal.entries(since, service="kubernetes", writes_only=True) if namespace in e.path
    ]
    assert writes == []


def test_apply_strict_field_validation_rejects_unknown_fields(cluster: dict[str, Any], unique: str) -> None:
    namespace = ns(cluster, unique)
    manifest = f"""apiVersion: v1
kind: ConfigMap
metadata:
  name: cm
  namespace: {namespace}
data: {{a: "1"}}
spec:
  foo: bar
"""
    out = kubectl(cluster, "apply", "-f", "-", stdin=manifest, check=False)
    assert 'strict decoding error: unknown field "spec"' in out
    assert cluster["store"].find("v1", "ConfigMap", "cm", namespace) is None


def test_annotate_label_get_yaml_jsonpath_delete(cluster: dict[str, Any], unique: str) -> None:
    namespace = ns(cluster, unique)
    kubectl(
        cluster,
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        stdin="""apiVersion: v1
kind: ServiceAccount
metadata:
  name: workload
  annotations:
    azure.workload.identity/client-id: 00000000-0000-0000-0000-000000000001
""",
    )
    kubectl(cluster, "annotate", "-n", namespace, "sa/workload", "team=platform")
    kubectl(cluster, "label", "-n", namespace, "sa/workload", "azure.workload.identity/use=true")
    doc = yaml.safe_load(kubectl(cluster, "get", "-n", namespace, "sa", "workload", "-o", "yaml"))
    assert doc["apiVersion"] == "v1" and doc["kind"] == "ServiceAccount"
    assert doc["metadata"]["annotations"]["team"] == "platform"
    assert doc["metadata"]["labels"] == {"azure.workload.identity/use": "true"}
    jp = "{.metadata.annotations.azure\\.workload\\.identity/client-id}"
    assert kubectl(cluster, "get", "-n", namespace, "sa", "workload", "-o", f"jsonpath={jp}") == (
        "00000000-0000-0000-0000-000000000001"
    )
    selected = kubectl(
        cluster, "get", "sa", "-n", namespace, "-l", "azure.workload.identity/use=true", "-o", "name"
    )
    assert selected.split() == ["serviceaccount/workload"]
    kubectl(cluster, "delete", "-n", namespace, "sa", "workload")
    assert cluster["store"].find("v1", "ServiceAccount", "workload", namespace) is None
    out = kubectl(cluster, "get", "-n", namespace, "sa", "workload", check=False)
    assert 'serviceaccounts "workload" not found' in out


def test_server_side_apply_conflicts_and_force(cluster: dict[str, Any], unique: str) -> None:
    namespace = ns(cluster, unique)

    def deployment(replicas: int) -> str:
        return f"""apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {namespace}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers: [{{name: web, image: nginx:1.27}}]
"""

    kubectl(cluster, "apply", "-f", "-", stdin=deployment(1))
    out = kubectl(cluster, "apply", "--server-side", "-f", "-", stdin=deployment(2), check=False)
    assert 'conflict with "kubectl-client-side-apply"' in out and ".spec.replicas" in out
    kubectl(cluster, "apply", "--server-side", "--force-conflicts", "-f", "-", stdin=deployment(3))
    obj = cluster["store"].get("apps/v1", "Deployment", "web", namespace)
    assert obj["spec"]["replicas"] == 3
    assert obj["metadata"]["generation"] == 2
    managers = {m["manager"]: m["operation"] for m in obj["metadata"]["managedFields"]}
    assert managers["kubectl"] == "Apply"


def test_wait_for_jsonpath_and_condition_on_custom_resources(cluster: dict[str, Any], unique: str) -> None:
    """``kubectl wait`` uses WatchList and needs the ``k8s.io/initial-events-end`` bookmark."""
    namespace = ns(cluster, unique)
    kubectl(cluster, "apply", "--server-side", "-f", str(CRDS / "application-crd.yaml"))
    kubectl(cluster, "wait", "--for=condition=Established", "crd/applications.argoproj.io", "--timeout=20s")
    kubectl(
        cluster,
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        stdin="""apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: demo}
spec:
  project: default
  source:
    repoURL: "https://github.com/Azure-Samples/aks-store-demo.git"
    targetRevision: main
    path: kustomize/overlays/dev
  destination: {server: "https://kubernetes.default.svc", namespace: demo}
""",
    )
    result: dict[str, str] = {}

    def waiter() -> None:
        result["out"] = kubectl(
            cluster,
            "wait",
            "-n",
            namespace,
            "application/demo",
            "--for=jsonpath={.status.health.status}=Healthy",
            "--timeout=30s",
            check=False,
        )

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(1.5)
    store = cluster["store"]
    app = store.get("argoproj.io/v1alpha1", "Application", "demo", namespace)
    app["status"] = {"sync": {"status": "Synced"}, "health": {"status": "Healthy"}}
    store.update(app)
    t.join(40)
    assert "condition met" in result["out"], result
    shown = kubectl(cluster, "get", "-n", namespace, "app", "demo")
    assert "Synced" in shown and "Healthy" in shown


WIDGET_CRD = """apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size: {type: integer, minimum: 1}
              extra: {type: object, x-kubernetes-preserve-unknown-fields: true}
          status:
            type: object
            properties:
              conditions:
                type: array
                items:
                  type: object
                  properties:
                    type: {type: string}
                    status: {type: string}
"""


WIDGET = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {{name: {name}}}\nspec: {spec}\n"


def test_wait_for_condition_through_the_status_subresource(cluster: dict[str, Any], unique: str) -> None:
    namespace = ns(cluster, unique)
    kubectl(cluster, "apply", "-f", "-", stdin=WIDGET_CRD)
    kubectl(cluster, "wait", "--for=condition=Established", "crd/widgets.example.com", "--timeout=20s")
    kubectl(
        cluster,
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        stdin="apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\nspec: {size: 1}\n",
    )
    store = cluster["store"]
    w = store.get("example.com/v1", "Widget", "w", namespace)
    w["status"] = {"conditions": [{"type": "Ready", "status": "True"}]}
    store.update_status(w)
    out = kubectl(cluster, "wait", "-n", namespace, "wd/w", "--for=condition=Ready", "--timeout=15s")
    assert "condition met" in out
    # the main resource cannot change status (status subresource); spec changes bump generation
    kubectl(
        cluster,
        "patch",
        "-n",
        namespace,
        "widget/w",
        "--type=merge",
        "-p",
        '{"status":{"conditions":[]},"spec":{"size":2}}',
    )
    after = store.get("example.com/v1", "Widget", "w", namespace)
    assert after["status"]["conditions"] == [{"type": "Ready", "status": "True"}]
    assert after["metadata"]["generation"] == 2
    # the CRD's openAPIV3Schema is enforced (422 with the field) and unknown fields are refused
    bad = kubectl(
        cluster,
        "patch",
        "-n",
        namespace,
        "widget/w",
        "--type=merge",
        "-p",
        '{"spec":{"size":0}}',
        check=False,
    )
    assert "is invalid" in bad and "spec.size" in bad
    unknown = kubectl(
        cluster,
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        check=False,
        stdin=WIDGET.format(name="w2", spec="{size: 1, colour: red}"),
    )
    assert 'unknown field "spec.colour"' in unknown
    kept = kubectl(
        cluster,
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        stdin=WIDGET.format(name="w3", spec="{size: 1, extra: {any: thing}}"),
    )
    assert "created" in kept
    assert store.get("example.com/v1", "Widget", "w3", namespace)["spec"]["extra"] == {"any": "thing"}


def test_namespace_deletion_waits_for_finalizers(cluster: dict[str, Any], unique: str) -> None:
    namespace = ns(cluster, unique)
    kubectl(
        cluster,
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        stdin="""apiVersion: v1
kind: ConfigMap
metadata: {name: held, finalizers: [example.com/hold]}
data: {a: b}
""",
    )
    kubectl(cluster, "delete", "ns", namespace, "--wait=false")
    phase = kubectl(cluster, "get", "ns", namespace, "-o", "jsonpath={.status.phase}")
    assert phase == "Terminating"
    kubectl(
        cluster,
        "patch",
        "-n",
        namespace,
        "cm",
        "held",
        "--type=json",
        "-p",
        '[{"op":"remove","path":"/metadata/finalizers"}]',
    )
    out = kubectl(cluster, "get", "ns", namespace, check=False)
    assert "not found" in out


def test_recipe_typed_create_commands(cluster: dict[str, Any], unique: str) -> None:
    """The recipe's ``kubectl create namespace/serviceaccount`` send protobuf bodies (kubectl 1.37)."""
    namespace = f"sample-app-{unique}"
    kubectl(cluster, "create", "namespace", namespace)
    kubectl(cluster, "create", "serviceaccount", "sample-app-sa", "-n", namespace)
    kubectl(
        cluster,
        "annotate",
        "serviceaccount",
        "sample-app-sa",
        "-n",
        namespace,
        "azure.workload.identity/client-id=11111111-2222-3333-4444-555555555555",
    )
    kubectl(
        cluster,
        "label",
        "serviceaccount",
        "sample-app-sa",
        "-n",
        namespace,
        "azure.workload.identity/use=true",
    )
    sa = yaml.safe_load(
        kubectl(cluster, "get", "serviceaccount", "sample-app-sa", "-n", namespace, "-o", "yaml")
    )
    assert sa["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    kubectl(cluster, "create", "secret", "generic", "s", "-n", namespace, "--from-literal=k=v")
    kubectl(cluster, "create", "configmap", "c", "-n", namespace, "--from-literal=k=v")
    store = cluster["store"]
    assert store.get("v1", "Secret", "s", namespace)["data"] == {"k": "dg=="}
    assert store.get("v1", "ConfigMap", "c", namespace)["data"] == {"k": "v"}
    token = kubectl(
        cluster,
        "create",
        "token",
        "sample-app-sa",
        "-n",
        namespace,
        "--audience",
        "api://AzureADTokenExchange",
    ).strip()
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["sub"] == f"system:serviceaccount:{namespace}:sample-app-sa"
    assert claims["aud"] == ["api://AzureADTokenExchange"]
    kubectl(cluster, "delete", "namespace", namespace)
    assert store.find("v1", "Namespace", namespace) is None


def test_client_side_apply_of_a_huge_object_hits_the_annotation_limit(
    cluster: dict[str, Any], unique: str
) -> None:
    """Client-side apply copies the object into an annotation, limited to 256 KiB in total
    (apimachinery ValidateAnnotationsSize) -- why Argo CD's 400 KB Application CRD needs
    ``kubectl apply --server-side``."""
    namespace = ns(cluster, unique)
    big = "x" * 300_000
    manifest = f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: big, namespace: {namespace}}}\n"
    manifest += f"data: {{k: {big}}}\n"
    out = kubectl(cluster, "apply", "-f", "-", stdin=manifest, check=False)
    assert "metadata.annotations: Too long: must have at most 262144 bytes" in out
    assert "serverside-applied" in kubectl(cluster, "apply", "--server-side", "-f", "-", stdin=manifest)


def test_arm_credentials_reach_the_cluster(sandbox: Sandbox, tmp_path: Path, unique: str) -> None:
    """The kubeconfig ARM's ``listClusterUserCredential`` returns works with real kubectl, and the
    cluster's issuer is the one ARM reports (azure-specs ManagedClustersListClusterUserCredentials)."""
    from azure.mgmt.containerservice import ContainerServiceClient
    from azure.mgmt.resource.resources import ResourceManagementClient

    from sandbox.arm.testing import mgmt_client

    conn = sandbox.connection
    rm = mgmt_client(ResourceManagementClient, conn)
    aks = mgmt_client(ContainerServiceClient, conn)
    group = f"rg-k8s-arm-{unique}"
    rm.resource_groups.create_or_update(group, {"location": "eastus"})
    body = {
        "location": "eastus",
        "identity": {"type": "SystemAssigned"},
        "properties": {
            "dnsPrefix": "aks-k8s",
            "agentPoolProfiles": [
                {"name": "system", "count": 2, "vmSize": "Standard_D2s_v5", "mode": "System"}
            ],
            "oidcIssuerProfile": {"enabled": True},
            "securityProfile": {"workloadIdentity": {"enabled": True}},
            "addonProfiles": {"azureKeyvaultSecretsProvider": {"enabled": True, "config": {}}},
        },
    }
    try:
        mc = aks.managed_clusters.begin_create_or_update(group, "aks-k", body).result(timeout=60)
        creds = aks.managed_clusters.list_cluster_user_credentials(group, "aks-k")
        kubeconfig = tmp_path / "config"
        kubeconfig.write_bytes(creds.kubeconfigs[0].value)
        cluster = {"kubeconfig": kubeconfig, "cache": tmp_path / "cache"}
        assert len(kubectl(cluster, "get", "nodes", "-o", "name").split()) == 2
        crds = kubectl(cluster, "get", "crd", "-o", "name")
        assert "secretproviderclasses.secrets-store.csi.x-k8s.io" in crds
        token = kubectl(
            cluster, "create", "token", "default", "--audience", "api://AzureADTokenExchange"
        ).strip()
        assert (
            jwt.decode(token, options={"verify_signature": False})["iss"] == mc.oidc_issuer_profile.issuer_url
        )
    finally:
        rm.resource_groups.begin_delete(group).result(timeout=60)
    assert sandbox.ctx.services["clusters"].key_for(mc.id) is None  # the group took the cluster along


def test_typed_create_deployment_and_service(cluster: dict[str, Any], unique: str) -> None:
    """``kubectl create deployment|service`` send protobuf; clusterIP and nodePort are allocated."""
    namespace = ns(cluster, unique)
    kubectl(
        cluster,
        "create",
        "deployment",
        "web",
        "-n",
        namespace,
        "--image=nginx:1.27",
        "--replicas=2",
        "--port=8080",
    )
    kubectl(cluster, "create", "service", "loadbalancer", "web", "-n", namespace, "--tcp=443:8080")
    store = cluster["store"]
    dep = store.get("apps/v1", "Deployment", "web", namespace)
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["selector"] == {"matchLabels": {"app": "web"}}
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert (container["image"], container["ports"]) == ("nginx:1.27", [{"containerPort": 8080}])
    svc = store.get("v1", "Service", "web", namespace)["spec"]
    assert svc["type"] == "LoadBalancer" and svc["selector"] == {"app": "web"}
    port = svc["ports"][0]
    assert (port["port"], port["targetPort"], port["protocol"]) == (443, 8080, "TCP")
    assert 30000 <= port["nodePort"] <= 32767
    octets = [int(o) for o in svc["clusterIP"].split(".")]
    assert octets[:2] == [10, 0] and all(0 <= o <= 255 for o in octets)


def test_scale_subresource(cluster: dict[str, Any], unique: str) -> None:
    namespace = ns(cluster, unique)
    kubectl(cluster, "create", "deployment", "web", "-n", namespace, "--image=nginx:1.27")
    assert "scaled" in kubectl(cluster, "scale", "-n", namespace, "deployment/web", "--replicas=3")
    assert cluster["store"].get("apps/v1", "Deployment", "web", namespace)["spec"]["replicas"] == 3


def test_auth_can_i_and_whoami(cluster: dict[str, Any]) -> None:
    """AKS local accounts are cluster-admin; reviews are answered, never stored."""
    assert kubectl(cluster, "auth", "can-i", "create", "pods", "-n", "default").strip() == "yes"
    assert "clusterUser" in kubectl(cluster, "auth", "whoami")
