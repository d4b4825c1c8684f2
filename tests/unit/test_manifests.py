"""The Kubernetes manifests rendered from manifests/ (P11, P12, P13, P15, P19)."""

from __future__ import annotations

import pytest
import yaml

from keyless_gitops.manifests import (
    TemplateError,
    application_manifest,
    csi_objects,
    render,
    sample_app_manifests,
)
from keyless_gitops.spec import EnvironmentSpec

SPEC = EnvironmentSpec(suffix="abc123").for_subscription("0b1f6471-1bf0-4dda-aec3-cb9272f09590")


def _by_kind() -> dict[str, dict]:
    return {m["kind"]: m for m in sample_app_manifests(SPEC, client_id="cid", tenant_id="tid")}


def test_apply_order_and_kinds() -> None:
    kinds = [m["kind"] for m in sample_app_manifests(SPEC, client_id="cid", tenant_id="tid")]
    assert kinds == ["Namespace", "ServiceAccount", "SecretProviderClass", "Deployment"]


def test_service_account_annotated_and_labelled() -> None:
    sa = _by_kind()["ServiceAccount"]
    assert sa["metadata"] == {
        "name": "sample-app-sa",
        "namespace": "sample-app",
        "annotations": {"azure.workload.identity/client-id": "cid"},
        "labels": {"azure.workload.identity/use": "true", "app.kubernetes.io/managed-by": "keyless-gitops"},
    }


def test_secret_provider_class_uses_client_id_and_secret_objects() -> None:
    spc = _by_kind()["SecretProviderClass"]
    params = spc["spec"]["parameters"]
    assert params["clientID"] == "cid" and params["tenantId"] == "tid"
    assert params["keyvaultName"] == "kv-gitops-abc123"
    assert "userAssignedIdentityID" not in params and "useVMManagedIdentity" not in params  # P11
    objects = yaml.safe_load(params["objects"])
    assert [yaml.safe_load(o)["objectName"] for o in objects["array"]] == [
        "api-key",
        "database-connection-string",
    ]
    assert spc["spec"]["secretObjects"] == [  # P12
        {
            "secretName": "sample-app-secrets",
            "type": "Opaque",
            "data": [
                {"objectName": "api-key", "key": "api-key"},
                {"objectName": "database-connection-string", "key": "database-connection-string"},
            ],
        }
    ]


def test_deployment_pod_label_and_csi_volume() -> None:
    dep = _by_kind()["Deployment"]
    pod = dep["spec"]["template"]
    assert pod["metadata"]["labels"]["azure.workload.identity/use"] == "true"  # P13: on the pod
    assert pod["spec"]["serviceAccountName"] == "sample-app-sa"
    assert pod["spec"]["volumes"][0]["csi"] == {
        "driver": "secrets-store.csi.k8s.io",
        "readOnly": True,
        "volumeAttributes": {"secretProviderClass": "sample-app-secrets"},
    }
    env = pod["spec"]["containers"][0]["env"]
    assert {
        "name": "DATABASE_CONNECTION_STRING",
        "valueFrom": {"secretKeyRef": {"name": "sample-app-secrets", "key": "database-connection-string"}},
    } in env


def test_application() -> None:
    app = application_manifest(SPEC)
    assert app["metadata"]["namespace"] == "argocd"
    assert app["spec"]["source"] == {
        "repoURL": "https://github.com/Azure-Samples/aks-store-demo.git",
        "targetRevision": "7ce10c5110d6a52d3517dfb6d7a7b7b2edf2e5a5",
        "path": "kustomize/overlays/dev",
    }
    assert app["spec"]["destination"] == {
        "server": "https://kubernetes.default.svc",
        "namespace": "aks-store-demo",
    }
    assert app["spec"]["syncPolicy"] == {
        "automated": {"prune": True, "selfHeal": True},
        "syncOptions": ["CreateNamespace=true"],
    }


def test_values_cannot_inject_yaml() -> None:
    ns = render("namespace.yaml", {"namespace": "x\nkind: Secret"})
    assert ns["kind"] == "Namespace" and ns["metadata"]["name"] == "x\nkind: Secret"


def test_missing_and_unused_values_are_errors() -> None:
    with pytest.raises(TemplateError, match="no value"):
        render("namespace.yaml", {})
    with pytest.raises(TemplateError, match="not used"):
        render("namespace.yaml", {"namespace": "a", "extra": 1})


def test_csi_objects_format() -> None:
    assert (
        csi_objects(["a"])
        == 'array:\n  - |\n    objectName: a\n    objectType: secret\n    objectVersion: ""\n'
    )
