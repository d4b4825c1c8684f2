"""State survives a restart: an in-flight cluster create completes after the sandbox restarts
(operations are evaluated lazily from the clock), and tokens stay valid (persisted signing key)."""

from __future__ import annotations

import ssl
import time
from pathlib import Path

import httpx

from sandbox.arm.testing import credential
from sandbox.server import Sandbox


def test_in_flight_operation_and_tokens_survive_a_restart(tmp_path: Path) -> None:
    state_dir = tmp_path / "sandbox"
    scale = 0.004  # managed_cluster.create: 300 s x 0.004 = 1.2 s
    with Sandbox(state_dir, time_scale=scale) as first:
        conn = first.connection
        token = credential(conn).get_token("https://management.azure.com/.default").token
        headers = {"Authorization": f"Bearer {token}"}
        verify = ssl.create_default_context(cafile=conn["ca_bundle"])
        sub = conn["subscription_id"]
        rg = f"{conn['arm_endpoint']}/subscriptions/{sub}/resourcegroups/rg-restart"
        with httpx.Client(verify=verify, headers=headers, params={"api-version": "2025-04-01"}) as c:
            assert c.put(rg, json={"location": "eastus"}).status_code == 201
        cluster = f"{rg}/providers/Microsoft.ContainerService/managedClusters/aks-restart"
        body = {
            "location": "eastus",
            "properties": {
                "agentPoolProfiles": [{"name": "system", "count": 1, "mode": "System"}],
                "oidcIssuerProfile": {"enabled": True},
            },
        }
        with httpx.Client(verify=verify, headers=headers, params={"api-version": "2026-08-01"}) as c:
            created = c.put(cluster, json=body)
            assert created.status_code == 201, created.text
            assert created.json()["properties"]["provisioningState"] == "Creating"
            assert int(created.headers["Retry-After"]) >= 1
    time.sleep(1.3)
    with Sandbox(state_dir, time_scale=scale) as second:
        assert second.connection["arm_endpoint"] == conn["arm_endpoint"]  # same port, same URLs
        with httpx.Client(verify=verify, headers=headers, params={"api-version": "2026-08-01"}) as c:
            got = c.get(cluster)
            assert got.status_code == 200, got.text
            props = got.json()["properties"]
            assert props["provisioningState"] == "Succeeded"
            assert props["oidcIssuerProfile"]["issuerURL"].startswith(f"{conn['arm_endpoint']}/oidc/")


def test_extension_install_and_new_deployment_converge_across_restarts(tmp_path: Path) -> None:
    """DESIGN "The sandbox" 7: stopped while the Argo CD extension installs (an LRO in flight) and
    right after a Deployment is created (no pods yet), the restarted sandbox finishes both: the
    operation polls to Succeeded, the argocd namespace, ServiceAccounts and CRDs exist, the
    Deployment becomes Available."""
    import base64

    import yaml

    state_dir = tmp_path / "sandbox"
    scale = 0.01  # extension.create: 150 s x 0.01 = 1.5 s; managed_cluster.create 3 s
    with Sandbox(state_dir, time_scale=scale) as first:
        conn = first.connection
        headers = {
            "Authorization": "Bearer "
            + credential(conn).get_token("https://management.azure.com/.default").token
        }
        verify = ssl.create_default_context(cafile=conn["ca_bundle"])
        rg = f"{conn['arm_endpoint']}/subscriptions/{conn['subscription_id']}/resourcegroups/rg-restart2"
        cluster = f"{rg}/providers/Microsoft.ContainerService/managedClusters/aks-restart2"
        first.ctx.clock.overrides = {"managed_cluster.create": 0.0}
        with httpx.Client(verify=verify, headers=headers) as c:
            assert c.put(f"{rg}?api-version=2025-04-01", json={"location": "eastus"}).status_code == 201
            body = {
                "location": "eastus",
                "properties": {
                    "agentPoolProfiles": [{"name": "system", "count": 1, "mode": "System"}],
                    "oidcIssuerProfile": {"enabled": True},
                },
            }
            assert c.put(f"{cluster}?api-version=2026-08-01", json=body).status_code == 201
            ext = f"{cluster}/providers/Microsoft.KubernetesConfiguration/extensions/argocd"
            ext += "?api-version=2023-05-01"
            settings = {"redis-ha.enabled": "false"}
            r = c.put(
                ext,
                json={
                    "properties": {
                        "extensionType": "Microsoft.ArgoCD",
                        "autoUpgradeMinorVersion": False,
                        "releaseTrain": "preview",
                        "version": "1.0.0-preview",
                        "configurationSettings": settings,
                    }
                },
            )
            assert r.status_code == 201 and r.json()["properties"]["provisioningState"] == "Creating", r.text
            poll = r.headers["Azure-AsyncOperation"]
            creds = c.post(f"{cluster}/listClusterUserCredential?api-version=2026-08-01").json()
        kubeconfig = yaml.safe_load(base64.b64decode(creds["kubeconfigs"][0]["value"]))
        server = kubeconfig["clusters"][0]["cluster"]["server"]
        kube = {"Authorization": f"Bearer {kubeconfig['users'][0]['user']['token']}"}
        with httpx.Client(verify=verify, headers=kube) as k:
            deployment = {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "web"},
                "spec": {
                    "replicas": 2,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {
                        "metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{"name": "web", "image": "nginx"}]},
                    },
                },
            }
            assert (
                k.post(f"{server}/apis/apps/v1/namespaces/default/deployments", json=deployment).status_code
                == 201
            )
    with (
        Sandbox(state_dir, time_scale=scale),
        httpx.Client(verify=verify, headers=headers) as c,
        httpx.Client(verify=verify, headers=kube) as k,
    ):
        deadline = time.monotonic() + 30
        while c.get(poll).json()["status"] == "InProgress" and time.monotonic() < deadline:
            time.sleep(0.3)
        assert c.get(poll).json()["status"] == "Succeeded"
        assert c.get(ext).json()["properties"]["provisioningState"] == "Succeeded"
        assert k.get(f"{server}/api/v1/namespaces/argocd").status_code == 200
        assert k.get(f"{server}/api/v1/namespaces/argocd/serviceaccounts").json()["items"]
        crd = f"{server}/apis/apiextensions.k8s.io/v1/customresourcedefinitions/applications.argoproj.io"
        assert k.get(crd).status_code == 200
        while time.monotonic() < deadline:
            status = (
                k.get(f"{server}/apis/apps/v1/namespaces/default/deployments/web").json().get("status") or {}
            )
            if status.get("availableReplicas") == 2:
                break
            time.sleep(0.2)
        assert status.get("availableReplicas") == 2, status
