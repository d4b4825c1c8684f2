"""A fresh pair of eyes on the sandbox: bad input, secrets, restarts, concurrency, fidelity.

Each test names the rule it holds the sandbox to (an azure-specs file, a Kubernetes API convention,
a PITFALLS row or CLIENT-FACTS line).
"""

from __future__ import annotations

import hashlib
import logging
import ssl
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from azure.core.exceptions import HttpResponseError

from sandbox.arm.testing import credential
from sandbox.k8s import yamlio
from sandbox.k8s.service import load_crd
from sandbox.server import Sandbox


def test_load_crd_parses_with_libyaml_once() -> None:
    """The 416 kB Application CRD took ~0.45 s per parse with the pure-Python loader."""
    if yaml.__with_libyaml__:
        assert yamlio.Loader is yaml.CSafeLoader
    started = time.perf_counter()
    docs = [load_crd("application-crd.yaml") for _ in range(4)]
    assert time.perf_counter() - started < 1.0
    assert docs[0]["metadata"]["name"] == "applications.argoproj.io"
    docs[0]["metadata"]["name"] = "changed"  # callers get their own copy
    assert load_crd("application-crd.yaml")["metadata"]["name"] == "applications.argoproj.io"


# -- bad input: 400 in the service's own envelope, never a 500 or a hang, and nothing written ------


def _arm(conn: dict[str, Any]) -> httpx.Client:
    token = credential(conn).get_token("https://management.azure.com/.default").token
    return httpx.Client(
        verify=ssl.create_default_context(cafile=conn["ca_bundle"]),
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def _state_digest(sb: Sandbox, server: str | None = None) -> dict[str, str]:
    """Hashes of the state documents a bad request could touch: everything outside the clusters, the
    cluster registry, and (given its ``server`` URL) the test's own cluster minus its events.

    Other tests' clusters keep reconciling in the shared session sandbox (mount retries write events,
    Argo CD writes status), so their documents change under us without any request of this test.
    """
    own = f"k8s-{server.rstrip('/').rsplit('/', 1)[-1]}" if server else None

    def relevant(name: str) -> bool:
        if not name.startswith("k8s-") or name == "k8s-clusters.json":
            return True
        return own is not None and name.startswith(own) and "--core-events" not in name

    digest = {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((sb.state_dir / "state").glob("*.json"))
        if relevant(p.name)
    }
    assert own is None or any(name.startswith(own) for name in digest), f"no state of {own}"
    return digest


DEEP_OBJECT = b'{"location": "eastus", "tags": ' + b'{"a":' * 5000 + b'"1"' + b"}" * 5000 + b"}"
DEEP_LIST = b"[" * 100_000 + b"]" * 100_000


def test_arm_deeply_nested_json_is_invalid_request_content(
    sandbox: Sandbox, conn: dict[str, Any], unique: str
) -> None:
    """ARM answers unparseable content with 400 ``InvalidRequestContent`` (issue 2: never a 500)."""
    url = f"{conn['arm_endpoint']}/subscriptions/{conn['subscription_id']}/resourcegroups/rg-deep-{unique}"
    before = _state_digest(sandbox)
    with _arm(conn) as c:
        for raw in (DEEP_OBJECT, DEEP_LIST):
            r = c.put(
                f"{url}?api-version=2025-04-01", content=raw, headers={"Content-Type": "application/json"}
            )
            assert r.status_code == 400, r.text[:200]
            assert r.json()["error"]["code"] == "InvalidRequestContent"
    assert _state_digest(sandbox) == before


def test_aks_agent_pool_count_is_validated_not_built(
    sandbox: Sandbox, conn: dict[str, Any], unique: str
) -> None:
    """``count`` is an integer, 1..1000 for System pools, 0..1000 for User pools (the REST spec's
    ``ManagedClusterAgentPoolProfile.count`` description); ``managedOutboundIPs.count`` 1..100. A count of
    10**9 used to build 10**9 nodes inside the request and hang the whole sandbox."""
    group = f"rg-count-{unique}"
    base = f"{conn['arm_endpoint']}/subscriptions/{conn['subscription_id']}/resourceGroups/{group}"
    url = f"{base}/providers/Microsoft.ContainerService/managedClusters/aks-count?api-version=2026-08-01"

    def body(count: Any, *, mode: str = "System", outbound: Any = 1) -> dict[str, Any]:
        return {
            "location": "eastus",
            "properties": {
                "dnsPrefix": "aks-count",
                "agentPoolProfiles": [
                    {"name": "pool", "count": count, "vmSize": "Standard_D2s_v5", "mode": mode}
                ],
                "networkProfile": {"loadBalancerProfile": {"managedOutboundIPs": {"count": outbound}}},
            },
        }

    with _arm(conn) as c:
        assert c.put(f"{base}?api-version=2025-04-01", json={"location": "eastus"}).status_code == 201
        before = _state_digest(sandbox)
        cases = [
            (body(10**9), "InvalidParameter"),
            (body(1001), "InvalidParameter"),
            (body(0), "InvalidParameter"),
            (body(-1, mode="User"), "InvalidParameter"),
            (body("x"), "InvalidRequestContent"),
            (body(1.5), "InvalidRequestContent"),
            (body(True), "InvalidRequestContent"),
            (body(2, outbound=10**9), "InvalidParameter"),
            (body(2, outbound="x"), "InvalidRequestContent"),
        ]
        for payload, code in cases:
            started = time.monotonic()
            r = c.put(url, json=payload)
            assert time.monotonic() - started < 10
            assert r.status_code == 400, (payload["properties"], r.status_code, r.text[:200])
            assert r.json()["error"]["code"] == code, r.text[:200]
        assert _state_digest(sandbox) == before


def test_aks_cluster_name_follows_the_spec_pattern(
    sandbox: Sandbox, conn: dict[str, Any], unique: str
) -> None:
    """managedClusters ``resourceName``: 1-63 characters, ``^[a-zA-Z0-9]$|^[a-zA-Z0-9][-_a-zA-Z0-9]{0,61}
    [a-zA-Z0-9]$`` (the containerservice REST spec's path parameter). A 200-character name used to be
    accepted; its cluster's state file name was too long, and every later request got a 500."""
    group = f"rg-aksname-{unique}"
    base = f"{conn['arm_endpoint']}/subscriptions/{conn['subscription_id']}/resourceGroups/{group}"
    body = {
        "location": "eastus",
        "properties": {
            "dnsPrefix": "x",
            "agentPoolProfiles": [
                {"name": "pool", "count": 1, "vmSize": "Standard_D2s_v5", "mode": "System"}
            ],
        },
    }
    with _arm(conn) as c:
        assert c.put(f"{base}?api-version=2025-04-01", json={"location": "eastus"}).status_code == 201
        before = _state_digest(sandbox)
        for name in ("x" * 64, "x" * 200, "-x", "x-", "a.b", "%2e%2e", "ünï", "a%00b", "a%5Cb"):
            r = c.put(
                f"{base}/providers/Microsoft.ContainerService/managedClusters/{name}?api-version=2026-08-01",
                json=body,
            )
            assert r.status_code == 400, (name, r.status_code, r.text[:200])
            assert r.json()["error"]["code"] == "InvalidResourceName"
        assert _state_digest(sandbox) == before
        assert c.get(f"{base}?api-version=2025-04-01").status_code == 200


def test_a_crashing_operation_fails_alone(sandbox: Sandbox, conn: dict[str, Any], unique: str) -> None:
    """An operation whose completion raises an unexpected error is Failed (InternalServerError in its
    status, as ARM reports an RP crash) instead of being retried by every later request's settle_all,
    which turned each of them into a 500."""
    from sandbox.arm import lro
    from sandbox.arm.common import state

    def crash(ctx: Any, data: dict[str, Any], op: dict[str, Any]) -> None:
        raise OSError("File name too long")

    lro.COMPLETERS["test.crash"] = crash
    try:
        with state(sandbox.ctx).change() as data:
            op = lro.start(
                sandbox.ctx,
                data,
                kind="test.crash",
                target=unique,
                duration_key="identity.create",
                provider="Microsoft.Resources",
                location="eastus",
            )
        url = f"{conn['arm_endpoint']}/subscriptions/{conn['subscription_id']}/resourcegroups"
        with _arm(conn) as c:
            assert c.get(f"{url}?api-version=2025-04-01").status_code == 200
            assert c.get(f"{url}?api-version=2025-04-01").status_code == 200
        done = lro.find(sandbox.ctx, op["id"])
        assert done["status"] == "Failed" and done["error"]["code"] == "InternalServerError"
        assert "File name too long" not in done["error"]["message"]  # no internals in the envelope
    finally:
        del lro.COMPLETERS["test.crash"]


# -- secrets: only where a real service keeps them --------------------------------------------------


def test_secret_canaries_stay_where_real_services_keep_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """P24/P28 and the working rules: client secrets, access tokens, ServiceAccount tokens and Key Vault
    secret values never appear in the journal, logs, error texts or state documents, except where the
    real service keeps them: the vault's secrets (``state/keyvault.json``), the connection file and the
    tenant's own identity record (``connection.json``, ``identity.json``), the kubeconfig tokens file
    (``k8s/<key>/tokens.json``, as AKS keeps local-account tokens)."""
    import jwt
    from azure.core.exceptions import ClientAuthenticationError
    from azure.identity import ClientSecretCredential
    from azure.keyvault.secrets import SecretClient
    from azure.mgmt.authorization import AuthorizationManagementClient
    from azure.mgmt.keyvault import KeyVaultManagementClient
    from azure.mgmt.resource.resources import ResourceManagementClient

    from sandbox.arm.testing import mgmt_client

    caplog.set_level(logging.DEBUG)
    wrong = f"canary-wrong-secret-{uuid.uuid4().hex}"
    value = f"canary-vault-value-{uuid.uuid4().hex}"
    with Sandbox(tmp_path / "sb", time_scale=0.0) as sb:
        conn = sb.connection
        bad = ClientSecretCredential(
            conn["tenant_id"],
            conn["client_id"],
            wrong,
            authority=conn["authority_host"],
            disable_instance_discovery=True,
            connection_verify=conn["ca_bundle"],
        )
        with pytest.raises(ClientAuthenticationError) as err:
            bad.get_token("https://management.azure.com/.default")
        assert wrong not in str(err.value)
        cred = credential(conn)
        arm_token = cred.get_token("https://management.azure.com/.default").token
        kv_token = cred.get_token("https://vault.azure.net/.default").token
        mgmt_client(ResourceManagementClient, conn).resource_groups.create_or_update(
            "rg-canary", {"location": "eastus"}
        )
        vault = (
            mgmt_client(KeyVaultManagementClient, conn)
            .vaults.begin_create_or_update(
                "rg-canary",
                "kv-canary",
                {
                    "location": "eastus",
                    "properties": {"tenantId": conn["tenant_id"], "sku": {"family": "A", "name": "standard"}},
                },
            )
            .result(timeout=30)
        )
        client = SecretClient(
            vault.properties.vault_uri,
            cred,
            verify_challenge_resource=False,
            connection_verify=conn["ca_bundle"],
        )
        with pytest.raises(HttpResponseError) as denied:  # no data-plane role yet (P8)
            client.set_secret("canary", value)
        assert value not in str(denied.value)
        mgmt_client(AuthorizationManagementClient, conn).role_assignments.create(
            vault.id,
            str(uuid.uuid4()),
            {
                "role_definition_id": f"/subscriptions/{conn['subscription_id']}/providers/"
                "Microsoft.Authorization/roleDefinitions/b86a8fe4-44ce-4948-aee5-eccb2c155cd7",
                "principal_id": jwt.decode(arm_token, options={"verify_signature": False})["oid"],
                "principal_type": "ServicePrincipal",
            },
        )
        client.set_secret("canary", value)
        assert client.get_secret("canary").value == value
        # a cluster: kubeconfig bearer token and a TokenRequest (ServiceAccount token)
        svc = sb.ctx.services["k8s"]
        cid = (
            f"/subscriptions/{conn['subscription_id']}/resourceGroups/rg-canary/providers/"
            "Microsoft.ContainerService/managedClusters/aks-canary"
        )
        svc.ensure_cluster(
            cid,
            name="aks-canary",
            location="eastus",
            oidc_issuer=True,
            workload_identity=True,
            keyvault_secrets_provider=False,
            node_count=1,
        )
        kubeconfig = yaml.safe_load(svc.kubeconfig(cid))
        server = kubeconfig["clusters"][0]["cluster"]["server"]
        kube_token = kubeconfig["users"][0]["user"]["token"]
        with httpx.Client(
            verify=ssl.create_default_context(cafile=conn["ca_bundle"]),
            headers={"Authorization": f"Bearer {kube_token}"},
        ) as k:
            r = k.post(
                f"{server}/api/v1/namespaces/default/serviceaccounts/default/token",
                json={
                    "apiVersion": "authentication.k8s.io/v1",
                    "kind": "TokenRequest",
                    "spec": {"audiences": ["api://AzureADTokenExchange"]},
                },
            )
            assert r.status_code == 201, r.text
            sa_token = r.json()["status"]["token"]
            r = k.get(f"{server}/api/v1/namespaces/default/secrets/nope")
            assert r.status_code == 404 and kube_token not in r.text
        state_dir = sb.state_dir
    canaries = {
        "wrong client secret": (wrong, set()),
        "client secret": (conn["client_secret"], {"connection.json", "identity.json"}),
        "ARM token": (arm_token, set()),
        "Key Vault token": (kv_token, set()),
        "ServiceAccount token": (sa_token, set()),
        "kubeconfig token": (kube_token, {"tokens.json"}),
        "vault secret value": (value, {"keyvault.json"}),
    }
    out, errs = capfd.readouterr()
    logs = caplog.text + out + errs
    for what, (canary, allowed) in canaries.items():
        assert canary not in logs, f"{what} in the logs"
        for path in state_dir.rglob("*"):
            if path.is_file() and path.name not in allowed:
                assert canary.encode() not in path.read_bytes(), f"{what} in {path.relative_to(state_dir)}"


# -- Kubernetes: the API server's own validation ---------------------------------------------------


def _kube(sandbox: Sandbox, name: str) -> tuple[httpx.Client, str]:
    from tests.sandbox.controllers_support import cluster_id, make_cluster

    make_cluster(sandbox, name, keyvault=False, nodes=1)
    config = yaml.safe_load(sandbox.ctx.services["k8s"].kubeconfig(cluster_id(sandbox, name)))
    client = httpx.Client(
        verify=ssl.create_default_context(cafile=sandbox.connection["ca_bundle"]),
        headers={"Authorization": f"Bearer {config['users'][0]['user']['token']}"},
        timeout=20,
    )
    return client, config["clusters"][0]["cluster"]["server"]


def test_kubernetes_object_meta_and_replicas_are_validated(sandbox: Sandbox, unique: str) -> None:
    """apimachinery ``ValidateObjectMeta`` (labels: qualified-name keys, values <= 63 characters of
    ``(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?``; annotations and finalizers typed) and apps
    validation (``spec.replicas`` >= 0): 422 ``Invalid`` with causes, 400 ``BadRequest`` when the JSON type
    cannot decode. They used to be stored as sent; ``replicas: "x"`` then crashed the ReplicaSet
    controller on every sync."""
    client, server = _kube(sandbox, "aks-hardening")
    ns = f"hard-{unique}"
    with client as c:
        assert c.post(f"{server}/api/v1/namespaces", json={"metadata": {"name": ns}}).status_code == 201
        cms = f"{server}/api/v1/namespaces/{ns}/configmaps"
        before = _state_digest(sandbox, server)
        bad_meta = [
            ({"labels": {"a b": "c"}}, 422),
            ({"labels": {"a": "x" * 64}}, 422),
            ({"labels": {"a": "-x"}}, 422),
            ({"labels": {"a": 1}}, 400),
            ({"labels": ["x"]}, 400),
            ({"annotations": {"a": 1}}, 400),
            ({"annotations": {"a b": "c"}}, 422),
            ({"finalizers": "x"}, 400),
            ({"finalizers": [1]}, 400),
        ]
        for i, (meta, code) in enumerate(bad_meta):
            r = c.post(
                cms, json={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"m{i}", **meta}}
            )
            assert r.status_code == code, (meta, r.status_code, r.text[:200])
            assert r.json()["kind"] == "Status" and r.json()["code"] == code
        deployments = f"{server}/apis/apps/v1/namespaces/{ns}/deployments"

        def deployment(replicas: Any) -> dict[str, Any]:
            return {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "web"},
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {
                        "metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{"name": "web", "image": "nginx"}]},
                    },
                },
            }

        for replicas, code in (("x", 400), (True, 400), (1.5, 400), (-1, 422), (2**31, 400)):
            r = c.post(deployments, json=deployment(replicas))
            assert r.status_code == code, (replicas, r.status_code, r.text[:200])
        assert _state_digest(sandbox, server) == before
        # merge patch with a non-object body is a 400 too (RFC 7386 replaces the whole object)
        assert c.post(cms, json={"metadata": {"name": "ok"}}).status_code == 201
        r = c.patch(f"{cms}/ok", content=b"[1]", headers={"Content-Type": "application/merge-patch+json"})
        assert r.status_code in (400, 422), r.text[:200]
        r = c.get(f"{cms}?watch=1&timeoutSeconds=abc")
        assert r.status_code == 400 and r.json()["kind"] == "Status", r.text[:200]


def test_a_large_deployment_does_not_block_the_api_server(tmp_path: Path) -> None:
    """Kubernetes creates a big ReplicaSet's pods in bursts (``BurstReplicas``) and the API server keeps
    answering. The sandbox's reconcilers share the API server's event loop: 1000 replicas used to be
    created in one reconcile, during which not even ``/version`` answered."""
    with Sandbox(tmp_path / "sb", time_scale=0.0) as sb:
        client, server = _kube(sb, "aks-big")
        with client as c:
            deployment = {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "big"},
                "spec": {
                    "replicas": 1000,
                    "selector": {"matchLabels": {"app": "big"}},
                    "template": {
                        "metadata": {"labels": {"app": "big"}},
                        "spec": {"containers": [{"name": "big", "image": "nginx"}]},
                    },
                },
            }
            assert (
                c.post(f"{server}/apis/apps/v1/namespaces/default/deployments", json=deployment).status_code
                == 201
            )
            worst, started = 0.0, time.monotonic()
            while time.monotonic() - started < 3:
                t = time.monotonic()
                assert c.get(f"{server}/version", timeout=30).status_code == 200
                worst = max(worst, time.monotonic() - t)
                time.sleep(0.1)
            pods = c.get(f"{server}/api/v1/namespaces/default/pods").json()["items"]
        assert worst < 1.5, f"/version took {worst:.1f} s"
        assert pods  # and the controller did make progress


def test_kubernetes_decoding_and_validation_of_tokens_crds_pods(sandbox: Sandbox, unique: str) -> None:
    """Each was a 500 (or stored half-way): TokenRequest with a non-integer or huge ``expirationSeconds``
    (apiserver ValidateTokenRequest: 10 minutes .. 2^32 s) or non-list ``audiences``; a CRD whose spec,
    versions or schema have the wrong types, an unknown scope, or a ``pattern`` that is no regular
    expression (then every custom resource create crashed); a Pod whose ``containers`` is no list."""
    client, server = _kube(sandbox, "aks-hardening")
    ns = f"hard2-{unique}"
    with client as c:
        assert c.post(f"{server}/api/v1/namespaces", json={"metadata": {"name": ns}}).status_code == 201
        token = f"{server}/api/v1/namespaces/{ns}/serviceaccounts/default/token"
        for spec, code in (
            ({"audiences": ["x"], "expirationSeconds": "x"}, 400),
            ({"audiences": ["x"], "expirationSeconds": 10**30}, 422),
            ({"audiences": "x"}, 400),
            ({"audiences": [1]}, 400),
        ):
            r = c.post(
                token, json={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
            )
            assert r.status_code == code, (spec, r.status_code, r.text[:200])
            assert r.json()["kind"] == "Status"
        before = _state_digest(sandbox, server)
        crds = f"{server}/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
        group = f"h{unique}.example.com"

        def crd(**spec: Any) -> dict[str, Any]:
            return {
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "CustomResourceDefinition",
                "metadata": {"name": f"foos.{group}"},
                "spec": {
                    "group": group,
                    "names": {"plural": "foos", "kind": "Foo"},
                    "scope": "Namespaced",
                    "versions": [
                        {
                            "name": "v1",
                            "served": True,
                            "storage": True,
                            "schema": {
                                "openAPIV3Schema": {
                                    "type": "object",
                                    "properties": {"spec": {"type": "string", "pattern": "^a+$"}},
                                }
                            },
                        }
                    ],
                    **spec,
                },
            }

        bad_schema = [
            {"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {"type": 5}}}
        ]
        bad_pattern = [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {"spec": {"type": "string", "pattern": "("}},
                    }
                },
            }
        ]
        cases: list[tuple[dict[str, Any], int]] = [
            ({**crd(), "spec": "x"}, 400),
            (crd(versions="x"), 400),
            (crd(names=["foos"]), 400),
            (crd(scope="Weird"), 422),
            (crd(versions=bad_schema), 422),
            (crd(versions=bad_pattern), 422),
        ]
        for body, code in cases:
            r = c.post(crds, json=body)
            assert r.status_code == code, (body["spec"], r.status_code, r.text[:200])
            assert r.json()["kind"] == "Status"
        pods = f"{server}/api/v1/namespaces/{ns}/pods"
        r = c.post(
            pods,
            json={"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": "x"}},
        )
        assert r.status_code == 400, r.text[:200]
        assert _state_digest(sandbox, server) == before


def _yaml_bomb(name: str) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]")
    body = "\n".join("  " + line for line in lines)
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\nbomb:\n{body}\n"


def test_yaml_alias_bombs_are_refused(sandbox: Sandbox, unique: str) -> None:
    """sigs.k8s.io/yaml (go-yaml) refuses a document whose aliases expand excessively ("yaml: document
    contains excessive aliasing"); PyYAML shares aliased nodes, so the 9^9 expansion stayed hidden until
    something serialised it. The API server answers 400; Argo CD renders go through the same loader."""
    with pytest.raises(yaml.YAMLError, match="excessive aliasing"):
        yamlio.load(_yaml_bomb("x"))
    assert yamlio.load("a: &x [1, 2]\nb: *x\n") == {"a": [1, 2], "b": [1, 2]}  # ordinary aliases still work
    client, server = _kube(sandbox, "aks-hardening")
    with client as c:
        started = time.monotonic()
        r = c.post(
            f"{server}/api/v1/namespaces/default/configmaps",
            content=_yaml_bomb(f"bomb-{unique}").encode(),
            headers={"Content-Type": "application/yaml"},
        )
        assert r.status_code == 400 and "excessive aliasing" in r.json()["message"], r.text[:200]
        assert time.monotonic() - started < 5


def test_arm_tags_follow_the_documented_limits(sandbox: Sandbox, conn: dict[str, Any], unique: str) -> None:
    """tag-resources#limitations: 50 pairs, names <= 512 and values <= 256 characters, no ``<>%&\\?/`` in
    names, string values. They were stored as sent (a 100 MB tag value went into state/arm.json)."""
    group = f"rg-tags-{unique}"
    base = f"{conn['arm_endpoint']}/subscriptions/{conn['subscription_id']}/resourcegroups/{group}"
    identity = (
        f"{conn['arm_endpoint']}/subscriptions/{conn['subscription_id']}/resourceGroups/{group}/providers/"
        "Microsoft.ManagedIdentity/userAssignedIdentities/id-tags?api-version=2024-11-30"
    )
    with _arm(conn) as c:
        assert (
            c.put(
                f"{base}?api-version=2025-04-01", json={"location": "eastus", "tags": {"env": "dev"}}
            ).status_code
            == 201
        )
        before = _state_digest(sandbox)
        for tags, code in (
            ("x", "InvalidRequestContent"),
            ({"a": 1}, "InvalidRequestContent"),
            (["x"], "InvalidRequestContent"),
            ({f"k{i}": "v" for i in range(51)}, "InvalidTag"),
            ({"a" * 513: "v"}, "InvalidTag"),
            ({"a": "v" * 257}, "InvalidTag"),
            ({"a/b": "v"}, "InvalidTagNameCharacters"),
        ):
            for url, method in (
                (f"{base}?api-version=2025-04-01", "PUT"),
                (f"{base}?api-version=2025-04-01", "PATCH"),
                (identity, "PUT"),
            ):
                r = c.request(
                    method,
                    url,
                    json={"location": "eastus", "tags": tags} if method == "PUT" else {"tags": tags},
                )
                assert r.status_code == 400, (
                    method,
                    url[-40:],
                    tags if len(str(tags)) < 80 else "...",
                    r.text[:200],
                )
                assert r.json()["error"]["code"] == code
        assert _state_digest(sandbox) == before
        ok = {f"k{i}": "v" * 256 for i in range(50)}
        assert (
            c.put(f"{base}?api-version=2025-04-01", json={"location": "eastus", "tags": ok}).status_code
            == 200
        )


def test_vault_property_types_are_checked(sandbox: Sandbox, conn: dict[str, Any], unique: str) -> None:
    """VaultProperties' JSON types (createVault.json, the SDK model): each of these was stored as sent
    (``enableRbacAuthorization: "yes"`` then counted as true)."""
    group = f"rg-kvtypes-{unique}"
    base = f"{conn['arm_endpoint']}/subscriptions/{conn['subscription_id']}/resourceGroups/{group}"
    url = f"{base}/providers/Microsoft.KeyVault/vaults/kvt-{unique}?api-version=2026-05-15"
    good = {"tenantId": conn["tenant_id"], "sku": {"family": "A", "name": "standard"}}
    with _arm(conn) as c:
        assert c.put(f"{base}?api-version=2025-04-01", json={"location": "eastus"}).status_code == 201
        before = _state_digest(sandbox)
        for extra in (
            {"tenantId": 5},
            {"tenantId": "not-a-guid"},
            {"enableRbacAuthorization": "yes"},
            {"enablePurgeProtection": 1},
            {"softDeleteRetentionInDays": "x"},
            {"networkAcls": 5},
            {"accessPolicies": "x"},
            {"accessPolicies": [5]},
            {"accessPolicies": [{"tenantId": 1, "objectId": [], "permissions": "x"}]},
        ):
            r = c.put(url, json={"location": "eastus", "properties": {**good, **extra}})
            assert r.status_code == 400, (extra, r.status_code, r.text[:200])
            assert r.json()["error"]["code"] == "InvalidRequestContent", r.text[:200]
        assert _state_digest(sandbox) == before


def test_secret_set_body_types_and_size(conn: dict[str, Any], unique: str) -> None:
    """SecretSetParameters' types and the 25 KB value limit: ``attributes: "x"`` was a 500, and a
    value of any size was stored."""
    from azure.mgmt.keyvault import KeyVaultManagementClient
    from azure.mgmt.resource.resources import ResourceManagementClient

    from sandbox.arm.testing import mgmt_client
    from tests.sandbox.test_keyvault import OFFICER, grant, vault_body

    group = f"rg-kvset-{unique}"
    mgmt_client(ResourceManagementClient, conn).resource_groups.create_or_update(
        group, {"location": "eastus"}
    )
    vault = (
        mgmt_client(KeyVaultManagementClient, conn)
        .vaults.begin_create_or_update(group, f"kvs-{unique}", vault_body(conn))
        .result(timeout=30)
    )
    grant(conn, vault.id, OFFICER)
    token = credential(conn).get_token("https://vault.azure.net/.default").token
    url = f"{vault.properties.vault_uri}secrets/canary?api-version=2026-04-01"
    with httpx.Client(
        verify=ssl.create_default_context(cafile=conn["ca_bundle"]),
        headers={"Authorization": f"Bearer {token}"},
    ) as c:
        for body in (
            {"value": "x" * (25 * 1024 + 1)},
            {"value": "v", "contentType": 5},
            {"value": "v", "tags": "x"},
            {"value": "v", "tags": {"a": 1}},
            {"value": "v", "attributes": "x"},
            {"value": "v", "attributes": {"enabled": "yes"}},
            {"value": "v", "attributes": {"exp": "tomorrow"}},
        ):
            r = c.put(url, json=body)
            assert r.status_code == 400 and r.json()["error"]["code"] == "BadParameter", (
                str(body)[:80],
                r.text[:200],
            )
        assert c.put(url, json={"value": "x" * (25 * 1024)}).status_code == 200


def test_admin_settings_and_journal_refuse_bad_input(fresh_sandbox: Sandbox) -> None:
    """The admin API is the sandbox's own: a bad body is a 400 and changes nothing. ``time_scale: 1e308``
    used to put an endless sleep in front of every later request; strings, NaN and non-objects were 500s."""
    conn = fresh_sandbox.connection
    settings = f"{conn['admin_endpoint'].rstrip('/')}/_sandbox/settings"
    if conn["admin_endpoint"].rstrip("/").endswith("/_sandbox"):
        settings = f"{conn['admin_endpoint'].rstrip('/')}/settings"
    with httpx.Client(
        verify=ssl.create_default_context(cafile=conn["ca_bundle"]),
        headers={"Authorization": f"Bearer {conn['admin_token']}"},
        timeout=20,
    ) as c:
        before = c.get(settings).json()
        for raw in (
            b'{"time_scale": "fast"}',
            b'{"time_scale": -1}',
            b'{"time_scale": 1e308}',
            b'{"time_scale": NaN}',
            b'{"overrides": "x"}',
            b'{"overrides": {"vault.create": -5}}',
            b'{"time_scale": 0.5, "overrides": {"vault.create": "x"}}',
            b'{"caller_role": "God"}',
            b'{"bogus": 1}',
            b"[",
            b"[1]",
        ):
            r = c.put(settings, content=raw, headers={"Content-Type": "application/json"})
            assert r.status_code == 400, (raw, r.status_code, r.text[:200])
        assert c.get(settings).json() == before
        journal = settings.replace("/settings", "/journal")
        assert c.get(f"{journal}?since=abc").status_code == 400
        assert c.get(f"{journal}?since=-5").status_code == 200
        ok = c.put(settings, json={"overrides": {"pod.start": 0.2}})
        assert ok.status_code == 200 and ok.json()["overrides"] == {"pod.start": 0.2}


@pytest.mark.parametrize("scale", [-1.0, float("nan"), float("inf"), 1e308])
def test_sandbox_refuses_a_time_scale_it_cannot_run(tmp_path: Path, scale: float) -> None:
    """``serve --time-scale`` goes here: the same bounds as the settings API, checked before anything
    is created (1e308 made every request sleep forever)."""
    with pytest.raises(ValueError, match="time_scale"):
        Sandbox(tmp_path / "sb", time_scale=scale)
    assert not (tmp_path / "sb").exists()
