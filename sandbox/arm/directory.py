"""The tenant's directory as the other services see it: who exists, and since when.

Principals are the pipeline's service principal (``ctx.identity``) and every user-assigned
managed identity in ARM state (a managed identity is a service principal; Entra doc "managed
identities for Azure resources"). Entra (token grants), authorization (``PrincipalNotFound``,
``UnmatchedPrincipalType``) and Key Vault (RBAC) read it from here.
"""

from __future__ import annotations

from typing import Any

from sandbox.arm.common import section, state
from sandbox.context import SandboxContext

IDENTITY_TYPE = "microsoft.managedidentity/userassignedidentities"
FIC_TYPE = "microsoft.managedidentity/userassignedidentities/federatedidentitycredentials"


def identities(ctx: SandboxContext) -> list[dict[str, Any]]:
    return [r for r in section(state(ctx).read(), "resources").values() if r["type"].lower() == IDENTITY_TYPE]


def identity_by_client_id(ctx: SandboxContext, client_id: str) -> dict[str, Any] | None:
    for rec in identities(ctx):
        if rec["properties"]["clientId"].lower() == client_id.lower():
            return rec
    return None


def federated_credentials(ctx: SandboxContext, identity_id: str) -> list[dict[str, Any]]:
    prefix = identity_id.lower() + "/federatedidentitycredentials/"
    return [
        r
        for key, r in section(state(ctx).read(), "resources").items()
        if key.startswith(prefix) and r["type"].lower() == FIC_TYPE
    ]


def principal(ctx: SandboxContext, object_id: str) -> dict[str, Any] | None:
    """``{"type": "ServicePrincipal", "created": ts}`` for a known principal, else None."""
    if object_id.lower() == ctx.identity.object_id.lower():
        return {"type": "ServicePrincipal", "created": 0.0, "app_id": ctx.identity.client_id}
    for rec in identities(ctx):
        if rec["properties"]["principalId"].lower() == object_id.lower():
            return {
                "type": "ServicePrincipal",
                "created": float(rec["_created"]),
                "app_id": rec["properties"]["clientId"],
            }
    return None
