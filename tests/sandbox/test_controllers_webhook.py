"""The azure-workload-identity webhook (sandbox/k8s/controllers/workload_identity.py), PITFALLS P13."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.k8s.store import BadRequest, ClusterStore
from sandbox.server import Sandbox
from tests.sandbox.controllers_support import make_cluster

CLIENT_ID = "11111111-2222-3333-4444-555555555555"


@pytest.fixture(scope="module")
def store(sandbox: Sandbox) -> ClusterStore:
    return make_cluster(sandbox, "aks-webhook")


@pytest.fixture
def ns(store: ClusterStore, unique: str) -> str:
    name = f"wh-{unique}"
    store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    store.create(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {
                "name": "wi-sa",
                "namespace": name,
                "annotations": {"azure.workload.identity/client-id": CLIENT_ID},
                "labels": {"azure.workload.identity/use": "true"},
            },
        }
    )
    return name


def _pod(ns: str, name: str, *, labelled: bool, sa: str = "wi-sa") -> dict[str, Any]:
    labels = {"azure.workload.identity/use": "true"} if labelled else {}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {
            "serviceAccountName": sa,
            "containers": [{"name": "app", "image": "nginx:1.27"}],
            "initContainers": [{"name": "init", "image": "busybox:1.36"}],
        },
    }


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env") or []}


def test_labelled_pod_gets_env_and_projected_token(sandbox: Sandbox, store: ClusterStore, ns: str) -> None:
    pod = store.create(_pod(ns, "labelled", labelled=True))
    for container in pod["spec"]["containers"] + pod["spec"]["initContainers"]:
        env = _env(container)
        assert env["AZURE_CLIENT_ID"] == CLIENT_ID
        assert env["AZURE_TENANT_ID"] == sandbox.ctx.identity.tenant_id
        assert env["AZURE_FEDERATED_TOKEN_FILE"] == "/var/run/secrets/azure/tokens/azure-identity-token"
        assert env["AZURE_AUTHORITY_HOST"] == sandbox.ctx.base_url + "/"
        assert {
            "name": "azure-identity-token",
            "mountPath": "/var/run/secrets/azure/tokens",
            "readOnly": True,
        } in container["volumeMounts"]
    (vol,) = [v for v in pod["spec"]["volumes"] if v["name"] == "azure-identity-token"]
    token = vol["projected"]["sources"][0]["serviceAccountToken"]
    assert token == {
        "path": "azure-identity-token",
        "expirationSeconds": 3600,
        "audience": "api://AzureADTokenExchange",
    }


def test_unlabelled_pod_is_untouched_even_with_a_labelled_service_account(
    store: ClusterStore, ns: str
) -> None:
    # P13: the ServiceAccount carries the label and annotation, the pod does not -> no mutation
    pod = store.create(_pod(ns, "plain", labelled=False))
    assert all("env" not in c for c in pod["spec"]["containers"])
    assert "volumes" not in pod["spec"] or all(
        v["name"] != "azure-identity-token" for v in pod["spec"]["volumes"]
    )


def test_service_account_without_client_id_gets_no_client_id(store: ClusterStore, ns: str) -> None:
    store.create(
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "bare", "namespace": ns}}
    )
    pod = store.create(_pod(ns, "bare-pod", labelled=True, sa="bare"))
    env = _env(pod["spec"]["containers"][0])
    assert "AZURE_CLIENT_ID" not in env
    assert env["AZURE_FEDERATED_TOKEN_FILE"].endswith("azure-identity-token")


def test_existing_env_wins_and_skip_containers(store: ClusterStore, ns: str) -> None:
    body = _pod(ns, "custom", labelled=True)
    body["spec"]["containers"][0]["env"] = [{"name": "AZURE_CLIENT_ID", "value": "mine"}]
    body["metadata"]["annotations"] = {"azure.workload.identity/skip-containers": "init"}
    pod = store.create(body)
    assert _env(pod["spec"]["containers"][0])["AZURE_CLIENT_ID"] == "mine"
    assert "env" not in pod["spec"]["initContainers"][0]


def test_missing_service_account_is_denied(store: ClusterStore, ns: str) -> None:
    with pytest.raises(BadRequest, match='denied the request: serviceaccounts "nope" not found'):
        store.create(_pod(ns, "orphan", labelled=True, sa="nope"))
