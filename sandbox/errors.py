"""Error bodies in each service's own envelope.

- ARM and Key Vault: ``{"error": {"code": ..., "message": ...}}`` (azure-specs
  ``common-types/resource-management/v5/types.json`` ErrorResponse).
- Entra ID: the OAuth error document with ``error``, ``error_description`` ("AADSTSnnnnn: ..."),
  ``error_codes``, ``timestamp``, ``trace_id``, ``correlation_id`` (as MSAL parses it).
- Kubernetes: a ``Status`` object (apimachinery ``metav1.Status``), reason per HTTP code.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from starlette.responses import JSONResponse

_K8S_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "AlreadyExists",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


def arm_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def entra_error(status: int, error: str, aadsts: int, description: str) -> JSONResponse:
    now = dt.datetime.now(dt.UTC)
    trace, corr = str(uuid.uuid4()), str(uuid.uuid4())
    text = (
        f"AADSTS{aadsts}: {description} Trace ID: {trace} Correlation ID: {corr} "
        f"Timestamp: {now.strftime('%Y-%m-%d %H:%M:%SZ')}"
    )
    return JSONResponse(
        {
            "error": error,
            "error_description": text,
            "error_codes": [aadsts],
            "timestamp": now.strftime("%Y-%m-%d %H:%M:%SZ"),
            "trace_id": trace,
            "correlation_id": corr,
            "error_uri": f"https://login.microsoftonline.com/error?code={aadsts}",
        },
        status_code=status,
    )


def k8s_status(
    status: int,
    message: str,
    *,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason or _K8S_REASONS.get(status, "Unknown"),
        "code": status,
    }
    if details:
        body["details"] = details
    return JSONResponse(body, status_code=status, headers=headers)


def service_error(
    service: str, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """An error in the envelope of ``service`` (used by fault injection and the catch-all handler)."""
    if service == "kubernetes":
        return k8s_status(status, message, headers=headers)
    if service == "entra":
        resp = entra_error(
            status, "temporarily_unavailable" if status >= 500 else "invalid_request", 90033, message
        )
        for k, v in (headers or {}).items():
            resp.headers[k] = v
        return resp
    return arm_error(status, code, message, headers)
