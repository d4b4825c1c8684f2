"""ARM request bodies by value (P2, P3, P16-P18, P21) and the desired-vs-actual comparison."""

from __future__ import annotations

import uuid

from keyless_gitops.bodies import (
    differs,
    extension_body,
    federated_credential_body,
    key_vault_body,
    managed_cluster_body,
    role_assignment_body,
    role_assignment_name,
)
from keyless_gitops.spec import EnvironmentSpec

SUB = "0b1f6471-1bf0-4dda-aec3-cb9272f09590"
SPEC = EnvironmentSpec(suffix="abc123").for_subscription(SUB)
TAGS = {
    "purpose": "gitops-demo",
    "environment": "development",
    "managed-by": "keyless-gitops",
    "keyless-gitops-env": "dev",
}


def test_managed_cluster_body_enables_everything_at_create() -> None:
    assert managed_cluster_body(SPEC) == {
        "location": "eastus",
        "tags": TAGS,
        "identity": {"type": "SystemAssigned"},
        "properties": {
            "dnsPrefix": "aks-gitops-cluster-dns",
            "agentPoolProfiles": [
                {
                    "name": "nodepool1",
                    "count": 3,
                    "vmSize": "Standard_DS2_v2",
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
        },
    }


def test_key_vault_body_rbac_short_retention_no_false_purge_protection() -> None:
    body = key_vault_body(SPEC, "tenant-1")
    assert body["properties"] == {
        "tenantId": "tenant-1",
        "sku": {"family": "A", "name": "standard"},
        "enableRbacAuthorization": True,
        "softDeleteRetentionInDays": 7,
    }
    prod = EnvironmentSpec(environment="prod", purge_protection=True).for_subscription(SUB)
    assert key_vault_body(prod, "t")["properties"]["enablePurgeProtection"] is True


def test_extension_body_1_0_keys_pinned_and_explicit() -> None:
    assert extension_body(SPEC, "client-1") == {
        "properties": {
            "extensionType": "Microsoft.ArgoCD",
            "autoUpgradeMinorVersion": False,
            "releaseTrain": "preview",
            "version": "1.0.0-preview",
            "scope": {"cluster": {"releaseNamespace": "argocd"}},
            "configurationSettings": {
                "azure.workloadIdentity.enabled": "true",
                "azure.workloadIdentity.clientId": "client-1",
                "redis-ha.enabled": "false",
            },
        }
    }


def test_extension_body_0_0_x_keys() -> None:
    spec = EnvironmentSpec(suffix="abc123", extension={"version": "0.0.7-preview"})  # type: ignore[arg-type]
    settings = extension_body(spec.for_subscription(SUB), "c")["properties"]["configurationSettings"]
    assert settings == {
        "workloadIdentity.enable": "true",
        "workloadIdentity.clientId": "c",
        "deployWithHighAvailability": "false",
        "namespaceInstall": "false",
    }


def test_federated_credential_body() -> None:
    assert federated_credential_body("https://issuer/x/", "system:serviceaccount:a:b") == {
        "properties": {
            "issuer": "https://issuer/x/",
            "subject": "system:serviceaccount:a:b",
            "audiences": ["api://AzureADTokenExchange"],
        }
    }


def test_role_assignment_is_deterministic_and_typed() -> None:
    scope = SPEC.names.key_vault_id
    role = SPEC.names.role_definition_id("4633458b-17de-408a-b874-0445c86b69e6")
    a = role_assignment_name(scope, role, "P1")
    assert a == role_assignment_name(scope.upper(), role, "p1")  # ARM ids are case-insensitive
    assert a != role_assignment_name(scope, role, "p2")
    assert uuid.UUID(a).version == 5
    assert role_assignment_body(role, "p1") == {
        "properties": {"roleDefinitionId": role, "principalId": "p1", "principalType": "ServicePrincipal"}
    }


def test_differs_is_a_subset_comparison() -> None:
    desired = {"tags": {"a": "1"}, "properties": {"list": [{"x": 1}], "flag": True}}
    actual = {
        "id": "/x",
        "tags": {"a": "1", "extra": "kept"},
        "properties": {"list": [{"x": 1, "server": "default"}], "flag": True, "state": "Succeeded"},
    }
    assert differs(desired, actual) == []
    assert differs(desired, {**actual, "tags": {"a": "2"}}) == ["/tags/a"]
    assert differs(desired, {**actual, "properties": {"flag": True}}) == ["/properties/list"]
    assert differs({"a": [1, 2]}, {"a": [1]}) == ["/a"]
