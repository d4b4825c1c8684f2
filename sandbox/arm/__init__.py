"""Azure Resource Manager stand-in: ``/subscriptions/...`` and ``/providers/...`` on the one listener.

Every request: settle due long-running operations (:mod:`sandbox.arm.lro`), authenticate the
bearer token for ``https://management.azure.com`` (401 ``AuthenticationFailed`` /
``InvalidAuthenticationToken``...), check the subscription (404 ``SubscriptionNotFound``), find the
route by path segments (case-insensitive), check ``api-version`` (400
``MissingApiVersionParameter`` / ``InvalidApiVersionParameter``), check the caller's Azure RBAC
for the request's action (403 ``AuthorizationFailed``; :func:`authorization.check_arm_access`),
then run the provider's handler.
Handlers raise :class:`~sandbox.arm.common.ArmError` for ARM's error envelope
(``common-types/resource-management/v5/types.json`` ErrorResponse).

api-versions: what the pinned SDKs send (CLIENT-FACTS.md; authorization's 2022-04-01 and
kubernetesconfiguration's 2023-05-01 observed from the installed clients' defaults), plus the
versions the golden examples in ``azure-specs/`` were written for (same shapes).
"""

from __future__ import annotations

import uuid

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from sandbox.arm import (
    authorization,
    containerservice,
    keyvault,
    kubernetesconfiguration,
    lro,
    msi,
    resources,
)
from sandbox.arm.common import ArmError, ArmRequest
from sandbox.arm.dispatch import RouteSpec, match, segments_of
from sandbox.context import SandboxContext
from sandbox.entra import TokenError
from sandbox.errors import arm_error

ARM_AUDIENCE = "https://management.azure.com"

API_VERSIONS: dict[str, tuple[str, ...]] = {
    "Microsoft.Resources": ("2025-04-01",),
    "Microsoft.ManagedIdentity": ("2024-11-30",),
    "Microsoft.KeyVault": ("2026-05-15", "2026-04-01", "2026-05-15-preview", "2026-03-01-preview"),
    "Microsoft.ContainerService": ("2026-08-01", "2025-07-01", "2023-05-01"),
    "Microsoft.Authorization": ("2022-04-01", "2020-10-01-preview"),
    "Microsoft.KubernetesConfiguration": ("2023-05-01",),
}

_WWW_AUTH = 'Bearer authorization_uri="{authority}", error="invalid_token", error_description="{desc}"'


def _route_table() -> list[RouteSpec]:
    specs: list[RouteSpec] = []
    for module in (resources, msi, keyvault, containerservice):
        specs.extend(module.route_specs())
    ops = ("subscriptions", "*", "providers", "*", "locations", "*")
    specs.append(RouteSpec(frozenset({"GET"}), (*ops, "operations", "*"), "*", resources.operation_status))
    specs.append(
        RouteSpec(frozenset({"GET"}), (*ops, "operationresults", "*"), "*", resources.operation_result)
    )
    return specs


def routes(ctx: SandboxContext) -> list[BaseRoute]:
    table = _route_table()
    scoped = [authorization.resolve, kubernetesconfiguration.resolve]
    sub_id = ctx.identity.subscription_id

    async def handle(request: Request) -> Response:
        lro.settle_all(ctx)
        method = request.method
        segs = segments_of(request.url.path)
        found: tuple[RouteSpec, list[str]] | None = None
        allowed: set[str] = set()
        for spec in table:
            caps = match(segs, spec.pattern)
            if caps is None:
                continue
            allowed |= spec.methods
            if method in spec.methods:
                found = (spec, caps)
                break
        if found is None:
            for resolver in scoped:
                hit = resolver(segs, method)
                if hit is not None:
                    if isinstance(hit, set):
                        allowed |= hit
                        continue
                    found = hit
                    break
        if found is None:  # routing before authentication: an unknown path is a 404 for anyone
            if allowed:
                return arm_error(
                    405,
                    "HttpMethodNotAllowed",
                    f"The requested resource does not support http method '{method}'.",
                )
            return arm_error(
                404,
                "NotFound",
                f"No HTTP resource was found that matches the request URI '{request.url.path}'.",
            )
        entra = ctx.services["entra"]
        authority = f"{ctx.base_url}/{ctx.identity.tenant_id}"
        auth = request.headers.get("authorization", "")
        if not auth.lower().startswith("bearer "):
            desc = "Authentication failed. The 'Authorization' header is missing."
            return arm_error(
                401,
                "AuthenticationFailed",
                desc,
                {"WWW-Authenticate": _WWW_AUTH.format(authority=authority, desc=desc)},
            )
        try:
            caller = entra.verify(auth[7:].strip(), ARM_AUDIENCE)
        except TokenError as exc:
            return arm_error(
                401,
                exc.code,
                exc.message,
                {"WWW-Authenticate": _WWW_AUTH.format(authority=authority, desc=exc.message)},
            )
        if len(segs) >= 2 and segs[0].lower() == "subscriptions" and segs[1].lower() != sub_id.lower():
            return arm_error(404, "SubscriptionNotFound", f"The subscription '{segs[1]}' could not be found.")

        spec, caps = found
        provider = (
            spec.provider
            if spec.provider != "*"
            else next((p for p in API_VERSIONS if p.lower() == caps[1].lower()), caps[1])
        )
        version = request.query_params.get("api-version")
        if not version:
            return arm_error(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        supported = API_VERSIONS.get(provider, ())
        if version not in supported:
            return arm_error(
                400,
                "InvalidApiVersionParameter",
                f"The api-version '{version}' is invalid. "
                f"The supported versions are '{','.join(supported)}'.",
            )
        req = ArmRequest(
            ctx=ctx,
            method=method,
            path=request.url.path,
            segments=segs,
            query=dict(request.query_params),
            api_version=version,
            raw_body=await request.body(),
            caller_oid=caller.object_id,
            caller_appid=caller.app_id,
        )
        try:
            authorization.check_arm_access(req)
            response = await spec.handler(req, caps)
        except ArmError as exc:
            response = exc.response()
        # ARM's tracing headers (learn.microsoft.com "request-limits-and-throttling"; the remaining
        # counts are constant here: the sandbox throttles only through fault rules)
        request_id = request.headers.get("x-ms-client-request-id") or str(uuid.uuid4())
        response.headers["x-ms-request-id"] = request_id
        response.headers["x-ms-correlation-request-id"] = request_id
        counter = "reads" if method in ("GET", "HEAD") else "writes"
        response.headers[f"x-ms-ratelimit-remaining-subscription-{counter}"] = (
            "11999" if counter == "reads" else "1199"
        )
        return response

    methods = ["GET", "PUT", "POST", "DELETE", "PATCH", "HEAD"]
    return [
        Route("/subscriptions/{path:path}", handle, methods=methods),
        Route("/providers/{path:path}", handle, methods=methods),
    ]
