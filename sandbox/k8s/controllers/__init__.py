"""What AKS and its add-ons do inside a sandbox cluster, one module each.

- :mod:`.workloads` — Deployments/ReplicaSets/StatefulSets create Pods; the scheduler and kubelet
  give pods their status (``CreateContainerConfigError``, ``ContainerCreating`` + ``FailedMount``);
  LoadBalancer Services get an address.
- :mod:`.workload_identity` — the azure-workload-identity mutating webhook (PITFALLS P13).
- :mod:`.keyvault_csi` — the Key Vault secrets provider addon: mounts only through the real chain.
- :mod:`.argocd` — the ``Microsoft.ArgoCD`` extension's release and its Application controller.
- :mod:`.runtime` — runs them per cluster on the server's event loop (store subscription, work
  queue, periodic resync) and serves ``ctx.services["k8s.extensions"]``.

Registered in ``sandbox.server.SERVICE_MODULES``; ``routes(ctx)`` serves no HTTP routes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from sandbox.context import SandboxContext


def routes(ctx: SandboxContext) -> list[BaseRoute]:
    from sandbox.k8s.controllers.runtime import ControllerManager

    manager = ControllerManager(ctx)
    ctx.services["k8s-controllers"] = manager
    ctx.services["k8s.extensions"] = manager
    ctx.on_startup.append(manager.start)
    ctx.on_shutdown.append(manager.stop)
    return []
