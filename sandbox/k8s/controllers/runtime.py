"""Runs the controllers of every sandbox cluster on the server's event loop.

One :class:`ClusterControllers` per cluster store: a store subscription feeds a keyed, de-duplicated
work queue (the client-go workqueue idea: a key is queued once, reconciled by one worker at a
time, requeued with a delay on request), plus a periodic resync. Reconcilers are synchronous and
fast; slow work (the Key Vault chain, git, ``kubectl kustomize``) runs in worker threads.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from typing import Any, Protocol

from sandbox.context import SandboxContext
from sandbox.k8s.controllers import argocd, workload_identity
from sandbox.k8s.controllers._base import ApiError, KubeApi, Obj
from sandbox.k8s.controllers.keyvault_csi import ChainConfig, KeyVaultCsiProvider
from sandbox.k8s.controllers.workloads import WorkloadController
from sandbox.k8s.store import BadRequest, ClusterStore, NotFound, WatchEvent

log = logging.getLogger(__name__)

RESYNC_SECONDS = (
    30.0  # controller-runtime's default SyncPeriod is 10 h; the kubelet re-syncs pods every 1 min
)


class Controller(Protocol):
    def keys_for(self, event_type: str, obj: Obj) -> list[Any]: ...

    def resync_keys(self) -> list[Any]: ...

    def reconcile(self, key: Any) -> Any: ...


class StoreApi(KubeApi):
    """:class:`KubeApi` over a :class:`ClusterStore` (argument order and absent kinds smoothed)."""

    def __init__(self, store: ClusterStore) -> None:
        self.store = store

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> Obj | None:
        try:
            return self.store.find(api_version, kind, name, namespace)
        except NotFound:
            return None  # the kind is not served (CRD absent)

    def list(
        self, api_version: str, kind: str, namespace: str | None = None, labels: dict[str, str] | None = None
    ) -> list[Obj]:
        selector = ",".join(f"{k}={v}" for k, v in (labels or {}).items())
        try:
            return self.store.list(api_version, kind, namespace, label_selector=selector)[0]
        except NotFound:
            return []

    def create(self, obj: Obj) -> Obj:
        return self.store.create(obj)

    def update(self, obj: Obj) -> Obj:
        return self.store.update(obj)

    def update_status(self, obj: Obj) -> Obj:
        return self.store.update_status(obj)

    def delete(self, api_version: str, kind: str, namespace: str | None, name: str) -> None:
        try:
            self.store.delete(api_version, kind, name, namespace)
        except NotFound:
            pass

    def namespaced(self, api_version: str, kind: str) -> bool:
        return bool(self.store.rtype(api_version, kind).namespaced)


def _info(ctx: SandboxContext, store: ClusterStore) -> dict[str, Any]:
    """The cluster record ARM keeps (``keyvault_secrets_provider``, ``node_count``, ...)."""
    service = ctx.services.get("k8s")
    return dict((service.info(store.key) if service is not None else None) or {})


class ClusterControllers:
    """All controllers of one cluster."""

    def __init__(self, ctx: SandboxContext, store: ClusterStore, loop: asyncio.AbstractEventLoop) -> None:
        self.ctx = ctx
        self.store = store
        self.loop = loop
        self.api = StoreApi(store)
        self._due: dict[tuple[str, Any], float] = {}
        self._running: set[tuple[str, Any]] = set()
        self._wake = asyncio.Event()
        self._stopped = False
        self.stats: dict[str, tuple[int, float]] = {}  # controller -> (reconciles, seconds on the loop)
        self.workloads = WorkloadController(self.api, ctx.clock)
        base = ctx.base_url
        self.csi = KeyVaultCsiProvider(
            self.api,
            clock=ctx.clock,
            enabled=lambda: bool(self.info().get("keyvault_secrets_provider", True)),
            mint_token=self._mint,
            chain=ChainConfig(
                authority=base,
                ca_bundle=str(ctx.tls.ca_bundle),
                vault_url=lambda name: f"{base}/vaults/{name}",
            ),
            run_in_thread=lambda fn, *a: asyncio.ensure_future(fn(*a)),
            requeue_pod=lambda ns, name, delay: self.enqueue("workloads", ("Pod", ns, name), delay),
            node_for=lambda pod: (pod.get("spec") or {}).get("nodeName") or "",
        )
        self.workloads.volume_checkers.append(self.csi.volume_state)
        self.argocd = argocd.ArgoCdController(self.api, ctx, store.key)
        self.controllers: dict[str, Controller] = {
            "workloads": self.workloads,
            "csi": self.csi,
            "argocd": self.argocd,
        }
        store.add_mutator("v1", "Pod", self._webhook, operations=("CREATE",))
        self._sub = store.subscribe(self._on_event)
        self._task = loop.create_task(self._run(), name=f"controllers-{store.key}")
        for name, ctrl in self.controllers.items():
            for key in ctrl.resync_keys():
                self.enqueue(name, key)

    def info(self) -> dict[str, Any]:
        return _info(self.ctx, self.store)

    # -- admission: the workload-identity webhook --------------------------------------------
    def _webhook(self, pod: Obj, operation: str, store: ClusterStore) -> None:
        if not workload_identity.should_mutate(pod):
            return
        spec = pod.get("spec") or {}
        ns = (pod.get("metadata") or {}).get("namespace") or "default"
        sa_name = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
        sa = store.find("v1", "ServiceAccount", sa_name, ns)
        try:
            mutated = workload_identity.mutate_pod(
                pod, sa, tenant_id=self.ctx.identity.tenant_id, authority_host=self.ctx.authority_host + "/"
            )
        except ApiError as exc:
            raise BadRequest(
                f'admission webhook "mutation.azure-workload-identity.io" denied the request: {exc.message}'
            ) from None
        pod.clear()
        pod.update(mutated)

    def _mint(self, namespace: str, sa: str, audience: str, expiration: int, pod: Obj | None = None) -> str:
        """TokenRequest as the kubelet makes it for a CSI driver: bound to the pod."""
        service = self.ctx.services["k8s"]
        if self.store.find("v1", "ServiceAccount", sa, namespace) is None:
            raise LookupError(f'serviceaccounts "{sa}" not found')
        token, _exp = service.mint_token(
            self.store.key, namespace, sa, audience, expiration_seconds=expiration, pod=pod
        )
        return str(token)

    # -- the queue ----------------------------------------------------------------------------
    def _on_event(self, event: WatchEvent) -> None:
        # runs in the writer's thread with the store lock held: only hand over to the loop
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._dispatch, event.type, event.object)

    def _dispatch(self, event_type: str, obj: Obj) -> None:
        for name, ctrl in self.controllers.items():
            try:
                keys = ctrl.keys_for(event_type, obj)
            except ApiError:
                log.exception("routing %s %s failed", event_type, obj.get("kind"))
                continue
            for key in keys:
                self.enqueue(name, key)

    def enqueue(self, controller: str, key: Any, delay: float = 0.0) -> None:
        """Queue ``key`` (safe from any thread); an earlier due time wins."""
        if self._on_loop():
            self._enqueue(controller, key, delay)
        else:
            self.loop.call_soon_threadsafe(self._enqueue, controller, key, delay)

    def _on_loop(self) -> bool:
        try:
            return asyncio.get_running_loop() is self.loop
        except RuntimeError:
            return False

    def _enqueue(self, controller: str, key: Any, delay: float) -> None:
        due = time.monotonic() + max(0.0, delay)
        item = (controller, key)
        if item not in self._due or self._due[item] > due:
            self._due[item] = due
        self._wake.set()

    async def _run(self) -> None:
        next_resync = time.monotonic() + RESYNC_SECONDS
        while not self._stopped:
            now = time.monotonic()
            if now >= next_resync:
                next_resync = now + RESYNC_SECONDS
                service = self.ctx.services.get("k8s")
                if service is not None and service.info(self.store.key) is None:
                    self.stop()  # the cluster was deleted
                    return
                for name, ctrl in self.controllers.items():
                    try:
                        for key in ctrl.resync_keys():
                            self._enqueue(name, key, 0.0)
                    except ApiError:
                        log.exception("resync of %s failed", name)
            ready = [item for item, due in self._due.items() if due <= now and item not in self._running]
            for item in ready:
                del self._due[item]
                self._reconcile(item)
                await asyncio.sleep(0)  # let the API server answer between reconciles
            if ready:
                continue
            pending = [d for item, d in self._due.items() if item not in self._running]
            timeout = min([*pending, next_resync]) - time.monotonic()
            self._wake.clear()
            if timeout > 0:
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout)
                except TimeoutError:
                    pass

    def _reconcile(self, item: tuple[str, Any]) -> None:
        name, key = item
        started = time.perf_counter()
        try:
            result = self.controllers[name].reconcile(key)
        except ApiError as exc:
            log.debug("reconcile %s %s: %s", name, key, exc.message)
            self._enqueue(name, key, 0.2)
            return
        except Exception:
            log.exception("reconcile %s %s crashed", name, key)
            self._enqueue(name, key, 5.0)
            return
        finally:
            count, total = self.stats.get(name, (0, 0.0))
            self.stats[name] = (count + 1, total + time.perf_counter() - started)
        if inspect.isawaitable(result):
            self._running.add(item)
            task = asyncio.ensure_future(result)
            task.add_done_callback(lambda t: self._finished(item, t))
        elif isinstance(result, int | float):
            self._enqueue(name, key, float(result))

    def _finished(self, item: tuple[str, Any], task: asyncio.Future[Any]) -> None:
        self._running.discard(item)
        name, key = item
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            if not isinstance(exc, ApiError):
                log.error("reconcile %s %s crashed: %r", name, key, exc)
            self._enqueue(name, key, 1.0)
            return
        result = task.result()
        if isinstance(result, int | float):
            self._enqueue(name, key, float(result))
        self._wake.set()

    def stop(self) -> None:
        self._stopped = True
        self._sub.close()
        self._task.cancel()


class ControllerManager:
    """Controllers per cluster, and ``ctx.services["k8s.extensions"]`` (the extension installer)."""

    def __init__(self, ctx: SandboxContext) -> None:
        self.ctx = ctx
        self.loop: asyncio.AbstractEventLoop | None = None
        self.clusters: dict[str, ClusterControllers] = {}

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        service = self.ctx.services.get("k8s")
        if service is None:
            log.warning("no Kubernetes service registered: controllers are idle")
            return
        service.on_cluster(self._attach)
        for key in service.clusters():
            service.store(key)  # load persisted clusters: their controllers resume

    async def stop(self) -> None:
        for cc in self.clusters.values():
            cc.stop()
        self.clusters.clear()

    def _attach(self, store: ClusterStore) -> None:
        """Called by the service for every cluster store (any thread, maybe under its lock)."""
        loop = self.loop
        if loop is None or loop.is_closed():
            return

        def attach() -> None:
            current = self.clusters.get(store.key)
            if current is not None and current.store is store:
                return
            if current is not None:
                current.stop()
            self.clusters[store.key] = ClusterControllers(self.ctx, store, loop)

        if _on_loop(loop):
            attach()
        else:
            loop.call_soon_threadsafe(attach)

    # -- the extension hook (sandbox.k8s.service calls it; any thread) ----------------------
    def ensure_extension(
        self,
        store: ClusterStore,
        *,
        name: str,
        extension_type: str,
        version: str | None,
        release_train: str | None,
        configuration_settings: dict[str, Any],
    ) -> None:
        if extension_type.lower() != argocd.EXTENSION_TYPE.lower():
            log.info("extension type %s installs nothing in the sandbox cluster", extension_type)
            return
        nodes = int(_info(self.ctx, store).get("node_count", 3))
        argocd.install(
            StoreApi(store), name=name, version=version, settings=configuration_settings, node_count=nodes
        )

    def delete_extension(self, store: ClusterStore, name: str) -> None:
        argocd.uninstall(StoreApi(store), name=name)


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
