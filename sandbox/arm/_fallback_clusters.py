"""A record-only ``ClusterBackend`` used only when ``ctx.services`` has no ``"clusters"``.

It keeps ARM's managed clusters and extensions testable without the Kubernetes side: it returns
plausible endpoints (issuer ``{base_url}/oidc/{tenant}/{uuid}/``, server ``{base_url}/k8s/{key}``)
and a kubeconfig pointing there, but serves nothing. ``sandbox/k8s`` is the real backend.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import yaml

from sandbox.clusters import ClusterEndpoints
from sandbox.context import SandboxContext


class RecordOnlyClusters:
    def __init__(self, ctx: SandboxContext) -> None:
        self.ctx = ctx

    def _key(self, cluster_id: str, name: str) -> str:
        return f"{name.lower()}-{hashlib.sha256(cluster_id.lower().encode()).hexdigest()[:8]}"

    def ensure_cluster(
        self,
        cluster_id: str,
        *,
        name: str,
        location: str,
        oidc_issuer: bool,
        workload_identity: bool,
        keyvault_secrets_provider: bool,
        node_count: int,
    ) -> ClusterEndpoints:
        with self.ctx.state("arm_fallback_clusters").change() as data:
            rec = data.setdefault(cluster_id.lower(), {"issuer_id": str(uuid.uuid4()), "extensions": {}})
            rec.update(name=name, location=location, key=self._key(cluster_id, name))
        return self._endpoints(rec)

    def _endpoints(self, rec: dict[str, Any]) -> ClusterEndpoints:
        base, tenant = self.ctx.base_url, self.ctx.identity.tenant_id
        return ClusterEndpoints(
            server_url=f"{base}/k8s/{rec['key']}",
            issuer_url=f"{base}/oidc/{tenant}/{rec['issuer_id']}/",
            fqdn=f"{rec['key']}.hcp.{rec['location']}.azmk8s.io",
        )

    def delete_cluster(self, cluster_id: str) -> None:
        with self.ctx.state("arm_fallback_clusters").change() as data:
            data.pop(cluster_id.lower(), None)

    def kubeconfig(self, cluster_id: str, *, admin: bool = False) -> bytes:
        rec = self.ctx.state("arm_fallback_clusters").read().get(cluster_id.lower())
        if rec is None:
            raise KeyError(cluster_id)
        user = f"clusterUser_{rec['name']}" if not admin else f"clusterAdmin_{rec['name']}"
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": rec["name"], "cluster": {"server": self._endpoints(rec).server_url}}],
            "users": [{"name": user, "user": {"token": "record-only"}}],
            "contexts": [{"name": rec["name"], "context": {"cluster": rec["name"], "user": user}}],
            "current-context": rec["name"],
        }
        return yaml.safe_dump(doc).encode()

    def ensure_extension(
        self,
        cluster_id: str,
        *,
        name: str,
        extension_type: str,
        version: str | None,
        release_train: str | None,
        configuration_settings: dict[str, Any],
    ) -> None:
        with self.ctx.state("arm_fallback_clusters").change() as data:
            rec = data.get(cluster_id.lower())
            if rec is None:
                raise ValueError(f"cluster {cluster_id} does not exist")
            rec["extensions"][name] = {"type": extension_type, "version": version}

    def delete_extension(self, cluster_id: str, name: str) -> None:
        with self.ctx.state("arm_fallback_clusters").change() as data:
            rec = data.get(cluster_id.lower())
            if rec is not None:
                rec["extensions"].pop(name, None)


def backend(ctx: SandboxContext) -> Any:
    """``ctx.services["clusters"]``, or the record-only fallback."""
    found = ctx.services.get("clusters")
    if found is None:
        found = ctx.services.setdefault("arm.fallback_clusters", RecordOnlyClusters(ctx))
    return found
