"""Managed clusters and cluster extensions through azure-mgmt-containerservice and
azure-mgmt-kubernetesconfiguration (azure-specs containerservice/*, kubernetesconfiguration/*;
PITFALLS P18, P20-P22)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.mgmt.containerservice import ContainerServiceClient
from azure.mgmt.kubernetesconfiguration import SourceControlConfigurationClient
from azure.mgmt.resource.resources import ResourceManagementClient

from sandbox.arm.testing import mgmt_client
from sandbox.server import Sandbox


def cluster_body(**extra_props: Any) -> dict[str, Any]:
    return {
        "location": "eastus",
        "identity": {"type": "SystemAssigned"},
        "properties": {
            "dnsPrefix": "aks-test",
            "agentPoolProfiles": [
                {"name": "system", "count": 2, "vmSize": "Standard_D2s_v5", "mode": "System"}
            ],
            "oidcIssuerProfile": {"enabled": True},
            "securityProfile": {"workloadIdentity": {"enabled": True}},
            "addonProfiles": {"azureKeyvaultSecretsProvider": {"enabled": True, "config": {}}},
            **extra_props,
        },
    }


@pytest.fixture
def group(conn: dict[str, Any], unique: str) -> Iterator[str]:
    rm = mgmt_client(ResourceManagementClient, conn)
    name = f"rg-aks-{unique}"
    rm.resource_groups.create_or_update(name, {"location": "eastus"})
    yield name
    rm.resource_groups.begin_delete(name).result(timeout=60)


@pytest.fixture
def aks(conn: dict[str, Any]) -> ContainerServiceClient:
    return mgmt_client(ContainerServiceClient, conn)


def test_cluster_lifecycle_and_credentials(
    sandbox: Sandbox, conn: dict[str, Any], aks: ContainerServiceClient, group: str
) -> None:
    mc = aks.managed_clusters.begin_create_or_update(group, "aks-1", cluster_body()).result(timeout=60)
    assert mc.provisioning_state == "Succeeded"
    issuer = mc.oidc_issuer_profile.issuer_url
    assert issuer.startswith(f"{conn['arm_endpoint']}/oidc/{conn['tenant_id']}/") and issuer.endswith("/")
    assert mc.security_profile.workload_identity.enabled is True
    assert mc.addon_profiles["azureKeyvaultSecretsProvider"].enabled is True
    assert mc.identity.principal_id and mc.agent_pool_profiles[0].count == 2
    creds = aks.managed_clusters.list_cluster_user_credentials(group, "aks-1")
    kubeconfig = yaml.safe_load(creds.kubeconfigs[0].value)  # bytes, decoded by the SDK
    assert kubeconfig["clusters"][0]["cluster"]["server"].startswith(f"{conn['arm_endpoint']}/k8s/")
    assert [c.name for c in aks.managed_clusters.list_by_resource_group(group)] == ["aks-1"]
    # an update keeps the issuer URL
    again = aks.managed_clusters.begin_create_or_update(group, "aks-1", cluster_body()).result(timeout=60)
    assert again.oidc_issuer_profile.issuer_url == issuer
    with pytest.raises(HttpResponseError) as err:  # the issuer cannot be switched off
        aks.managed_clusters.begin_create_or_update(
            group, "aks-1", cluster_body(oidcIssuerProfile={"enabled": False}, securityProfile={})
        )
    assert err.value.status_code == 400
    aks.managed_clusters.begin_delete(group, "aks-1").result(timeout=60)
    with pytest.raises(ResourceNotFoundError):
        aks.managed_clusters.get(group, "aks-1")


def test_create_is_polled_and_overlapping_puts_conflict(
    fresh_sandbox: Sandbox, conn: dict[str, Any], aks: ContainerServiceClient, group: str
) -> None:
    ctx = fresh_sandbox.ctx
    ctx.clock.overrides = {"managed_cluster.create": 2.0}
    since = ctx.journal.last_seq
    poller = aks.managed_clusters.begin_create_or_update(group, "aks-slow", cluster_body())
    assert aks.managed_clusters.get(group, "aks-slow").provisioning_state == "Creating"
    with pytest.raises(ResourceExistsError) as err:  # P20
        aks.managed_clusters.begin_create_or_update(group, "aks-slow", cluster_body())
    assert err.value.error.code == "OperationNotAllowed"
    mc = poller.result(timeout=60)
    assert mc.provisioning_state == "Succeeded" and mc.oidc_issuer_profile.issuer_url
    entries = ctx.journal.entries(since, service="arm")
    polls = [e for e in entries if "/operations/" in e.path]
    assert polls and all(e.api_version == "2026-08-01" for e in polls)
    assert [e.status for e in entries if e.method == "PUT"] == [201, 409]


def test_extension_lifecycle(conn: dict[str, Any], aks: ContainerServiceClient, group: str) -> None:
    aks.managed_clusters.begin_create_or_update(group, "aks-ext", cluster_body()).result(timeout=60)
    ext = mgmt_client(SourceControlConfigurationClient, conn)
    args = (group, "Microsoft.ContainerService", "managedClusters", "aks-ext", "argocd")
    with pytest.raises(HttpResponseError) as err:  # version pinned while auto-upgrade stays on (P18)
        ext.extensions.begin_create(
            *args, {"properties": {"extensionType": "Microsoft.ArgoCD", "version": "1.0.0"}}
        )
    assert err.value.status_code == 400
    body = {
        "extensionType": "Microsoft.ArgoCD",
        "autoUpgradeMinorVersion": False,
        "releaseTrain": "preview",
        "version": "0.0.7-preview",
        "configurationSettings": {"deployWithHighAvailability": "false"},
        "configurationProtectedSettings": {"token": "protected-value"},
    }
    created = ext.extensions.begin_create(*args, {"properties": body}).result(timeout=60)
    assert created.provisioning_state == "Succeeded" and created.current_version == "0.0.7-preview"
    got = ext.extensions.get(*args)
    assert got.configuration_settings == {"deployWithHighAvailability": "false"}
    assert "protected-value" not in str(got.as_dict())
    assert [e.name for e in ext.extensions.list(*args[:4])] == ["argocd"]
    patched = ext.extensions.begin_update(
        *args, {"properties": {"configurationSettings": {"redis-ha.enabled": "false"}}}
    ).result(timeout=60)
    assert patched.configuration_settings == {
        "deployWithHighAvailability": "false",
        "redis-ha.enabled": "false",
    }
    ext.extensions.begin_delete(*args).result(timeout=60)
    with pytest.raises(ResourceNotFoundError):
        ext.extensions.get(*args)


def test_extension_polling_with_time(
    fresh_sandbox: Sandbox, conn: dict[str, Any], aks: ContainerServiceClient, group: str
) -> None:
    aks.managed_clusters.begin_create_or_update(group, "aks-ext2", cluster_body()).result(timeout=60)
    fresh_sandbox.ctx.clock.overrides = {"extension.create": 1.5, "extension.delete": 1.0}
    ext = mgmt_client(SourceControlConfigurationClient, conn)
    args = (group, "Microsoft.ContainerService", "managedClusters", "aks-ext2", "flux")
    poller = ext.extensions.begin_create(*args, {"properties": {"extensionType": "microsoft.flux"}})
    assert ext.extensions.get(*args).provisioning_state == "Creating"
    done = poller.result(timeout=60)
    assert done.provisioning_state == "Succeeded" and done.release_train == "Stable"
    ext.extensions.begin_delete(*args).result(timeout=60)


def test_group_delete_removes_clusters(
    conn: dict[str, Any], aks: ContainerServiceClient, unique: str
) -> None:
    rm = mgmt_client(ResourceManagementClient, conn)
    group = f"rg-aks-cascade-{unique}"
    rm.resource_groups.create_or_update(group, {"location": "eastus"})
    aks.managed_clusters.begin_create_or_update(group, "aks-c", cluster_body()).result(timeout=60)
    rm.resource_groups.begin_delete(group).result(timeout=60)
    with pytest.raises(ResourceNotFoundError):
        aks.managed_clusters.get(group, "aks-c")
    _ = threading  # (threads are used by the FIC race test)


def test_create_at_a_nonzero_time_scale_is_polled_with_retry_after(
    fresh_sandbox: Sandbox, aks: ContainerServiceClient, group: str
) -> None:
    ctx = fresh_sandbox.ctx
    ctx.clock.time_scale = 0.005  # AKS create: 300 s -> 1.5 s
    since = ctx.journal.last_seq
    mc = aks.managed_clusters.begin_create_or_update(group, "aks-scaled", cluster_body()).result(timeout=60)
    assert mc.provisioning_state == "Succeeded"
    entries = ctx.journal.entries(since, service="arm")
    put = next(e for e in entries if e.method == "PUT")
    polls = [e for e in entries if "/operations/" in e.path]
    assert put.status == 201 and len(polls) >= 1
    assert polls[-1].ts - put.ts >= 1.0  # polled at Retry-After pace (>= 1 s), not 0 and not 30 s


def test_failed_extension_install_surfaces_azures_message(
    conn: dict[str, Any], aks: ContainerServiceClient, group: str
) -> None:
    """Argo CD HA (the default for 0.0.x) on a 2-node cluster fails as in PITFALLS P17."""
    aks.managed_clusters.begin_create_or_update(group, "aks-ha", cluster_body()).result(timeout=60)
    ext = mgmt_client(SourceControlConfigurationClient, conn)
    args = (group, "Microsoft.ContainerService", "managedClusters", "aks-ha", "argocd")
    body = {"extensionType": "Microsoft.ArgoCD", "autoUpgradeMinorVersion": False, "version": "0.0.7-preview"}
    with pytest.raises(HttpResponseError) as err:
        ext.extensions.begin_create(*args, {"properties": body}).result(timeout=60)
    assert "context deadline exceeded" in str(err.value)
    assert ext.extensions.get(*args).provisioning_state == "Failed"
