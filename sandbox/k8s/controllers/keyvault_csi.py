"""The AKS Key Vault secrets provider addon (``azureKeyvaultSecretsProvider``): the Secrets Store CSI
driver with the Azure provider, as the kubelet sees it when it mounts a ``secrets-store.csi.k8s.io``
volume.

Sources (read, not copied): kubernetes-sigs/secrets-store-csi-driver (``pkg/secrets-store``
nodeserver: ``failed to mount secrets store objects for pod <ns>/<pod>, err: ...``;
``SecretProviderClassPodStatus`` named ``<pod>-<namespace>-<spc>``, owned by the pod; secret sync:
Secrets labelled ``secrets-store.csi.k8s.io/managed=true`` and owned by the pod statuses, so they go
away with the last pod — PITFALLS P12, issues #674 #290), Azure/secrets-store-csi-driver-provider-azure
(``pkg/provider``: ``failed to mount objects, error: ...``, ``failed to get objectType:secret,
objectName:x, objectVersion:: <err>``; auth modes: pod identity, VM managed identity
(``useVMManagedIdentity`` + ``userAssignedIdentityID``), workload identity (``clientID``), else a
service principal from ``nodePublishSecretRef`` — so ``userAssignedIdentityID`` with
``useVMManagedIdentity: "false"`` and no ``clientID`` fails with ``failed to get credentials,
nodePublishSecretRef secret is not set``: PITFALLS P11, provider issues #991 #1104), and the
kubelet's volume manager (``MountVolume.SetUp failed for volume "<vol>" : rpc error: code = Unknown
desc = ...`` as a ``FailedMount`` Warning event; retries with exponential backoff from 0.5 s to
2 m 2 s).

The chain is the real one: a ServiceAccount token for the pod's ServiceAccount (audience
``api://AzureADTokenExchange``, what the CSIDriver's ``tokenRequests`` gives the provider), the real
azure-identity ``ClientAssertionCredential`` with the SecretProviderClass's ``clientID`` against the
sandbox Entra, and the real ``SecretClient`` against the sandbox Key Vault, run in a worker thread.
The webhook's pod label does not matter here: the provider asks for the token itself.

Not modelled: VM managed identity (the kubelet identity has no Key Vault role in the sandbox, so
that mode fails with the IMDS text below — unknown how AKS words a missing role exactly), pod
identity (deprecated), keys and certificates (only ``objectType: secret``), rotation (off by default
on AKS).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

from sandbox.k8s.controllers._base import (
    ApiError,
    Conflict,
    KubeApi,
    NotFound,
    Obj,
    b64,
    owner_ref,
    record_event,
)
from sandbox.k8s.controllers.workloads import VolumeState

DRIVER = "secrets-store.csi.k8s.io"
SPC_API = "secrets-store.csi.x-k8s.io/v1"
MANAGED_LABEL = "secrets-store.csi.k8s.io/managed"
NODE_LABEL = "internal.secrets-store.csi.k8s.io/node-name"
AUDIENCE = "api://AzureADTokenExchange"
BACKOFF_INITIAL, BACKOFF_MAX = 0.5, 122.0


class MountError(Exception):
    """The provider's error text (goes into the FailedMount event; never carries secret values)."""


@dataclass(frozen=True, kw_only=True)
class ChainConfig:
    """Where the sandbox's Entra and Key Vault live, for the real SDK clients."""

    authority: str  # https://127.0.0.1:PORT
    ca_bundle: str
    vault_url: Callable[[str], str]  # keyvaultName -> vault URL


@dataclass
class _Mount:
    mounted: bool = False
    message: str = ""
    attempts: int = 0
    in_flight: bool = False
    next_try: float = 0.0
    spc_version: str = ""


@dataclass(frozen=True, kw_only=True)
class _Plan:
    pod_ns: str
    pod_name: str
    volume: str
    spc: Obj
    tenant: str
    client_id: str
    vault_url: str
    token: str = field(repr=False)
    objects: list[dict[str, str]]


def parse_objects(raw: str) -> list[dict[str, str]]:
    """The ``objects`` parameter: YAML ``array:`` of YAML strings, one per object (provider docs)."""
    try:
        doc = yaml.safe_load(raw or "") or {}
        items = doc.get("array") or []
        out = []
        for item in items:
            obj = yaml.safe_load(item) if isinstance(item, str) else item
            out.append({k: "" if v is None else str(v) for k, v in (obj or {}).items()})
        return out
    except yaml.YAMLError as exc:
        raise MountError(f"failed to unmarshal objects, error: {exc}") from exc


def fetch_secrets(plan: _Plan, chain: ChainConfig) -> list[tuple[str, str, str]]:
    """Run in a worker thread: the real token exchange and Key Vault reads.

    Returns (file name, value, version) per object; raises :class:`MountError` with the provider's
    wording around the SDK's own error text.
    """
    from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError
    from azure.identity import ClientAssertionCredential
    from azure.keyvault.secrets import SecretClient

    token = plan.token
    credential = ClientAssertionCredential(
        tenant_id=plan.tenant,
        client_id=plan.client_id,
        func=lambda: token,
        authority=chain.authority,
        connection_verify=chain.ca_bundle,
        disable_instance_discovery=True,
        retry_total=0,
    )
    client = SecretClient(
        plan.vault_url,
        credential,
        verify_challenge_resource=False,
        connection_verify=chain.ca_bundle,
        retry_total=1,
    )
    results = []
    try:
        for obj in plan.objects:
            name, otype, version = (
                obj.get("objectName", ""),
                obj.get("objectType", ""),
                obj.get("objectVersion", ""),
            )
            prefix = f"failed to get objectType:{otype}, objectName:{name}, objectVersion:{version}"
            if otype.lower() != "secret":
                raise MountError(
                    f"{prefix}: objectType {otype!r} is not modelled by the sandbox (only secret)"
                )
            try:
                secret = client.get_secret(name, version or None)
            except (ClientAuthenticationError, HttpResponseError, ServiceRequestError) as exc:
                raise MountError(f"{prefix}: {_one_line(exc)}") from None
            results.append(
                (obj.get("objectAlias") or name, secret.value or "", secret.properties.version or "")
            )
    finally:
        client.close()
        credential.close()
    return results


def _one_line(exc: BaseException) -> str:
    # the provider sanitises SDK errors (no backslashes / CRLF) before they reach the event
    text = str(exc).replace("\\", " ").replace("\r", " ")
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


class KeyVaultCsiProvider:
    """Mount state per (pod uid, volume), attempts in threads, results written back as API objects."""

    kinds = ("Pod", "SecretProviderClass")

    def __init__(
        self,
        api: KubeApi,
        *,
        clock: Any,
        enabled: Callable[[], bool],
        mint_token: Callable[..., str],
        chain: ChainConfig,
        run_in_thread: Callable[..., Any],
        requeue_pod: Callable[[str, str, float], None],
        node_for: Callable[[Obj], str],
    ) -> None:
        self.api = api
        self.clock = clock
        self.enabled = enabled
        self.mint_token = mint_token
        self.chain = chain
        self.run_in_thread = run_in_thread
        self.requeue_pod = requeue_pod
        self.node_for = node_for
        self.mounts: dict[tuple[str, str], _Mount] = {}

    # -- routing --------------------------------------------------------------------------------
    def keys_for(self, event_type: str, obj: Obj) -> list[tuple[str, str, str]]:
        md = obj.get("metadata", {})
        if obj.get("kind") == "Pod" and event_type == "DELETED":
            for key in [k for k in self.mounts if k[0] == md.get("uid")]:
                self.mounts.pop(key, None)
        if obj.get("kind") == "SecretProviderClass":
            # a changed class: the kubelet's next retry uses it; retry failed mounts now
            for pod in self.api.list("v1", "Pod", md.get("namespace")):
                for vol in (pod.get("spec") or {}).get("volumes") or []:
                    attrs = ((vol.get("csi") or {}).get("volumeAttributes")) or {}
                    if attrs.get("secretProviderClass") == md.get("name"):
                        m = self.mounts.get((pod["metadata"]["uid"], vol["name"]))
                        if m is not None and not m.mounted and not m.in_flight:
                            m.next_try = 0.0
                            self.requeue_pod(pod["metadata"]["namespace"], pod["metadata"]["name"], 0.0)
        return []

    def resync_keys(self) -> list[tuple[str, str, str]]:
        return []

    def reconcile(self, key: tuple[str, str, str]) -> None:
        return None

    # -- the kubelet's question: is this volume set up? ------------------------------------
    def volume_state(self, pod: Obj, vol: dict[str, Any]) -> VolumeState | None:
        csi = vol.get("csi")
        if not csi or csi.get("driver") != DRIVER:
            return None
        name = vol.get("name", "")
        if not self.enabled():
            return VolumeState(
                ready=False,
                message=(
                    f'MountVolume.SetUp failed for volume "{name}" : kubernetes.io/csi: '
                    "mounter.SetUpAt failed to get CSI client: "
                    f"driver name {DRIVER} not found in the list of registered CSI drivers"
                ),
                retry_after=10.0,
            )
        key = (pod["metadata"]["uid"], name)
        m = self.mounts.setdefault(key, _Mount())
        if m.mounted:
            return VolumeState(ready=True)
        if not m.in_flight and time.monotonic() >= m.next_try:
            m.in_flight = True
            self.run_in_thread(self._attempt, pod, vol)
        return VolumeState(ready=False, message=m.message)

    # -- one mount attempt ------------------------------------------------------------------------
    async def _attempt(self, pod: Obj, vol: dict[str, Any]) -> None:
        import asyncio

        md = pod["metadata"]
        key = (md["uid"], vol["name"])
        m = self.mounts.setdefault(key, _Mount())
        try:
            plan = self._plan(pod, vol)
            files = await asyncio.to_thread(fetch_secrets, plan, self.chain)
            self._publish(pod, vol, plan, files)
            m.mounted, m.message = True, ""
        except (MountError, ApiError) as exc:
            m.attempts += 1
            text = exc.message if isinstance(exc, ApiError) else str(exc)
            m.message = (
                f'MountVolume.SetUp failed for volume "{vol["name"]}" : rpc error: code = Unknown desc = '
                f"failed to mount secrets store objects for pod {md['namespace']}/{md['name']}, err: "
                f"rpc error: code = Unknown desc = failed to mount objects, error: {text}"
            )
            delay = min(BACKOFF_INITIAL * 2 ** (m.attempts - 1), self._backoff_cap())
            m.next_try = time.monotonic() + delay
            live = self.api.get("v1", "Pod", md["namespace"], md["name"])
            if live is not None and live["metadata"].get("uid") == md["uid"]:
                record_event(
                    self.api,
                    live,
                    type_="Warning",
                    reason="FailedMount",
                    message=m.message,
                    component="kubelet",
                    clock=self.clock,
                    host=self.node_for(live),
                )
                self.requeue_pod(md["namespace"], md["name"], delay)
        else:
            self.requeue_pod(md["namespace"], md["name"], 0.0)  # mounted: the kubelet starts the containers
        finally:
            m.in_flight = False

    def _backoff_cap(self) -> float:
        scale = float(getattr(self.clock, "time_scale", 1.0))
        # scaled like every other duration, but never below 10 s: a broken chain in an idle sandbox
        # keeps retrying (as the kubelet does) without flooding Entra, Key Vault and the journal
        return BACKOFF_MAX if scale >= 1 else max(10.0, BACKOFF_MAX * scale)

    def _plan(self, pod: Obj, vol: dict[str, Any]) -> _Plan:
        md = pod["metadata"]
        ns = md["namespace"]
        attrs = (vol.get("csi") or {}).get("volumeAttributes") or {}
        spc_name = attrs.get("secretProviderClass")
        if not spc_name:
            raise MountError("secretProviderClass is not set")
        spc = self.api.get(SPC_API, "SecretProviderClass", ns, spc_name)
        if spc is None:
            raise MountError(
                f"failed to get secretproviderclass {ns}/{spc_name}, error: "
                f'SecretProviderClass.secrets-store.csi.x-k8s.io "{spc_name}" not found'
            )
        params = {k: str(v) for k, v in ((spc.get("spec") or {}).get("parameters") or {}).items()}
        if (spc.get("spec") or {}).get("provider") != "azure":
            raise MountError(f"provider {spc['spec'].get('provider')!r} is not installed on this node")
        if params.get("usePodIdentity", "false").lower() == "true":
            raise MountError(
                "failed to create auth config, error: pod identity is not supported by the sandbox"
            )
        if params.get("useVMManagedIdentity", "false").lower() == "true":
            raise MountError(
                "failed to create auth config, error: VM managed identity (userAssignedIdentityID "
                f"{params.get('userAssignedIdentityID', '')!r}) is not modelled by the sandbox"
            )
        client_id = params.get("clientID", "")
        if not client_id:
            # service principal mode: credentials only from nodePublishSecretRef (P11)
            if (vol.get("csi") or {}).get("nodePublishSecretRef"):
                raise MountError(
                    "failed to create auth config, error: service principal mode is not modelled"
                )
            raise MountError(
                "failed to create auth config, error: failed to get credentials, "
                "nodePublishSecretRef secret is not set"
            )
        tenant = params.get("tenantId") or params.get("tenantID") or ""
        if not tenant:
            raise MountError("tenantId is not set")
        vault = params.get("keyvaultName", "")
        if not vault:
            raise MountError("keyvaultName is not set")
        objects = parse_objects(params.get("objects", ""))
        sa = (pod.get("spec") or {}).get("serviceAccountName") or "default"
        try:
            token = self.mint_token(ns, sa, AUDIENCE, 3600, pod)
        except (NotFound, LookupError) as exc:
            raise MountError(f"failed to get service account token: {exc}") from None
        return _Plan(
            pod_ns=ns,
            pod_name=md["name"],
            volume=vol["name"],
            spc=spc,
            tenant=tenant,
            client_id=client_id,
            vault_url=self.chain.vault_url(vault),
            token=token,
            objects=objects,
        )

    def _publish(self, pod: Obj, vol: dict[str, Any], plan: _Plan, files: list[tuple[str, str, str]]) -> None:
        """SecretProviderClassPodStatus + secretObjects sync (the driver's two writes on success)."""
        md = pod["metadata"]
        ns, spc_name = md["namespace"], plan.spc["metadata"]["name"]
        live = self.api.get("v1", "Pod", ns, md["name"])
        if live is None or live["metadata"].get("uid") != md["uid"]:
            raise MountError(f"pod {ns}/{md['name']} is gone")  # deleted while the chain ran
        node = self.node_for(live)
        status_name = f"{md['name']}-{ns}-{spc_name}"
        by_file = {f: (v, ver) for f, v, ver in files}
        # sync first: a secretObjects entry naming an object that was not mounted fails the mount
        synced: list[tuple[str, Obj]] = []
        for so in (plan.spc.get("spec") or {}).get("secretObjects") or []:
            data = {}
            for item in so.get("data") or []:
                obj_name = item.get("objectName", "")
                if obj_name not in by_file:
                    raise MountError(
                        f"failed to get data in spc {ns}/{spc_name} for secret {so.get('secretName')}, "
                        f"err: file matching objectName {obj_name} not found in the pod"
                    )
                data[item.get("key", "")] = b64(by_file[obj_name][0])
            synced.append(
                (so.get("secretName", ""), {"type": so.get("type", "Opaque"), "data": data, "so": so})
            )
        spcps: Obj = {
            "apiVersion": SPC_API,
            "kind": "SecretProviderClassPodStatus",
            "metadata": {
                "name": status_name,
                "namespace": ns,
                "labels": {NODE_LABEL: node},
                "ownerReferences": [owner_ref(pod, controller=False, block=False)],
            },
            "status": {
                "podName": md["name"],
                "secretProviderClassName": spc_name,
                "mounted": True,
                "targetPath": (
                    f"/var/lib/kubelet/pods/{md['uid']}/volumes/kubernetes.io~csi/{vol['name']}/mount"
                ),
                "objects": [{"id": f"secret/{f}", "version": ver} for f, _v, ver in files],
            },
        }
        # the CRD has no status subresource: status is written with the object
        existing = self.api.get(SPC_API, "SecretProviderClassPodStatus", ns, status_name)
        if existing is None:
            created = self.api.create(spcps)
        else:
            existing["metadata"]["ownerReferences"] = spcps["metadata"]["ownerReferences"]
            existing["metadata"].setdefault("labels", {}).update(spcps["metadata"]["labels"])
            existing["status"] = spcps["status"]
            created = self.api.update(existing)
        ref = owner_ref(created, controller=False, block=False)
        for secret_name, spec in synced:
            so = spec["so"]
            current = self.api.get("v1", "Secret", ns, secret_name)
            if current is None:
                labels = {MANAGED_LABEL: "true", **(so.get("labels") or {})}
                secret: Obj = {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {
                        "name": secret_name,
                        "namespace": ns,
                        "labels": labels,
                        "ownerReferences": [ref],
                    },
                    "type": spec["type"],
                    "data": spec["data"],
                }
                if so.get("annotations"):
                    secret["metadata"]["annotations"] = dict(so["annotations"])
                self.api.create(secret)
            else:
                refs = current["metadata"].setdefault("ownerReferences", [])
                if all(r.get("uid") != ref["uid"] for r in refs):
                    refs.append(ref)
                    try:
                        self.api.update(current)
                    except Conflict:
                        pass
