"""The seam between ARM's managed clusters and the Kubernetes side of the sandbox.

ARM (``sandbox/arm``) drives clusters only through this protocol, found at
``ctx.services["clusters"]``; ``sandbox/k8s`` implements it (API server, OIDC issuer, add-ons,
extensions). Identifiers are ARM resource ids, lower-cased.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, kw_only=True)
class ClusterEndpoints:
    server_url: str  # the API server URL a kubeconfig points at
    issuer_url: str  # the OIDC issuer URL ARM reports (oidcIssuerProfile.issuerURL), ends with "/"
    fqdn: str


class ClusterBackend(Protocol):
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
        """Create the cluster or reconcile its features (called when the create/update LRO completes)."""

    def delete_cluster(self, cluster_id: str) -> None:
        """Remove the cluster and everything in it (absent is fine)."""

    def kubeconfig(self, cluster_id: str, *, admin: bool = False) -> bytes:
        """A kubeconfig (YAML bytes) for the cluster, with the sandbox CA embedded."""

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
        """Install or reconfigure an extension (called when the extension LRO completes).

        Raises ``ValueError`` with Azure's error message when the install fails (e.g. HA on too
        few nodes: "Helm installation failed: context deadline exceeded").
        """

    def delete_extension(self, cluster_id: str, name: str) -> None:
        """Uninstall an extension and what it installed (absent is fine)."""
