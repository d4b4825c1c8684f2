"""The sandbox's clusters: the ``ClusterBackend`` ARM drives, each cluster's store, keys and tokens.

Registered as ``ctx.services["clusters"]`` (the :class:`sandbox.clusters.ClusterBackend` seam) and
``ctx.services["k8s"]`` (the same object, for controllers: ``store(key)``, ``on_cluster(fn)``,
``mint_token(...)``).

Per cluster (``cluster_id`` = lower-cased ARM resource id):
- ``key``: ``<name>-<8 hex of sha256(cluster_id)>``, used in URLs: the API server is
  ``{base_url}/k8s/{key}``; the OIDC issuer is ``{base_url}/oidc/{tenant}/{uuid}/`` (AKS issues
  ``https://<region>.oic.prod-aks.azure.com/<tenant>/<uuid>/``, trailing slash included — as
  ``oidcIssuerProfile.issuerURL`` reports it, MicrosoftDocs "Create an OIDC provider on AKS").
- an RSA-2048 service-account signing key, ``STATE_DIR/k8s/<key>/sa.key`` (mode 0600), kept
  across restarts so issued tokens stay verifiable.
- bearer tokens for the user and admin kubeconfigs (AKS local accounts),
  ``STATE_DIR/k8s/<key>/tokens.json`` (mode 0600).

Extensions (Argo CD, ...) are installed by a hook the controllers provide as
``ctx.services["k8s.extensions"]``: an object with ``ensure_extension(store, *, name,
extension_type, version, release_train, configuration_settings)`` and
``delete_extension(store, name)``. Without a hook an extension installs nothing in the cluster.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import functools
import hashlib
import json
import logging
import os
import secrets
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sandbox.clusters import ClusterEndpoints
from sandbox.context import SandboxContext
from sandbox.k8s import yamlio
from sandbox.k8s.store import AlreadyExists, ClusterStore, Forbidden, NotFound, WatchEvent
from sandbox.persist import StateFile

log = logging.getLogger(__name__)

CRD_DIR = Path(__file__).parent / "crds"
CSI_CRDS = (
    "secrets-store.csi.x-k8s.io_secretproviderclasses.yaml",
    "secrets-store.csi.x-k8s.io_secretproviderclasspodstatuses.yaml",
)
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
MIN_TOKEN_SECONDS = 600  # TokenRequest validation: "may not specify a duration less than 10 minutes"


def _area(key: str, resource_key: str) -> str:
    """State area of one resource of one cluster: ``k8s-<key>--<group or core>-<plural>``."""
    group, plural = resource_key.split("/", 1)
    return f"k8s-{key}--{group or 'core'}-{plural}"


def cluster_key(cluster_id: str, name: str) -> str:
    return f"{name.lower()}-{hashlib.sha256(cluster_id.lower().encode()).hexdigest()[:8]}"


@functools.lru_cache(maxsize=8)
def _crd_json(filename: str) -> str:
    return json.dumps(yamlio.load((CRD_DIR / filename).read_text()))


def load_crd(filename: str) -> dict[str, Any]:
    """One of the vendored CRDs in ``sandbox/k8s/crds`` (see the README there): parsed once with
    libyaml, a fresh copy per call."""
    return dict(json.loads(_crd_json(filename)))


class K8sService:
    def __init__(self, ctx: SandboxContext) -> None:
        self.ctx = ctx
        self._lock = threading.RLock()
        self._stores: dict[str, ClusterStore] = {}
        self._keys: dict[str, rsa.RSAPrivateKey] = {}
        self._tokens: dict[str, dict[str, str]] = {}
        self._cluster_hooks: list[Callable[[ClusterStore], None]] = []
        self.registry = ctx.state("k8s-clusters")  # {"clusters": {key: info}}

    # -- cluster records ------------------------------------------------------------------------
    def clusters(self) -> dict[str, dict[str, Any]]:
        return dict(self.registry.read().get("clusters", {}))

    def info(self, key: str) -> dict[str, Any] | None:
        return self.registry.read().get("clusters", {}).get(key)

    def key_for(self, cluster_id: str) -> str | None:
        for key, info in self.clusters().items():
            if info["id"] == cluster_id.lower():
                return key
        return None

    def by_issuer(self, tenant: str, issuer_id: str) -> str | None:
        for key, info in self.clusters().items():
            if info["issuer_id"] == issuer_id and info["tenant"] == tenant:
                return key
        return None

    def issuer_url(self, key: str) -> str:
        info = self.info(key) or {}
        return f"{self.ctx.base_url}/oidc/{info['tenant']}/{info['issuer_id']}/"

    def server_url(self, key: str) -> str:
        return f"{self.ctx.base_url}/k8s/{key}"

    # -- stores ---------------------------------------------------------------------------------
    def store(self, key: str) -> ClusterStore:
        with self._lock:
            if key not in self._stores:
                if self.info(key) is None:
                    raise KeyError(f"no cluster {key}")
                ctx = self.ctx

                def files(resource_key: str, cluster: str = key) -> StateFile:
                    return ctx.state(_area(cluster, resource_key))

                self._stores[key] = ClusterStore(key=key, state=ctx.state(f"k8s-{key}"), files=files)
                new_store = self._stores[key]
                new_store.subscribe(
                    lambda ev: self._publish_root_ca(new_store, ev), api_version="v1", kind="Namespace"
                )
                for hook in self._cluster_hooks:
                    hook(self._stores[key])
            return self._stores[key]

    def _publish_root_ca(self, store: ClusterStore, event: WatchEvent) -> None:
        """kube-controller-manager's root-ca-cert-publisher: ``kube-root-ca.crt`` in every namespace."""
        meta = event.object["metadata"]
        if event.type != "ADDED" or meta.get("deletionTimestamp"):
            return
        with contextlib.suppress(AlreadyExists, NotFound, Forbidden):
            store.create(
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": "kube-root-ca.crt", "namespace": meta["name"]},
                    "data": {"ca.crt": self.ctx.tls.ca_bundle.read_text()},
                }
            )

    def stores(self) -> list[ClusterStore]:
        return [self.store(k) for k in self.clusters()]

    def on_cluster(self, fn: Callable[[ClusterStore], None]) -> None:
        """Call ``fn(store)`` now for every cluster and later for each new (or reloaded) one."""
        with self._lock:
            self._cluster_hooks.append(fn)
            existing = list(self._stores.values())
        for store in existing:
            fn(store)

    # -- keys and tokens ------------------------------------------------------------------------
    def _key_path(self, key: str) -> Path:
        return self.ctx.state_dir / "k8s" / key / "sa.key"

    def signing_key(self, key: str) -> rsa.RSAPrivateKey:
        with self._lock:
            if key not in self._keys:
                path = self._key_path(key)
                if path.exists():
                    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
                    assert isinstance(loaded, rsa.RSAPrivateKey)
                    self._keys[key] = loaded
                else:
                    pk = rsa.generate_private_key(public_exponent=65537, key_size=2048)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                    with os.fdopen(fd, "wb") as f:
                        f.write(
                            pk.private_bytes(
                                serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption(),
                            )
                        )
                    self._keys[key] = pk
            return self._keys[key]

    def tokens(self, key: str) -> dict[str, str]:
        """The bearer tokens of the user and admin kubeconfigs (``STATE_DIR/k8s/<key>/tokens.json``,
        mode 0600, beside the signing key: credentials stay out of the world-readable state)."""
        with self._lock:
            if key not in self._tokens:
                path = self.ctx.state_dir / "k8s" / key / "tokens.json"
                if path.exists():
                    self._tokens[key] = json.loads(path.read_text())
                else:
                    toks = {"user": secrets.token_hex(32), "admin": secrets.token_hex(32)}
                    path.parent.mkdir(parents=True, exist_ok=True)
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                    with os.fdopen(fd, "w") as f:
                        json.dump(toks, f)
                    self._tokens[key] = toks
            return self._tokens[key]

    def kid(self, key: str) -> str:
        """Key id as kube-apiserver computes it: base64url(sha256(DER of the public key))."""
        der = (
            self.signing_key(key)
            .public_key()
            .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
        return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()

    def jwks(self, key: str) -> dict[str, Any]:
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self.signing_key(key).public_key(), as_dict=True)
        jwk.update({"use": "sig", "kid": self.kid(key), "alg": "RS256"})
        return {"keys": [jwk]}

    def mint_token(
        self,
        key: str,
        namespace: str,
        service_account: str,
        audience: str | list[str],
        expiration_seconds: int = 3600,
        pod: dict[str, Any] | None = None,
    ) -> tuple[str, int]:
        """A signed ServiceAccount token, as TokenRequest issues it: (token, expiry epoch seconds).

        Claims as kube-apiserver's ``pkg/serviceaccount/claims.go``: iss, sub
        ``system:serviceaccount:<ns>:<sa>``, aud, exp, iat, nbf, jti, and ``kubernetes.io``
        with namespace, serviceaccount {name, uid} and (bound to a pod) pod {name, uid}.
        Raises NotFound when the ServiceAccount does not exist.
        """
        store = self.store(key)
        sa = store.get("v1", "ServiceAccount", service_account, namespace)
        now = int(time.time())
        exp = now + max(MIN_TOKEN_SECONDS, int(expiration_seconds))
        auds = [audience] if isinstance(audience, str) else list(audience)
        k8s: dict[str, Any] = {
            "namespace": namespace,
            "serviceaccount": {"name": service_account, "uid": sa["metadata"]["uid"]},
        }
        if pod is not None:
            k8s["pod"] = {"name": pod["metadata"]["name"], "uid": pod["metadata"]["uid"]}
            node = (pod.get("spec") or {}).get("nodeName")
            if node:
                k8s["node"] = {"name": node, "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{key}/{node}"))}
        claims = {
            "aud": auds,
            "exp": exp,
            "iat": now,
            "nbf": now,
            "iss": self.issuer_url(key),
            "jti": str(uuid.uuid4()),
            "kubernetes.io": k8s,
            "sub": f"system:serviceaccount:{namespace}:{service_account}",
        }
        token = jwt.encode(claims, self.signing_key(key), algorithm="RS256", headers={"kid": self.kid(key)})
        return token, exp

    def authenticate(self, key: str, token: str) -> str | None:
        """The user a bearer token stands for on cluster ``key``, or None."""
        info = self.info(key)
        if info is None or not token:
            return None
        tokens = self.tokens(key)
        if secrets.compare_digest(token, tokens["user"]):
            return "clusterUser"
        if secrets.compare_digest(token, tokens["admin"]):
            return "clusterAdmin"
        with contextlib.suppress(jwt.PyJWTError):
            claims = jwt.decode(
                token,
                self.signing_key(key).public_key(),
                algorithms=["RS256"],
                audience=[self.issuer_url(key), "https://kubernetes.default.svc", self.server_url(key)],
                issuer=self.issuer_url(key),
            )
            return str(claims["sub"])
        return None

    # -- ClusterBackend -------------------------------------------------------------------------
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
        cluster_id = cluster_id.lower()
        with self._lock:
            key = self.key_for(cluster_id) or cluster_key(cluster_id, name)
            with self.registry.change() as data:
                clusters = data.setdefault("clusters", {})
                info = clusters.get(key) or {
                    "id": cluster_id,
                    "name": name,
                    "tenant": self.ctx.identity.tenant_id,
                    "issuer_id": str(uuid.uuid4()),
                    "created": time.time(),
                }
                info.update(
                    location=location,
                    oidc_issuer=oidc_issuer,
                    workload_identity=workload_identity,
                    keyvault_secrets_provider=keyvault_secrets_provider,
                    node_count=node_count,
                )
                clusters[key] = info
            self.signing_key(key)
            self.tokens(key)
            store = self.store(key)
            for ns in SYSTEM_NAMESPACES:
                with contextlib.suppress(AlreadyExists):
                    store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
            self._reconcile_nodes(store, name, node_count)
            self._reconcile_csi(store, keyvault_secrets_provider)
            return self.endpoints(key)

    def endpoints(self, key: str) -> ClusterEndpoints:
        info = self.info(key) or {}
        location = info.get("location", "eastus")
        fqdn = f"{info.get('name', key)}-{key.rsplit('-', 1)[-1]}.hcp.{location}.azmk8s.io"
        return ClusterEndpoints(server_url=self.server_url(key), issuer_url=self.issuer_url(key), fqdn=fqdn)

    def _reconcile_nodes(self, store: ClusterStore, name: str, count: int) -> None:
        """Nodes as AKS names them (``aks-nodepool1-<8 digits>-vmss00000N``), Ready."""
        digits = str(int(hashlib.sha256(store.key.encode()).hexdigest(), 16))[:8]
        wanted = {f"aks-nodepool1-{digits}-vmss{i:06d}" for i in range(count)}
        existing, _ = store.list("v1", "Node")
        for node in existing:
            if node["metadata"]["name"] not in wanted:
                store.delete("v1", "Node", node["metadata"]["name"])
        have = {n["metadata"]["name"] for n in existing}
        for node_name in sorted(wanted - have):
            store.create(
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": node_name,
                        "labels": {
                            "kubernetes.io/hostname": node_name,
                            "kubernetes.io/os": "linux",
                            "kubernetes.azure.com/agentpool": "nodepool1",
                            "node.kubernetes.io/instance-type": "Standard_DS2_v2",
                        },
                    },
                    "spec": {},
                }
            )
            node = store.get("v1", "Node", node_name)
            node["status"] = {
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "KubeletReady",
                        "message": "kubelet is posting ready status",
                    }
                ],
                "nodeInfo": {
                    "kubeletVersion": "v1.37.1",
                    "operatingSystem": "linux",
                    "architecture": "amd64",
                },
                "allocatable": {"cpu": "1900m", "memory": "4652936Ki", "pods": "110"},
                "capacity": {"cpu": "2", "memory": "7097680Ki", "pods": "110"},
            }
            store.update_status(node)

    def _reconcile_csi(self, store: ClusterStore, enabled: bool) -> None:
        """The azureKeyvaultSecretsProvider addon installs the Secrets Store CSI driver CRDs."""
        for filename in CSI_CRDS:
            crd = load_crd(filename)
            name = crd["metadata"]["name"]
            current = store.find("apiextensions.k8s.io/v1", "CustomResourceDefinition", name)
            if enabled and current is None:
                store.create(crd)
            elif enabled and current is not None and current.get("spec") != crd.get("spec"):
                crd["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                store.update(crd)
            elif not enabled and current is not None:
                store.delete("apiextensions.k8s.io/v1", "CustomResourceDefinition", name)

    def delete_cluster(self, cluster_id: str) -> None:
        with self._lock:
            key = self.key_for(cluster_id)
            if key is None:
                return
            with self.registry.change() as data:
                data.get("clusters", {}).pop(key, None)
            store = self._stores.pop(key, None)
            if store is not None:
                for sub in list(store._subs):
                    sub.close()
            state_dir = self.ctx.state_dir / "state"
            areas = {f"k8s-{key}"} | {p.stem for p in state_dir.glob(f"k8s-{key}--*.json")}
            areas |= {a for a in self.ctx._states if a.startswith(f"k8s-{key}--")}
            for area in areas:
                st = self.ctx.state(area)
                with st.change() as data:
                    data.clear()
                with contextlib.suppress(FileNotFoundError):
                    st.path.unlink()
                self.ctx._states.pop(area, None)
            self._keys.pop(key, None)
            self._tokens.pop(key, None)
            shutil.rmtree(self.ctx.state_dir / "k8s" / key, ignore_errors=True)

    def kubeconfig(self, cluster_id: str, *, admin: bool = False) -> bytes:
        key = self.key_for(cluster_id)
        if key is None:
            raise KeyError(f"no cluster {cluster_id}")
        info = self.info(key) or {}
        parts = info["id"].split("/")
        rg = parts[parts.index("resourcegroups") + 1] if "resourcegroups" in parts else "rg"
        name = info["name"]
        user = f"{'clusterAdmin' if admin else 'clusterUser'}_{rg}_{name}"
        ca = base64.b64encode(self.ctx.tls.ca_bundle.read_bytes()).decode()
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": name, "cluster": {"certificate-authority-data": ca, "server": self.server_url(key)}}
            ],
            "contexts": [
                {"name": name + ("-admin" if admin else ""), "context": {"cluster": name, "user": user}}
            ],
            "current-context": name + ("-admin" if admin else ""),
            "preferences": {},
            "users": [{"name": user, "user": {"token": self.tokens(key)["admin" if admin else "user"]}}],
        }
        return yaml.safe_dump(doc, sort_keys=False).encode()

    def _extension_hook(self) -> Any:
        return self.ctx.services.get("k8s.extensions")

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
        key = self.key_for(cluster_id)
        if key is None:
            raise ValueError(f"cluster {cluster_id} does not exist")
        with self.registry.change() as data:
            data["clusters"][key].setdefault("extensions", {})[name] = {
                "type": extension_type,
                "version": version,
                "release_train": release_train,
                "settings": copy.deepcopy(configuration_settings),
            }
        hook = self._extension_hook()
        if hook is None:
            log.info("no extension hook registered; extension %s installs nothing in %s", name, key)
            return
        hook.ensure_extension(
            self.store(key),
            name=name,
            extension_type=extension_type,
            version=version,
            release_train=release_train,
            configuration_settings=configuration_settings,
        )

    def delete_extension(self, cluster_id: str, name: str) -> None:
        key = self.key_for(cluster_id)
        if key is None:
            return
        with self.registry.change() as data:
            data["clusters"][key].get("extensions", {}).pop(name, None)
        hook = self._extension_hook()
        if hook is not None:
            with contextlib.suppress(NotFound):
                hook.delete_extension(self.store(key), name)
