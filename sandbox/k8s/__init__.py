"""A sandbox AKS cluster's Kubernetes side: API server, OIDC issuer, object store, add-ons.

``routes(ctx)`` (in :mod:`sandbox.k8s.api`) serves ``/k8s/{cluster}/...`` and ``/oidc/...`` and
registers the :class:`~sandbox.clusters.ClusterBackend` as ``ctx.services["clusters"]``.
Controllers build on :mod:`sandbox.k8s.store` (see its module docstring for the contract).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from sandbox.context import SandboxContext


def routes(ctx: SandboxContext) -> list[BaseRoute]:
    from sandbox.k8s.api import routes as _routes

    return _routes(ctx)
