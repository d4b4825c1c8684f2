"""HTTP routes of the sandbox clusters (``/k8s/{cluster}/...`` and ``/oidc/...``)."""

from __future__ import annotations

from starlette.routing import BaseRoute

from sandbox.context import SandboxContext
from sandbox.k8s.service import K8sService


def routes(ctx: SandboxContext) -> list[BaseRoute]:
    service = K8sService(ctx)
    ctx.services["clusters"] = service
    ctx.services["k8s"] = service
    return []
