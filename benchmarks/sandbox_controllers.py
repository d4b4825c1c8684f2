"""Figures for the sandbox's in-cluster controllers (sandbox/k8s/controllers), at time_scale 0.

Run: ``.venv/bin/python benchmarks/sandbox_controllers.py [--runs N]``. Prints, per run:
- a 3-replica Deployment from create to ``Available=True``;
- the Argo CD extension install (1.0.0-preview, HA off) and the aks-store-demo dev overlay
  Application from create to Synced + Healthy, with the number of store writes it caused;
- the keyless chain: a pod mounting Key Vault secrets through the CSI provider, from Deployment
  create to the pod Running (token -> Entra -> Key Vault with the real SDKs).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from collections import Counter
from typing import Any

import jwt
from azure.keyvault.secrets import SecretClient
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.keyvault import KeyVaultManagementClient
from azure.mgmt.msi import ManagedServiceIdentityClient
from azure.mgmt.resource.resources import ResourceManagementClient

from sandbox.arm.testing import credential, mgmt_client
from sandbox.server import Sandbox


def wait(fn: Any, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while not fn():
        if time.monotonic() > end:
            raise TimeoutError
        time.sleep(0.01)


def cond(obj: dict[str, Any], ctype: str) -> str:
    return next(
        (c["status"] for c in (obj.get("status") or {}).get("conditions", []) if c["type"] == ctype), ""
    )


def deployment(name: str, ns: str, replicas: int = 1, **spec: Any) -> dict[str, Any]:
    container = {"name": "app", "image": "nginx:1.27", **spec.pop("container", {})}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [container], **spec}},
        },
    }


def one_run(sb: Sandbox, i: int) -> dict[str, float]:
    svc, ext = sb.ctx.services["k8s"], sb.ctx.services["k8s.extensions"]
    cid = (
        f"/subscriptions/{sb.ctx.identity.subscription_id}/resourcegroups/rg/providers/"
        f"microsoft.containerservice/managedclusters/bench{i}"
    )
    svc.ensure_cluster(
        cid,
        name=f"bench{i}",
        location="eastus",
        oidc_issuer=True,
        workload_identity=True,
        keyvault_secrets_provider=True,
        node_count=2,
    )
    st = svc.store(svc.key_for(cid))
    wait(lambda: st.key in sb.ctx.services["k8s-controllers"].clusters)
    out: dict[str, float] = {}
    st.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "web"}})
    t0 = time.perf_counter()
    st.create(deployment("web", "web", 3))
    wait(lambda: cond(st.get("apps/v1", "Deployment", "web", "web"), "Available") == "True")
    out["deployment_available_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    ext.ensure_extension(
        st,
        name="argocd",
        extension_type="Microsoft.ArgoCD",
        version="1.0.0-preview",
        release_train="preview",
        configuration_settings={"redis-ha.enabled": "false"},
    )
    out["argocd_install_s"] = time.perf_counter() - t0
    writes: Counter[str] = Counter()
    sub = st.subscribe(lambda ev: writes.update([ev.type]))
    t0 = time.perf_counter()
    st.create(
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "metadata": {"name": "store", "namespace": "argocd"},
            "spec": {
                "project": "default",
                "source": {
                    "repoURL": "https://github.com/Azure-Samples/aks-store-demo.git",
                    "targetRevision": "HEAD",
                    "path": "kustomize/overlays/dev",
                },
                "destination": {"server": "https://kubernetes.default.svc", "namespace": "store"},
                "syncPolicy": {
                    "automated": {"prune": True, "selfHeal": True},
                    "syncOptions": ["CreateNamespace=true"],
                },
            },
        }
    )

    def synced_healthy() -> bool:
        s = st.get("argoproj.io/v1alpha1", "Application", "store", "argocd").get("status") or {}
        return s.get("sync", {}).get("status") == "Synced" and s.get("health", {}).get("status") == "Healthy"

    wait(synced_healthy)
    out["aks_store_demo_synced_healthy_s"] = time.perf_counter() - t0
    out["aks_store_demo_store_writes"] = float(sum(writes.values()))
    sub.close()
    out["keyless_mount_s"] = keyless(sb, st, i)
    return out


def keyless(sb: Sandbox, st: Any, i: int) -> float:
    conn = sb.connection
    group, vault_name = f"rg-bench{i}", f"kv-bench{i}-{uuid.uuid4().hex[:4]}"
    mgmt_client(ResourceManagementClient, conn).resource_groups.create_or_update(
        group, {"location": "eastus"}
    )
    vault = (
        mgmt_client(KeyVaultManagementClient, conn)
        .vaults.begin_create_or_update(
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
        )
        .result(timeout=30)
    )
    auth = mgmt_client(AuthorizationManagementClient, conn)

    def assign(role: str, principal: str) -> None:
        auth.role_assignments.create(
            vault.id,
            str(uuid.uuid4()),
            {
                "role_definition_id": f"/subscriptions/{conn['subscription_id']}"
                f"/providers/Microsoft.Authorization/roleDefinitions/{role}",
                "principal_id": principal,
                "principal_type": "ServicePrincipal",
            },
        )

    me = jwt.decode(
        credential(conn).get_token("https://management.azure.com/.default").token,
        options={"verify_signature": False},
    )["oid"]
    assign("b86a8fe4-44ce-4948-aee5-eccb2c155cd7", me)
    SecretClient(
        vault.properties.vault_uri,
        credential(conn),
        verify_challenge_resource=False,
        connection_verify=conn["ca_bundle"],
    ).set_secret("api-key", "bench-value")
    msi = mgmt_client(ManagedServiceIdentityClient, conn)
    ident = msi.user_assigned_identities.create_or_update(group, "id-bench", {"location": "eastus"})
    assign("4633458b-17de-408a-b874-0445c86b69e6", ident.principal_id)
    issuer = sb.ctx.services["k8s"].issuer_url(st.key)
    msi.federated_identity_credentials.create_or_update(
        group,
        "id-bench",
        "fic",
        {
            "properties": {
                "issuer": issuer,
                "subject": "system:serviceaccount:kv:app",
                "audiences": ["api://AzureADTokenExchange"],
            }
        },
    )
    st.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kv"}})
    st.create({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "app", "namespace": "kv"}})
    st.create(
        {
            "apiVersion": "secrets-store.csi.x-k8s.io/v1",
            "kind": "SecretProviderClass",
            "metadata": {"name": "spc", "namespace": "kv"},
            "spec": {
                "provider": "azure",
                "parameters": {
                    "clientID": ident.client_id,
                    "tenantId": conn["tenant_id"],
                    "keyvaultName": vault_name,
                    "objects": "array:\n  - |\n    objectName: api-key\n    objectType: secret\n",
                },
            },
        }
    )
    t0 = time.perf_counter()
    st.create(
        deployment(
            "app",
            "kv",
            serviceAccountName="app",
            volumes=[
                {
                    "name": "s",
                    "csi": {
                        "driver": "secrets-store.csi.k8s.io",
                        "volumeAttributes": {"secretProviderClass": "spc"},
                    },
                }
            ],
        )
    )
    wait(
        lambda: any((p.get("status") or {}).get("phase") == "Running" for p in st.list("v1", "Pod", "kv")[0])
    )
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results: list[dict[str, float]] = []
    with Sandbox(tempfile.mkdtemp(prefix="bench-ctl-"), time_scale=0.0) as sb:
        for i in range(args.runs):
            results.append(one_run(sb, i))
            print({k: round(v, 3) for k, v in results[-1].items()})
    for key in results[0]:
        values = [r[key] for r in results]
        print(f"{key}: median {statistics.median(values):.3f} (min {min(values):.3f}, max {max(values):.3f})")


if __name__ == "__main__":
    main()
