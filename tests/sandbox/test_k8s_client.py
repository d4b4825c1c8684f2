"""A sandbox cluster driven by the real ``kubernetes`` Python client (37.0.0), as the product uses it.

Covers create/get/list/patch (strategic merge, JSON patch, merge patch, server-side apply through
``DynamicClient``)/delete/watch, CustomObjectsApi, TokenRequest, ``Status`` errors, finalizers,
owner-reference garbage collection and the OIDC issuer that verifies the tokens.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from kubernetes import client, config, dynamic, watch
from kubernetes.client.exceptions import ApiException

from sandbox.server import Sandbox

WI_AUDIENCE = "api://AzureADTokenExchange"


def _cluster_id(sandbox: Sandbox, name: str) -> str:
    return (
        f"/subscriptions/{sandbox.ctx.identity.subscription_id}/resourcegroups/rg-k8s"
        f"/providers/microsoft.containerservice/managedclusters/{name}"
    )


@pytest.fixture(scope="module")
def cluster(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    backend = sandbox.ctx.services["clusters"]
    name = f"aks-client-{time.time_ns() % 100000}"
    cid = _cluster_id(sandbox, name)
    endpoints = backend.ensure_cluster(
        cid,
        name=name,
        location="westeurope",
        oidc_issuer=True,
        workload_identity=True,
        keyvault_secrets_provider=False,
        node_count=1,
    )
    kubeconfig = tmp_path_factory.mktemp("kube") / "config"
    kubeconfig.write_bytes(backend.kubeconfig(cid))
    api_client = config.new_client_from_config(config_file=str(kubeconfig))
    yield {
        "id": cid,
        "endpoints": endpoints,
        "api": api_client,
        "store": sandbox.ctx.services["k8s"].store(backend.key_for(cid)),
        "ca": str(sandbox.ctx.tls.ca_bundle),
    }
    api_client.close()
    backend.delete_cluster(cid)


@pytest.fixture
def namespace(cluster: dict[str, Any], unique: str) -> str:
    v1 = client.CoreV1Api(cluster["api"])
    name = f"c-{unique}"
    v1.create_namespace({"metadata": {"name": name}})
    return name


def test_create_get_list_and_stamped_kind(cluster: dict[str, Any], namespace: str) -> None:
    v1 = client.CoreV1Api(cluster["api"])
    created = v1.create_namespaced_config_map(
        namespace, {"metadata": {"name": "cfg", "labels": {"a": "1"}}, "data": {"k": "v"}}
    )
    assert created.metadata.uid and created.metadata.resource_version
    got = v1.read_namespaced_config_map("cfg", namespace)
    assert (got.api_version, got.kind, got.data) == ("v1", "ConfigMap", {"k": "v"})
    stored = cluster["store"].files("/configmaps").read()["objects"]["/configmaps"][f"{namespace}/cfg"]
    assert (stored["apiVersion"], stored["kind"]) == ("v1", "ConfigMap")  # stamped on the stored object
    listed = v1.list_namespaced_config_map(namespace, label_selector="a in (1,2)")
    assert [i.metadata.name for i in listed.items] == ["cfg"]
    others = v1.list_namespaced_config_map(
        namespace, label_selector="a!=1"
    ).items  # also matches "no label a"
    assert [i.metadata.name for i in others] == ["kube-root-ca.crt"]
    by_name = v1.list_namespaced_config_map(namespace, field_selector="metadata.name=cfg")
    assert len(by_name.items) == 1
    with pytest.raises(ApiException) as exc:
        v1.list_namespaced_pod(namespace, field_selector="spec.bogus=1")
    assert exc.value.status == 400 and "field label not supported" in exc.value.body


def test_the_four_patch_types(cluster: dict[str, Any], namespace: str) -> None:
    apps = client.AppsV1Api(cluster["api"])
    apps.create_namespaced_deployment(
        namespace,
        {
            "metadata": {"name": "web"},
            "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [
                            {"name": "web", "image": "nginx:1.27", "env": [{"name": "A", "value": "1"}]}
                        ]
                    },
                },
            },
        },
    )
    # strategic merge patch (a dict): containers merge by name, env by name
    d = apps.patch_namespaced_deployment(
        "web",
        namespace,
        {
            "spec": {
                "template": {"spec": {"containers": [{"name": "web", "env": [{"name": "B", "value": "2"}]}]}}
            }
        },
    )
    env = d.spec.template.spec.containers[0].env
    assert [(e.name, e.value) for e in env] == [("A", "1"), ("B", "2")]
    assert d.spec.template.spec.containers[0].image == "nginx:1.27"
    assert d.metadata.generation == 2
    # JSON patch (a list)
    d = apps.patch_namespaced_deployment(
        "web", namespace, [{"op": "replace", "path": "/spec/replicas", "value": 3}]
    )
    assert d.spec.replicas == 3
    # merge patch: lists are replaced
    d = apps.patch_namespaced_deployment(
        "web",
        namespace,
        {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.28"}]}}}},
        _content_type="application/merge-patch+json",
    )
    assert d.spec.template.spec.containers[0].env is None
    # server-side apply through the dynamic client
    dyn = dynamic.DynamicClient(cluster["api"])
    deployments = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    applied = deployments.server_side_apply(
        body={
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": namespace, "labels": {"owner": "pipeline"}},
        },
        name="web",
        namespace=namespace,
        field_manager="keyless-gitops",
    )
    assert applied.to_dict()["metadata"]["labels"] == {"owner": "pipeline"}
    managers = {m.manager: m.operation for m in applied.metadata.managedFields}
    assert managers["keyless-gitops"] == "Apply"
    # a second identical apply writes nothing
    rv = applied.metadata.resourceVersion
    again = deployments.server_side_apply(
        body={
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": namespace, "labels": {"owner": "pipeline"}},
        },
        name="web",
        namespace=namespace,
        field_manager="keyless-gitops",
    )
    # (controllers may update status in between, so compare what the apply owns, not resourceVersion)
    del rv
    mine = [m.to_dict() for m in again.metadata.managedFields if m.manager == "keyless-gitops"]
    assert mine == [m.to_dict() for m in applied.metadata.managedFields if m.manager == "keyless-gitops"]
    assert again.metadata.generation == applied.metadata.generation


def test_status_errors(cluster: dict[str, Any], namespace: str) -> None:
    v1 = client.CoreV1Api(cluster["api"])
    with pytest.raises(ApiException) as exc:
        v1.read_namespaced_secret("missing", namespace)
    assert exc.value.status == 404 and '"reason":"NotFound"' in exc.value.body.replace(" ", "")
    v1.create_namespaced_secret(namespace, {"metadata": {"name": "s"}, "stringData": {"k": "v"}})
    with pytest.raises(ApiException) as exc:
        v1.create_namespaced_secret(namespace, {"metadata": {"name": "s"}})
    assert exc.value.status == 409 and "AlreadyExists" in exc.value.body
    secret = v1.read_namespaced_secret("s", namespace)
    assert secret.data == {"k": "dg=="}  # stringData is folded into data
    stale = secret.metadata.resource_version
    v1.patch_namespaced_secret("s", namespace, {"metadata": {"labels": {"x": "y"}}})
    secret.metadata.resource_version = stale
    with pytest.raises(ApiException) as exc:
        v1.replace_namespaced_secret("s", namespace, secret)
    assert exc.value.status == 409 and "the object has been modified" in exc.value.body
    with pytest.raises(ApiException) as exc:
        v1.create_namespaced_pod(
            namespace, {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}}
        )
    assert exc.value.status == 422 and "spec.containers[0].image: Required value" in exc.value.body
    with pytest.raises(ApiException) as exc:
        v1.create_namespaced_config_map(namespace, {"metadata": {"name": "Bad_Name"}})
    assert exc.value.status == 422 and "RFC 1123" in exc.value.body


def test_watch_streams_changes(cluster: dict[str, Any], namespace: str) -> None:
    v1 = client.CoreV1Api(cluster["api"])
    seen: list[tuple[str, str]] = []

    def consume() -> None:
        w = watch.Watch()
        for event in w.stream(v1.list_namespaced_config_map, namespace, timeout_seconds=5):
            seen.append((event["type"], event["object"].metadata.name))
            if event["type"] == "DELETED":
                w.stop()

    t = threading.Thread(target=consume)
    t.start()
    time.sleep(0.5)
    v1.create_namespaced_config_map(namespace, {"metadata": {"name": "w1"}})
    v1.patch_namespaced_config_map("w1", namespace, {"data": {"a": "b"}})
    v1.delete_namespaced_config_map("w1", namespace)
    t.join(10)
    assert ("ADDED", "w1") in seen and ("MODIFIED", "w1") in seen and ("DELETED", "w1") in seen


def test_custom_objects(cluster: dict[str, Any], namespace: str) -> None:
    ext = client.ApiextensionsV1Api(cluster["api"])
    ext.create_custom_resource_definition(
        {
            "metadata": {"name": "gadgets.example.org"},
            "spec": {
                "group": "example.org",
                "scope": "Namespaced",
                "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
                "versions": [
                    {
                        "name": "v1",
                        "served": True,
                        "storage": True,
                        "schema": {
                            "openAPIV3Schema": {
                                "type": "object",
                                "properties": {
                                    "spec": {
                                        "type": "object",
                                        "properties": {"colour": {"type": "string", "enum": ["red", "blue"]}},
                                    }
                                },
                            }
                        },
                    }
                ],
            },
        }
    )
    crd = ext.read_custom_resource_definition("gadgets.example.org")
    assert {c.type: c.status for c in crd.status.conditions}["Established"] == "True"
    co = client.CustomObjectsApi(cluster["api"])
    body = {
        "apiVersion": "example.org/v1",
        "kind": "Gadget",
        "metadata": {"name": "g"},
        "spec": {"colour": "red"},
    }
    co.create_namespaced_custom_object("example.org", "v1", namespace, "gadgets", body)
    patched = co.patch_namespaced_custom_object(
        "example.org", "v1", namespace, "gadgets", "g", {"spec": {"colour": "blue"}}
    )
    assert patched["spec"]["colour"] == "blue" and patched["metadata"]["generation"] == 2
    with pytest.raises(ApiException) as exc:
        co.patch_namespaced_custom_object(
            "example.org", "v1", namespace, "gadgets", "g", {"spec": {"colour": "green"}}
        )
    assert exc.value.status == 422 and "spec.colour" in exc.value.body
    listed = co.list_namespaced_custom_object("example.org", "v1", namespace, "gadgets")
    assert [i["metadata"]["name"] for i in listed["items"]] == ["g"]
    co.delete_namespaced_custom_object("example.org", "v1", namespace, "gadgets", "g")
    with pytest.raises(ApiException) as exc:
        co.get_namespaced_custom_object("example.org", "v1", namespace, "gadgets", "g")
    assert exc.value.status == 404
    # deleting the CRD removes its resource from discovery
    ext.delete_custom_resource_definition("gadgets.example.org")
    with pytest.raises(ApiException):
        co.list_namespaced_custom_object("example.org", "v1", namespace, "gadgets")


def test_finalizers_and_garbage_collection(cluster: dict[str, Any], namespace: str) -> None:
    v1 = client.CoreV1Api(cluster["api"])
    owner = v1.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}
    v1.create_namespaced_config_map(namespace, {"metadata": {"name": "child", "ownerReferences": [ref]}})
    v1.create_namespaced_config_map(
        namespace,
        {"metadata": {"name": "held", "ownerReferences": [ref], "finalizers": ["example.com/hold"]}},
    )
    v1.delete_namespaced_config_map("owner", namespace)
    names = {c.metadata.name for c in v1.list_namespaced_config_map(namespace).items}
    assert "child" not in names and "owner" not in names
    held = v1.read_namespaced_config_map("held", namespace)
    assert held.metadata.deletion_timestamp is not None
    v1.patch_namespaced_config_map("held", namespace, [{"op": "remove", "path": "/metadata/finalizers"}])
    with pytest.raises(ApiException) as exc:
        v1.read_namespaced_config_map("held", namespace)
    assert exc.value.status == 404


def test_token_request_is_verifiable_at_the_issuer(cluster: dict[str, Any], namespace: str) -> None:
    v1 = client.CoreV1Api(cluster["api"])
    v1.create_namespaced_service_account(namespace, {"metadata": {"name": "workload"}})
    tr = v1.create_namespaced_service_account_token(
        "workload",
        namespace,
        client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[WI_AUDIENCE], expiration_seconds=3600)
        ),
    )
    token = tr.status.token
    issuer = cluster["endpoints"].issuer_url
    assert issuer.endswith("/")
    disco = httpx.get(f"{issuer}.well-known/openid-configuration", verify=cluster["ca"]).json()
    assert disco["issuer"] == issuer
    jwks = httpx.get(disco["jwks_uri"], verify=cluster["ca"]).json()
    key = jwt.PyJWKSet.from_dict(jwks).keys[0]
    assert jwt.get_unverified_header(token)["kid"] == key.key_id
    claims = jwt.decode(token, key.key, algorithms=["RS256"], audience=WI_AUDIENCE, issuer=issuer)
    assert claims["sub"] == f"system:serviceaccount:{namespace}:workload"
    assert claims["aud"] == [WI_AUDIENCE]
    assert 3590 <= claims["exp"] - claims["iat"] <= 3600
    assert claims["kubernetes.io"]["namespace"] == namespace
    assert claims["kubernetes.io"]["serviceaccount"]["name"] == "workload"
    with pytest.raises(ApiException) as exc:
        v1.create_namespaced_service_account_token(
            "nobody",
            namespace,
            client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=["x"])),
        )
    assert exc.value.status == 404


def test_issuer_is_unknown_for_other_paths(cluster: dict[str, Any]) -> None:
    issuer = cluster["endpoints"].issuer_url
    other = issuer.rsplit("/", 2)[0] + "/00000000-0000-0000-0000-000000000000/"
    assert httpx.get(f"{other}.well-known/openid-configuration", verify=cluster["ca"]).status_code == 404


def test_state_survives_a_restart(tmp_path: Path) -> None:
    cid = "/subscriptions/s/resourcegroups/rg/providers/microsoft.containerservice/managedclusters/aks-r"
    with Sandbox(tmp_path, time_scale=0.0) as sb:
        backend = sb.ctx.services["clusters"]
        endpoints = backend.ensure_cluster(
            cid,
            name="aks-r",
            location="eastus",
            oidc_issuer=True,
            workload_identity=True,
            keyvault_secrets_provider=True,
            node_count=1,
        )
        store = sb.ctx.services["k8s"].store(backend.key_for(cid))
        store.create(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "keep", "namespace": "default"}}
        )
        token, _ = sb.ctx.services["k8s"].mint_token(store.key, "default", "default", WI_AUDIENCE)
        kubeconfig = backend.kubeconfig(cid)
        assert (tmp_path / "k8s" / store.key / "tokens.json").stat().st_mode & 0o077 == 0
        rv = store.resource_version
    with Sandbox(tmp_path, time_scale=0.0) as sb:
        backend = sb.ctx.services["clusters"]
        assert (
            backend.ensure_cluster(
                cid,
                name="aks-r",
                location="eastus",
                oidc_issuer=True,
                workload_identity=True,
                keyvault_secrets_provider=True,
                node_count=1,
            ).issuer_url
            == endpoints.issuer_url
        )
        store = sb.ctx.services["k8s"].store(backend.key_for(cid))
        assert store.get("v1", "ConfigMap", "keep", "default")["metadata"]["name"] == "keep"
        assert backend.kubeconfig(cid) == kubeconfig  # same server, CA and token after a restart
        assert store.resource_version >= rv
        assert (
            store.find(
                "apiextensions.k8s.io/v1",
                "CustomResourceDefinition",
                "secretproviderclasses.secrets-store.csi.x-k8s.io",
            )
            is not None
        )
        jwks = sb.ctx.services["k8s"].jwks(store.key)
        key = jwt.PyJWKSet.from_dict(jwks).keys[0]
        jwt.decode(token, key.key, algorithms=["RS256"], audience=WI_AUDIENCE)
        backend.delete_cluster(cid)
        assert backend.key_for(cid) is None


def test_list_in_chunks(cluster: dict[str, Any], namespace: str) -> None:
    v1 = client.CoreV1Api(cluster["api"])
    for i in range(5):
        v1.create_namespaced_config_map(namespace, {"metadata": {"name": f"page-{i}", "labels": {"pg": "1"}}})
    names: list[str] = []
    token = None
    while True:
        page = v1.list_namespaced_config_map(namespace, label_selector="pg=1", limit=2, _continue=token)
        names += [i.metadata.name for i in page.items]
        token = page.metadata._continue
        if not token:
            break
        assert page.metadata.remaining_item_count > 0
    assert names == [f"page-{i}" for i in range(5)]
