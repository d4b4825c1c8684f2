"""The cluster store's contract (sandbox/k8s/store.py) and the HTTP details no client test reaches.

Sources: strategic merge patch directives (k8s.io/apimachinery ``strategicpatch`` and the
kubernetes community doc "strategic-merge-patch.md"), RFC 7386, watch semantics (api-conventions
"Efficient detection of changes"; 410 Expired "too old resource version"), namespace lifecycle
(403 "unable to create new content in namespace ... because it is being terminated"), KEP-2885
field validation (``Warning: 299`` headers).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from sandbox.k8s.store import (
    MERGE_PATCH,
    STRATEGIC_MERGE_PATCH,
    ApiError,
    ClusterStore,
    Forbidden,
    Invalid,
    WatchEvent,
)
from sandbox.server import Sandbox


@pytest.fixture(scope="module")
def cluster(sandbox: Sandbox) -> Iterator[dict[str, Any]]:
    backend = sandbox.ctx.services["clusters"]
    name = f"aks-store-{time.time_ns() % 100000}"
    cid = "/subscriptions/s/resourcegroups/rg-store/providers/"
    cid += f"microsoft.containerservice/managedclusters/{name}"
    endpoints = backend.ensure_cluster(
        cid,
        name=name,
        location="eastus",
        oidc_issuer=True,
        workload_identity=True,
        keyvault_secrets_provider=False,
        node_count=1,
    )
    key = backend.key_for(cid)
    token = backend.tokens(key)["user"]
    http = httpx.Client(
        base_url=endpoints.server_url,
        verify=str(sandbox.ctx.tls.ca_bundle),
        headers={"Authorization": f"Bearer {token}"},
        timeout=20,
    )
    yield {"store": sandbox.ctx.services["k8s"].store(key), "http": http, "server": endpoints.server_url}
    http.close()
    backend.delete_cluster(cid)


@pytest.fixture
def store(cluster: dict[str, Any]) -> ClusterStore:
    return cluster["store"]


@pytest.fixture
def ns(store: ClusterStore, unique: str) -> str:
    store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"s-{unique}"}})
    return f"s-{unique}"


def pod(name: str, ns: str, **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, **meta},
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "nginx",
                    "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                    "ports": [{"containerPort": 80}],
                },
                {"name": "side", "image": "busybox"},
            ],
            "volumes": [{"name": "v", "emptyDir": {}}],
        },
    }


def test_strategic_merge_patch_directives(store: ClusterStore, ns: str) -> None:
    store.create(pod("p", ns, finalizers=["a/one", "a/two"]))
    patched = store.patch(
        "v1",
        "Pod",
        "p",
        {
            "metadata": {"$deleteFromPrimitiveList/finalizers": ["a/one"], "finalizers": ["a/three"]},
            "spec": {
                "$setElementOrder/containers": [{"name": "side"}, {"name": "app"}],
                "containers": [
                    {"name": "app", "env": [{"name": "A", "$patch": "delete"}, {"name": "C", "value": "3"}]},
                    {"name": "side", "image": "busybox:1.36"},
                ],
                "volumes": [{"name": "v", "$retainKeys": ["name", "configMap"], "configMap": {"name": "c"}}],
            },
        },
        STRATEGIC_MERGE_PATCH,
        ns,
    )
    assert patched["metadata"]["finalizers"] == ["a/two", "a/three"]
    containers = patched["spec"]["containers"]
    assert [c["name"] for c in containers] == ["side", "app"]
    assert containers[0]["image"] == "busybox:1.36"
    assert [e["name"] for e in containers[1]["env"]] == ["B", "C"]
    assert containers[1]["ports"] == [{"containerPort": 80}]
    assert patched["spec"]["volumes"] == [{"name": "v", "configMap": {"name": "c"}}]
    replaced = store.patch(
        "v1",
        "Pod",
        "p",
        {"spec": {"volumes": [{"name": "w", "emptyDir": {}}, {"$patch": "replace"}]}},
        STRATEGIC_MERGE_PATCH,
        ns,
    )
    assert replaced["spec"]["volumes"] == [{"name": "w", "emptyDir": {}}]


def test_merge_patch_null_deletes_and_lists_replace(store: ClusterStore, ns: str) -> None:
    store.create(pod("m", ns, labels={"a": "1", "b": "2"}))
    out = store.patch("v1", "Pod", "m", {"metadata": {"labels": {"a": None}}}, MERGE_PATCH, ns)
    assert out["metadata"]["labels"] == {"b": "2"}


def test_generate_name_generation_and_noop_updates(store: ClusterStore, ns: str) -> None:
    created = store.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"generateName": "web-", "namespace": ns},
            "spec": {"containers": [{"name": "c", "image": "i"}]},
        }
    )
    name = created["metadata"]["name"]
    assert name.startswith("web-") and len(name) == len("web-") + 5
    same = store.update(created)
    assert same["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    labelled = dict(created, metadata={**created["metadata"], "labels": {"x": "y"}})
    after = store.update(labelled)
    assert after["metadata"]["generation"] == 1  # metadata is not spec
    assert int(after["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])


def test_subscriptions_callbacks_and_queues(store: ClusterStore, ns: str) -> None:
    seen: list[tuple[str, str]] = []
    sub = store.subscribe(
        lambda ev: seen.append((ev.type, ev.object["metadata"]["name"])),
        api_version="v1",
        kind="ConfigMap",
        namespace=ns,
    )
    store.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": ns}})
    store.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": ns}})
    store.delete("v1", "ConfigMap", "c", ns)
    sub.close()
    store.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "after", "namespace": ns}})
    assert seen == [("ADDED", "c"), ("DELETED", "c")]

    async def consume() -> list[WatchEvent]:
        qsub = store.subscribe_queue(api_version="v1", kind="ConfigMap", namespace=ns)
        writer = threading.Thread(
            target=store.create,
            args=({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "q", "namespace": ns}},),
        )
        writer.start()
        assert qsub.queue is not None
        ev = await asyncio.wait_for(qsub.queue.get(), 5)
        writer.join()
        qsub.close()
        return [ev]

    events = asyncio.run(consume())
    assert events[0].type == "ADDED" and events[0].object["metadata"]["name"] == "q"


def test_admission_mutators_and_validators(store: ClusterStore, ns: str) -> None:
    def mutate(obj: dict[str, Any], op: str, _store: ClusterStore) -> None:
        if obj["metadata"].get("namespace") == ns:
            obj["metadata"].setdefault("annotations", {})["mutated"] = op

    def deny(obj: dict[str, Any], old: dict[str, Any] | None, op: str, _store: ClusterStore) -> None:
        if obj["metadata"]["name"] == "forbidden":
            raise Forbidden('pods "forbidden" is forbidden: denied by the test')

    store.add_mutator("v1", "Pod", mutate)
    store.add_validator("v1", "Pod", deny)
    assert store.create(pod("ok", ns))["metadata"]["annotations"] == {"mutated": "CREATE"}
    with pytest.raises(Forbidden):
        store.create(pod("forbidden", ns))


def test_terminating_namespace_refuses_new_content(store: ClusterStore, ns: str) -> None:
    store.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "hold", "namespace": ns, "finalizers": ["x/y"]},
        }
    )
    store.delete("v1", "Namespace", ns)
    status = store.get("v1", "Namespace", ns)["status"]
    assert status["phase"] == "Terminating"
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["NamespaceContentRemaining"]["message"] == (
        "Some resources are remaining: configmaps has 1 resource instances"
    )
    assert conditions["NamespaceFinalizersRemaining"]["message"] == (
        "Some content in the namespace has finalizers remaining: x/y in 1 resource instances"
    )
    with pytest.raises(Forbidden) as exc:
        store.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "new", "namespace": ns}})
    assert "because it is being terminated" in exc.value.message
    with pytest.raises(Forbidden):  # no new finalizers on an object being deleted
        held = store.get("v1", "ConfigMap", "hold", ns)
        held["metadata"]["finalizers"].append("x/z")
        store.update(held)
    held = store.get("v1", "ConfigMap", "hold", ns)
    held["metadata"]["finalizers"] = []
    store.update(held)
    assert store.find("v1", "Namespace", ns) is None


def test_orphan_propagation_keeps_dependents(store: ClusterStore, ns: str) -> None:
    owner = store.create(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "o", "namespace": ns}}
    )
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "o", "uid": owner["metadata"]["uid"]}
    store.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "d", "namespace": ns, "ownerReferences": [ref]},
        }
    )
    store.delete("v1", "ConfigMap", "o", ns, propagation_policy="Orphan")
    assert "ownerReferences" not in store.get("v1", "Secret", "d", ns)["metadata"]


def test_crd_schema_validation_reports_causes(store: ClusterStore, ns: str) -> None:
    store.create(
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "things.store.test"},
            "spec": {
                "group": "store.test",
                "scope": "Namespaced",
                "names": {"plural": "things", "kind": "Thing"},
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
                                        "required": ["n"],
                                        "properties": {
                                            "n": {"type": "integer"},
                                            "s": {"type": "string", "nullable": True},
                                            "mode": {"type": "string", "default": "auto"},
                                        },
                                    }
                                },
                            }
                        },
                    }
                ],
            },
        }
    )
    with pytest.raises(Invalid) as exc:
        store.create(
            {
                "apiVersion": "store.test/v1",
                "kind": "Thing",
                "metadata": {"name": "t", "namespace": ns},
                "spec": {"s": "x"},
            }
        )
    assert exc.value.details["causes"][0]["field"] == "spec.n"
    assert exc.value.message.startswith('Thing.store.test "t" is invalid: spec.n: Required value')
    ok = store.create(
        {
            "apiVersion": "store.test/v1",
            "kind": "Thing",
            "metadata": {"name": "t", "namespace": ns},
            "spec": {"n": 1, "s": None, "dropped": True},
        }
    )
    assert ok["spec"] == {"n": 1, "s": None, "mode": "auto"}  # pruned and defaulted


def test_http_watch_resume_expiry_and_selector_transitions(cluster: dict[str, Any], ns: str) -> None:
    http, store = cluster["http"], cluster["store"]
    store.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "w", "namespace": ns, "labels": {"team": "a"}},
        }
    )
    rv = store.resource_version
    cm = store.get("v1", "ConfigMap", "w", ns)
    cm["metadata"]["labels"] = {"team": "b"}
    store.update(cm)
    cm = store.get("v1", "ConfigMap", "w", ns)
    cm["metadata"]["labels"] = {"team": "a"}
    store.update(cm)
    lines = http.get(
        f"/api/v1/namespaces/{ns}/configmaps",
        params={
            "watch": "true",
            "resourceVersion": str(rv),
            "labelSelector": "team=a",
            "timeoutSeconds": "1",
        },
    ).text.splitlines()
    assert [json.loads(line)["type"] for line in lines] == ["DELETED", "ADDED"]
    store._history.clear()  # as if the kept history had rolled past rv 1 (this test's own cluster)
    store.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "w2", "namespace": ns}})
    expired = http.get(
        f"/api/v1/namespaces/{ns}/configmaps",
        params={"watch": "true", "resourceVersion": "1", "timeoutSeconds": "1"},
    ).text
    event = json.loads(expired.splitlines()[0])
    assert event["type"] == "ERROR" and event["object"]["code"] == 410
    assert event["object"]["reason"] == "Expired"
    initial = http.get(
        f"/api/v1/namespaces/{ns}/configmaps",
        params={
            "watch": "true",
            "sendInitialEvents": "true",
            "resourceVersionMatch": "NotOlderThan",
            "allowWatchBookmarks": "true",
            "timeoutSeconds": "1",
        },
    ).text.splitlines()
    events = [json.loads(line) for line in initial]
    assert events[0]["type"] == "ADDED"
    assert events[-1]["type"] == "BOOKMARK"
    assert events[-1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


def test_http_warnings_dry_run_auth_and_discovery(cluster: dict[str, Any], sandbox: Sandbox, ns: str) -> None:
    http = cluster["http"]
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "warn"}, "bogus": 1}
    r = http.post(f"/api/v1/namespaces/{ns}/configmaps", json=body, params={"dryRun": "All"})
    assert r.status_code == 201 and 'unknown field \\"bogus\\"' in r.headers["warning"]
    assert http.get(f"/api/v1/namespaces/{ns}/configmaps/warn").status_code == 404  # dry run stored nothing
    anonymous = httpx.get(f"{cluster['server']}/api/v1/namespaces", verify=str(sandbox.ctx.tls.ca_bundle))
    assert anonymous.status_code == 401 and anonymous.json()["reason"] == "Unauthorized"
    r = http.get("/apis/apps/v1")
    deploy = next(x for x in r.json()["resources"] if x["name"] == "deployments")
    assert r.json()["groupVersion"] == "apps/v1"
    assert (
        deploy["shortNames"] == ["deploy"] and deploy["categories"] == ["all"] and "watch" in deploy["verbs"]
    )
    root = http.get("/openapi/v3").json()["paths"]
    url = sandbox.ctx.base_url + root["apis/apps/v1"]["serverRelativeURL"]
    doc = http.get(url).json()
    patch = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"]["kind"] == "Deployment"
    assert any(p["name"] == "fieldValidation" for p in patch["parameters"])


def test_builtin_field_tables_match_the_installed_client() -> None:
    """``builtin_fields.json`` is what the pinned kubernetes client's models say (regenerate with
    ``python -m sandbox.k8s.schema`` when the client changes)."""
    from sandbox.k8s.schema import FIELDS_FILE, _model_closure, snapshot_roots

    assert _model_closure(snapshot_roots()) == json.loads(FIELDS_FILE.read_text())


def test_backend_kubeconfig_addon_toggle_and_issuer_switch(sandbox: Sandbox) -> None:
    """ClusterBackend (sandbox/clusters.py): kubeconfig as AKS returns it (server, embedded CA,
    token; ``clusterUser_<rg>_<name>``), the Key Vault addon's CRDs follow the flag, and the
    issuer only answers while the OIDC issuer is enabled."""
    import base64

    import yaml

    backend = sandbox.ctx.services["clusters"]
    name = f"aks-toggle-{time.time_ns() % 100000}"
    cid = "/subscriptions/s/resourceGroups/rg-Toggle/providers/"
    cid += f"Microsoft.ContainerService/managedClusters/{name}"
    flags = {"location": "eastus", "workload_identity": True, "node_count": 1}
    ep = backend.ensure_cluster(cid, name=name, oidc_issuer=True, keyvault_secrets_provider=False, **flags)
    ca = str(sandbox.ctx.tls.ca_bundle)
    try:
        doc = yaml.safe_load(backend.kubeconfig(cid))
        assert doc["clusters"][0]["cluster"]["server"] == ep.server_url
        assert ep.server_url.startswith(sandbox.ctx.base_url + "/k8s/")
        ca_data = base64.b64decode(doc["clusters"][0]["cluster"]["certificate-authority-data"])
        assert ca_data == sandbox.ctx.tls.ca_bundle.read_bytes()
        assert doc["users"][0]["name"] == f"clusterUser_rg-toggle_{name}"
        admin = yaml.safe_load(backend.kubeconfig(cid.lower(), admin=True))
        assert admin["users"][0]["user"]["token"] != doc["users"][0]["user"]["token"]
        store = sandbox.ctx.services["k8s"].store(backend.key_for(cid))
        spc = "secretproviderclasses.secrets-store.csi.x-k8s.io"
        assert store.find("apiextensions.k8s.io/v1", "CustomResourceDefinition", spc) is None
        backend.ensure_cluster(cid, name=name, oidc_issuer=True, keyvault_secrets_provider=True, **flags)
        assert store.find("apiextensions.k8s.io/v1", "CustomResourceDefinition", spc) is not None
        assert store.rtype("secrets-store.csi.x-k8s.io/v1", "SecretProviderClass").namespaced
        disco = f"{ep.issuer_url}.well-known/openid-configuration"
        assert httpx.get(disco, verify=ca).status_code == 200
        backend.ensure_cluster(cid, name=name, oidc_issuer=False, keyvault_secrets_provider=False, **flags)
        assert store.find("apiextensions.k8s.io/v1", "CustomResourceDefinition", spc) is None
        assert httpx.get(disco, verify=ca).status_code == 404
    finally:
        backend.delete_cluster(cid)
    assert httpx.get(f"{ep.server_url}/version", verify=ca).status_code == 404
    backend.delete_cluster(cid)  # absent is fine


def test_events_expire_after_an_hour(store: ClusterStore, ns: str) -> None:
    def event(name: str, ts: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": ns},
            "involvedObject": {"kind": "Pod", "name": "p", "namespace": ns},
            "reason": "Test",
            "lastTimestamp": ts,
        }

    store.create(event("old", "2000-01-01T00:00:00Z"))
    store.create(event("new", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())))
    names = [e["metadata"]["name"] for e in store.list("v1", "Event", ns)[0]]
    assert names == ["new"]


def test_crd_deletion_waits_for_custom_resource_finalizers(store: ClusterStore, ns: str, unique: str) -> None:
    """PITFALLS P23: a CRD whose custom resources carry finalizers stays Terminating."""
    group = f"g{unique}.test"
    store.create(
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": f"apps.{group}"},
            "spec": {
                "group": group,
                "names": {"plural": "apps", "kind": "App"},
                "scope": "Namespaced",
                "versions": [
                    {
                        "name": "v1",
                        "served": True,
                        "storage": True,
                        "schema": {
                            "openAPIV3Schema": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            }
                        },
                    }
                ],
            },
        }
    )
    av = f"{group}/v1"
    store.create(
        {
            "apiVersion": av,
            "kind": "App",
            "metadata": {"name": "a", "namespace": ns, "finalizers": ["example.com/cleanup"]},
        }
    )
    store.create({"apiVersion": av, "kind": "App", "metadata": {"name": "b", "namespace": ns}})
    crd = store.delete("apiextensions.k8s.io/v1", "CustomResourceDefinition", f"apps.{group}")
    assert crd["metadata"]["deletionTimestamp"]
    assert {c["type"]: c["status"] for c in crd["status"]["conditions"]}["Terminating"] == "True"
    assert store.find(av, "App", "b", ns) is None
    assert store.get(av, "App", "a", ns)["metadata"]["deletionTimestamp"]
    with pytest.raises(ApiError) as exc:
        store.create({"apiVersion": av, "kind": "App", "metadata": {"name": "c", "namespace": ns}})
    assert exc.value.code == 405
    held = store.get(av, "App", "a", ns)
    held["metadata"]["finalizers"] = []
    store.update(held)
    assert store.find("apiextensions.k8s.io/v1", "CustomResourceDefinition", f"apps.{group}") is None
    with pytest.raises(ApiError):
        store.rtype(av, "App")


def test_crd_name_must_be_plural_dot_group(store: ClusterStore) -> None:
    with pytest.raises(Invalid) as exc:
        store.create(
            {
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "CustomResourceDefinition",
                "metadata": {"name": "wrong.example.com"},
                "spec": {
                    "group": "example.com",
                    "names": {"plural": "things", "kind": "Thing"},
                    "scope": "Namespaced",
                    "versions": [{"name": "v1", "served": True, "storage": True}],
                },
            }
        )
    assert 'must be spec.names.plural+"."+spec.group' in exc.value.message
