"""Modelled time: realistic durations for long operations, scaled by one ``time_scale`` knob.

``time_scale=1`` is real Azure pace, ``0`` is instant. Long operations are evaluated lazily:
a resource records when its operation started and when it is due, and its state is computed
from the clock on every read, so an operation in flight survives a sandbox restart.

Sources for the base durations:
- AKS create/delete "several minutes": MicrosoftDocs workload-identity-deploy-cluster (PITFALLS P22).
- Extension install: minutes (azure-specs ``CreateExtension.json`` allows up to PT48H; Helm
  installs take 1-5 min in practice). Unknown exact figure: 150 s is an estimate.
- Vault create ~20 s (``RegisteringDns``, PITFALLS P9); identity create: seconds.
- Propagation windows (Entra replication, RBAC, federated credentials): Entra docs say
  "a few seconds to minutes"; the values here are estimates and are settable per sandbox.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

BASE_DURATIONS: dict[str, float] = {
    "resource_group.delete": 45.0,
    "managed_cluster.create": 300.0,
    "managed_cluster.update": 180.0,
    "managed_cluster.delete": 240.0,
    "extension.create": 150.0,
    "extension.delete": 60.0,
    "vault.create": 20.0,
    "vault.delete": 5.0,
    "vault.purge": 30.0,
    "identity.create": 3.0,
    # propagation windows
    "propagation.principal": 20.0,  # PrincipalNotFound after identity creation (PITFALLS P2)
    "propagation.rbac": 30.0,  # data-plane role assignment takes effect (PITFALLS P8)
    "propagation.federated_credential": 15.0,  # AADSTS70021 right after FIC creation (P6)
    # per-request service latency (added to every request)
    "request.arm": 0.15,
    "request.entra": 0.1,
    "request.keyvault": 0.05,
    "request.kubernetes": 0.01,
}


@dataclass
class Clock:
    """Scaled durations. ``overrides`` are absolute seconds (not scaled), for tests about time."""

    time_scale: float = 0.0
    overrides: dict[str, float] = field(default_factory=dict)

    def now(self) -> float:
        return time.time()

    def duration(self, operation: str) -> float:
        if operation in self.overrides:
            return max(0.0, self.overrides[operation])
        return BASE_DURATIONS[operation] * self.time_scale

    def due(self, operation: str, start: float | None = None) -> float:
        """The wall-clock time at which ``operation`` started at ``start`` is done."""
        return (self.now() if start is None else start) + self.duration(operation)

    def retry_after(self, operation: str) -> int:
        """A ``Retry-After`` value for a poll: never 0 (azure-core treats 0 as absent and waits 30 s)."""
        return max(1, min(15, round(self.duration(operation) / 10)))
