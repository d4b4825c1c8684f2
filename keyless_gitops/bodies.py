"""ARM request bodies, built from the spec as plain REST dicts (camelCase, sent exactly as written).

Pure functions, tested by value. Each body is the *full desired state* of its resource, so a PUT is
an upsert and ``differs(desired, actual)`` tells whether a PUT is needed at all.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from keyless_gitops.spec import WORKLOAD_IDENTITY_AUDIENCE, EnvironmentSpec

# A fixed namespace for deterministic role-assignment names (P3): uuid5(NS, scope|role|principal).
ROLE_ASSIGNMENT_NAMESPACE = uuid.UUID("6f0c6a43-5d1e-4f77-9a59-2f1b2c6f9a10")


def resource_group_body(spec: EnvironmentSpec) -> dict[str, Any]:
    return {"location": spec.location, "tags": spec.all_tags}


def managed_cluster_body(spec: EnvironmentSpec) -> dict[str, Any]:
    """The AKS cluster with OIDC issuer, workload identity and the Key Vault CSI addon at create (P21).

    Source: azure-specs containerservice ``ManagedClustersCreate_AzureKeyvaultSecretsProvider.json``,
    ``ManagedClustersCreate_EnableWorkloadIdentity`` / ``..._EnableOidcIssuer`` examples.
    """
    names = spec.names
    props: dict[str, Any] = {
        "dnsPrefix": f"{names.cluster[:40]}-dns",
        "agentPoolProfiles": [
            {
                "name": "nodepool1",
                "count": spec.node_count,
                "vmSize": spec.node_vm_size,
                "osType": "Linux",
                "type": "VirtualMachineScaleSets",
                "mode": "System",
            }
        ],
        "oidcIssuerProfile": {"enabled": True},
        "securityProfile": {"workloadIdentity": {"enabled": True}},
        "addonProfiles": {
            "azureKeyvaultSecretsProvider": {"enabled": True, "config": {"enableSecretRotation": "false"}}
        },
    }
    if spec.kubernetes_version:
        props["kubernetesVersion"] = spec.kubernetes_version
    return {
        "location": spec.location,
        "tags": spec.all_tags,
        "identity": {"type": "SystemAssigned"},
        "properties": props,
    }


def key_vault_body(spec: EnvironmentSpec, tenant_id: str) -> dict[str, Any]:
    """A vault in RBAC mode with short soft-delete retention for dev (P10).

    ``enablePurgeProtection`` is sent only when true: Azure refuses an explicit false.
    """
    props: dict[str, Any] = {
        "tenantId": tenant_id,
        "sku": {"family": "A", "name": "standard"},
        "enableRbacAuthorization": True,
        "softDeleteRetentionInDays": spec.soft_delete_retention_days,
    }
    if spec.purge_protection:
        props["enablePurgeProtection"] = True
    return {"location": spec.location, "tags": spec.all_tags, "properties": props}


def identity_body(spec: EnvironmentSpec) -> dict[str, Any]:
    return {"location": spec.location, "tags": spec.all_tags}


def federated_credential_body(issuer: str, subject: str) -> dict[str, Any]:
    """Issuer copied verbatim from the cluster (P7), exactly one audience (P5)."""
    return {"properties": {"issuer": issuer, "subject": subject, "audiences": [WORKLOAD_IDENTITY_AUDIENCE]}}


def extension_settings(spec: EnvironmentSpec, client_id: str) -> dict[str, str]:
    """configurationSettings with the keys of the pinned version (P16), HA explicit (P17)."""
    keys = spec.extension.key_map
    return {
        keys.workload_identity_enabled: "true",
        keys.workload_identity_client_id: client_id,
        keys.high_availability: "true" if spec.extension.high_availability else "false",
        **keys.fixed,
        **spec.extension.extra_settings,
    }


def extension_body(spec: EnvironmentSpec, client_id: str) -> dict[str, Any]:
    """The Argo CD extension, pinned, with releaseTrain and autoUpgradeMinorVersion explicit (P18)."""
    return {
        "properties": {
            "extensionType": "Microsoft.ArgoCD",
            "autoUpgradeMinorVersion": False,
            "releaseTrain": spec.extension.release_train,
            "version": spec.extension.version,
            "scope": {"cluster": {"releaseNamespace": spec.extension.namespace}},
            "configurationSettings": extension_settings(spec, client_id),
        }
    }


def role_assignment_name(scope: str, role_definition_id: str, principal_id: str) -> str:
    """Deterministic assignment name (P3): the same triple always gives the same GUID."""
    key = f"{scope.lower()}|{role_definition_id.lower()}|{principal_id.lower()}"
    return str(uuid.uuid5(ROLE_ASSIGNMENT_NAMESPACE, key))


def role_assignment_body(
    role_definition_id: str, principal_id: str, principal_type: str = "ServicePrincipal"
) -> dict[str, Any]:
    """principalType always explicit: the SDK's default is ``User`` (P2)."""
    return {
        "properties": {
            "roleDefinitionId": role_definition_id,
            "principalId": principal_id,
            "principalType": principal_type,
        }
    }


def differs(desired: Any, actual: Any) -> list[str]:
    """Paths where ``actual`` does not already hold ``desired`` (empty = no write needed).

    Desired mappings are compared as subsets (the server adds defaults and read-only fields);
    lists of mappings element by element; scalars for equality, strings case-insensitively for
    ``location``-like values is *not* assumed: callers normalise what Azure normalises.
    """
    out: list[str] = []
    _diff(desired, actual, "", out)
    return out


def _diff(desired: Any, actual: Any, path: str, out: list[str]) -> None:
    if isinstance(desired, Mapping):
        if not isinstance(actual, Mapping):
            out.append(path or "/")
            return
        for k, v in desired.items():
            if k not in actual:
                out.append(f"{path}/{k}")
            else:
                _diff(v, actual[k], f"{path}/{k}", out)
    elif isinstance(desired, list | tuple):
        if not isinstance(actual, list | tuple) or len(actual) != len(desired):
            out.append(path)
            return
        for i, (d, a) in enumerate(zip(desired, actual, strict=True)):
            _diff(d, a, f"{path}/{i}", out)
    elif desired != actual:
        out.append(path)
