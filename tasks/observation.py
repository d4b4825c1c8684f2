"""What validation observed, as small frozen facts (no SDK models, no secret values, no hashes).

``tasks/observe.py`` fills an :class:`Observation` with read-only calls; ``tasks/checks.py``
turns it into check rows without any I/O. The end-to-end proof is computed while observing and
kept here only as versions and a match flag (DESIGN.md: compare hashes, never values).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, kw_only=True)
class ResourceGroupObs:
    location: str
    provisioning_state: str | None


@dataclass(frozen=True, kw_only=True)
class ClusterObs:
    provisioning_state: str | None
    power_state: str | None
    oidc_issuer_enabled: bool
    issuer_url: str | None
    workload_identity_enabled: bool
    csi_addon_enabled: bool


@dataclass(frozen=True, kw_only=True)
class VaultObs:
    provisioning_state: str | None
    rbac_authorization: bool
    vault_uri: str | None
    tenant_id: str | None


@dataclass(frozen=True, kw_only=True)
class SecretObs:
    version: str | None
    enabled: bool


@dataclass(frozen=True, kw_only=True)
class IdentityObs:
    client_id: str
    principal_id: str
    tenant_id: str | None


@dataclass(frozen=True, kw_only=True)
class FederatedCredentialObs:
    issuer: str
    subject: str
    audiences: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class RoleAssignmentObs:
    id: str
    scope: str
    role_definition_id: str
    principal_type: str | None


@dataclass(frozen=True, kw_only=True)
class ExtensionObs:
    provisioning_state: str | None
    version: str | None
    release_train: str | None
    auto_upgrade_minor_version: bool | None
    settings: dict[str, str]


@dataclass(frozen=True, kw_only=True)
class ServiceAccountObs:
    annotations: dict[str, str]
    labels: dict[str, str]


@dataclass(frozen=True, kw_only=True)
class PodObs:
    name: str
    labels: dict[str, str]
    ready: bool
    service_account: str | None


@dataclass(frozen=True, kw_only=True)
class DeploymentObs:
    replicas: int
    ready_replicas: int
    template_labels: dict[str, str]


@dataclass(frozen=True, kw_only=True)
class SecretProviderClassObs:
    parameters: dict[str, str]
    object_names: tuple[str, ...]  # parsed from parameters.objects
    secret_objects: tuple[dict[str, Any], ...]


@dataclass(frozen=True, kw_only=True)
class MountObs:
    """One pod's SecretProviderClassPodStatus: mounted, and the version of each object."""

    pod: str
    mounted: bool
    versions: dict[str, str]  # Key Vault object name -> version the driver mounted


@dataclass(frozen=True, kw_only=True)
class ProofObs:
    """The end-to-end proof for one seeded secret (values and hashes stay in the observer)."""

    vault_version: str | None
    mounted_versions: tuple[str, ...]  # one per mounted pod
    synced_matches_vault: bool | None  # sha256(synced Secret key) == sha256(vault current value)


@dataclass(frozen=True, kw_only=True)
class LiveChainObs:
    """A fresh token exchange, now, as the sample app's ServiceAccount: TokenRequest -> Entra
    ``client_assertion`` with the annotated client id -> Key Vault read. Values stay in the observer."""

    client_id: str | None  # the ServiceAccount's azure.workload.identity/client-id annotation
    error: (
        str | None
    )  # where and why the chain broke: e.g. "Entra AADSTS70021", "Key Vault 403 ForbiddenByRbac"
    matches: dict[
        str, bool
    ]  # secret -> sha256(read through the chain) == sha256(vault, read by the pipeline)


@dataclass(frozen=True, kw_only=True)
class ApplicationObs:
    sync_status: str | None
    health_status: str | None
    revision: str | None
    target_revision: str | None
    resources_out_of_sync: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class Observation:
    """Everything validation read. ``None`` = absent (404); a key in ``errors`` = not readable."""

    resource_group: ResourceGroupObs | None = None
    cluster: ClusterObs | None = None
    vault: VaultObs | None = None
    secrets: dict[str, SecretObs | None] = field(default_factory=dict)
    identity: IdentityObs | None = None
    federated_credentials: dict[str, FederatedCredentialObs] = field(default_factory=dict)
    role_assignments: tuple[RoleAssignmentObs, ...] = ()
    extension: ExtensionObs | None = None
    service_accounts: dict[str, ServiceAccountObs | None] = field(default_factory=dict)  # "ns/name"
    pods: dict[str, tuple[PodObs, ...]] = field(default_factory=dict)  # "ns/sa" -> pods running as it
    deployment: DeploymentObs | None = None
    secret_provider_class: SecretProviderClassObs | None = None
    mounts: tuple[MountObs, ...] = ()
    proofs: dict[str, ProofObs] = field(default_factory=dict)
    live_chain: LiveChainObs | None = None
    application: ApplicationObs | None = None
    # area -> a short reason it could not be read (exception type + status, never a body)
    errors: dict[str, str] = field(default_factory=dict)
