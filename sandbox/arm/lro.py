"""Long-running operations, evaluated lazily from the clock (they survive a sandbox restart).

An operation is recorded in ARM state with its start and due time. Every ARM, Key Vault and Entra
request first calls :func:`settle_all`, which completes every operation whose due time has passed
(running its completer once: e.g. the managed cluster's ``ensure_cluster``), so a read always
sees the state the clock implies. At ``time_scale`` 0 the due time is the start time and a PUT
completes before its response (200/201 with ``Succeeded``, no polling).

Poll URLs follow the RPs (``Azure-AsyncOperation`` -> ``.../operations/{id}`` with
``{"status": "InProgress"|"Succeeded"|"Failed"}``, ``Location`` -> ``.../operationresults/{id}``
answering 202 until done) and always carry ``api-version`` and ``Retry-After`` >= 1
(CLIENT-FACTS: azure-core treats ``Retry-After: 0`` as absent). Sources: azure-specs
``GetExtensionAsyncOperationStatus.json``, ``ManagedClustersDelete.json`` (202 + location),
``ForceDeleteVMsInResourceGroup.json`` (202 + location), ARM async-operations doc
(learn.microsoft.com/azure/azure-resource-manager/management/async-operations).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from starlette.responses import Response

from sandbox.arm.common import ArmError, iso, json_response, public, section, state
from sandbox.context import SandboxContext

log = logging.getLogger(__name__)


class OperationFailed(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


# kind -> completer(ctx, arm_state_data, operation); raise OperationFailed to fail the operation.
Completer = Callable[[SandboxContext, dict[str, Any], dict[str, Any]], None]
COMPLETERS: dict[str, Completer] = {}


def start(
    ctx: SandboxContext,
    data: dict[str, Any],
    *,
    kind: str,
    target: str,
    duration_key: str,
    provider: str,
    location: str,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Record a new operation on ``target`` (an id or key the completer understands)."""
    now = ctx.clock.now()
    op = {
        "id": str(uuid.uuid4()),
        "kind": kind,
        "target": target,
        "duration_key": duration_key,
        "provider": provider,
        "location": location or "global",
        "start": now,
        "due": ctx.clock.due(duration_key, now),
        "status": "InProgress",
        "error": None,
        "end": None,
        **(extra or {}),
    }
    section(data, "operations")[op["id"]] = op
    return op


def settle_all(ctx: SandboxContext) -> None:
    """Complete every operation whose due time has passed (in start order)."""
    st = state(ctx)
    now = ctx.clock.now()
    data = st.read()
    _prune(st, now)
    pending = [
        op for op in section(data, "operations").values() if op["status"] == "InProgress" and op["due"] <= now
    ]
    if not pending:
        return
    with st.change() as data:
        for op in sorted(pending, key=lambda o: o["start"]):
            current = data["operations"].get(op["id"])
            if current is None or current["status"] != "InProgress":
                continue
            complete(ctx, data, current)


KEEP_FINISHED = 200  # finished operations kept for late polls; older ones go (oldest first)
KEEP_SECONDS = 3600.0


def _prune(st: Any, now: float) -> None:
    ops = section(st.read(), "operations")
    finished = [o for o in ops.values() if o["status"] != "InProgress"]
    if len(finished) <= KEEP_FINISHED:
        return
    old = [o["id"] for o in finished if now - float(o["end"] or o["due"]) > KEEP_SECONDS]
    if old:
        with st.change() as data:
            for op_id in old:
                data["operations"].pop(op_id, None)


def complete(ctx: SandboxContext, data: dict[str, Any], op: dict[str, Any]) -> None:
    try:
        COMPLETERS[op["kind"]](ctx, data, op)
        op["status"] = "Succeeded"
    except OperationFailed as exc:
        op["status"] = "Failed"
        op["error"] = {"code": exc.code, "message": exc.message}
    except Exception:  # a sandbox bug must fail this operation, not every later request's settle_all
        log.exception("operation %s %s on %s crashed", op["id"], op["kind"], op["target"])
        op["status"] = "Failed"
        op["error"] = {
            "code": "InternalServerError",
            "message": "The operation failed with an internal error. Please retry the request.",
        }
    op["end"] = max(op["due"], op["start"])
    log.info("operation %s %s on %s: %s", op["id"], op["kind"], op["target"], op["status"])


def is_done(op: dict[str, Any] | None) -> bool:
    return op is None or op["status"] != "InProgress"


def status_url(ctx: SandboxContext, op: dict[str, Any], api_version: str) -> str:
    if op.get("status_path"):
        return f"{ctx.base_url}{op['status_path']}?api-version={api_version}"
    sub = ctx.identity.subscription_id
    return (
        f"{ctx.base_url}/subscriptions/{sub}/providers/{op['provider']}/locations/{op['location']}"
        f"/operations/{op['id']}?api-version={api_version}"
    )


def result_url(ctx: SandboxContext, op: dict[str, Any], api_version: str) -> str:
    sub = ctx.identity.subscription_id
    if op["provider"] == "Microsoft.Resources":
        return f"{ctx.base_url}/subscriptions/{sub}/operationresults/{op['id']}?api-version={api_version}"
    return (
        f"{ctx.base_url}/subscriptions/{sub}/providers/{op['provider']}/locations/{op['location']}"
        f"/operationresults/{op['id']}?api-version={api_version}"
    )


def retry_after(ctx: SandboxContext, op: dict[str, Any]) -> str:
    return str(ctx.clock.retry_after(op["duration_key"]))


def headers(
    ctx: SandboxContext,
    op: dict[str, Any],
    api_version: str,
    *,
    async_op: bool = True,
    location: bool = False,
) -> dict[str, str]:
    out = {"Retry-After": retry_after(ctx, op)}
    if async_op:
        out["Azure-AsyncOperation"] = status_url(ctx, op, api_version)
    if location:
        out["Location"] = result_url(ctx, op, api_version)
    return out


def put_response(
    ctx: SandboxContext, op_id: str, key: str, accepted: dict[str, Any], status: int, api_version: str
) -> Response:
    """The answer to a PUT that started operation ``op_id`` on resource ``key``.

    Done: the resource as it now is. Running, or failed: the client learns the outcome (and a
    failure's message) from the operation status; a failed operation still answers with the
    ``accepted`` state (Creating/Updating), as Azure's PUT does before the work runs, so that even at
    time_scale 0 the poller raises (azure-specs ``CreateExtension.json``).
    """
    settle_all(ctx)
    op = find(ctx, op_id)
    out = public(section(state(ctx).read(), "resources")[key])
    if op["status"] == "Succeeded":
        return json_response(out, status)
    if op["status"] == "Failed":
        out = accepted
    return json_response(out, status, headers(ctx, op, api_version))


def status_body(op: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": op.get("status_path")
        or f"/providers/{op['provider']}/locations/{op['location']}/operations/{op['id']}",
        "name": op["id"],
        "status": op["status"],
        "startTime": iso(op["start"]),
    }
    if op["status"] != "InProgress":
        body["endTime"] = iso(op["end"] or op["due"])
    if op["error"]:
        body["error"] = op["error"]
    return body


def find(ctx: SandboxContext, op_id: str) -> dict[str, Any]:
    op = section(state(ctx).read(), "operations").get(op_id)
    if op is None:
        raise ArmError(404, "NotFound", f"The operation '{op_id}' was not found.")
    return dict(op)
