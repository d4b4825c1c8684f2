"""Assembles the sandbox's HTTPS server and runs it, in the foreground or in a background thread.

One HTTPS listener on 127.0.0.1 serves every service; the path says which (see sandbox/README.md):
``/subscriptions/...`` ARM, ``/{tenant}/...`` Entra ID, ``/vaults/{name}/...`` Key Vault,
``/k8s/{cluster}/...`` a cluster's API server, ``/oidc/...`` a cluster's OIDC issuer,
``/_sandbox/...`` the admin API (journal, faults, settings).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from sandbox.clock import Clock
from sandbox.context import CALLER_ROLES, Identity, SandboxContext, Settings
from sandbox.errors import service_error
from sandbox.faults import FaultInjector, FaultRuleError
from sandbox.journal import Journal, classify, is_write
from sandbox.tls import ensure_tls

# The service modules, each exposing ``routes(ctx)``. Order matters only for overlapping paths:
# the catch-all Entra routes (``/{tenant}/...``) come last.
SERVICE_MODULES: list[str] = [
    "sandbox.arm",
    "sandbox.keyvault_data",
    "sandbox.k8s",
    "sandbox.k8s.controllers",
    "sandbox.entra",
]

CONNECTION_FILE = "connection.json"

# Transports by client address, so a fault rule can abort the very connection a request came on.
_TRANSPORTS: dict[tuple[str, int], asyncio.Transport] = {}


class _ResettableH11(H11Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self.client:
            _TRANSPORTS[self.client] = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self.client:
            _TRANSPORTS.pop(self.client, None)
        super().connection_lost(exc)


class _QuietShutdown(logging.Filter):
    """Drop uvicorn's "Cancel N running task(s), timeout graceful shutdown exceeded" line.

    Stopping the sandbox cuts open watch streams on purpose (clients reconnect or are gone); that
    is not an error the user should see at the end of every ``up``.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "timeout graceful shutdown exceeded" not in record.getMessage()


logging.getLogger("uvicorn.error").addFilter(_QuietShutdown())


def _caller(headers: dict[str, str]) -> str | None:
    """Who made the request, for the journal: the token's oid/appid/sub (not verified here)."""
    auth = headers.get("authorization", "")
    if not auth.lower().startswith("bearer "):
        return None
    token = auth[7:].strip()
    parts = token.split(".")
    if len(parts) != 3:
        return "opaque-token"
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return "unreadable-token"
    return payload.get("oid") or payload.get("appid") or payload.get("sub")


class JournalAndFaults:
    """ASGI middleware: modelled latency, fault rules, then the journal entry for every request."""

    def __init__(self, app: ASGIApp, ctx: SandboxContext) -> None:
        self.app = app
        self.ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        method, path = scope["method"], scope["path"]
        service = classify(path)
        query = scope.get("query_string", b"").decode()
        api_version = None
        for part in query.split("&"):
            if part.lower().startswith("api-version="):
                api_version = part.split("=", 1)[1]
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        status_holder: dict[str, int] = {"status": 0}
        fault_id: str | None = None

        recorded = False

        def record() -> None:
            # Journal before the last body chunk leaves, so a client that got its response can
            # already count it (tests read the journal right after a call returns).
            nonlocal recorded
            if recorded or service == "admin":
                return
            recorded = True
            self.ctx.journal.record(
                ts=time.time(),
                service=service,
                method=method,
                path=path,
                api_version=api_version,
                status=status_holder["status"],
                latency_ms=round((time.perf_counter() - start) * 1000, 2),
                caller=_caller(headers),
                write=is_write(method, path),
                fault=fault_id,
                request_id=headers.get("x-ms-client-request-id"),
            )

        async def send_wrapper(message: Any) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                # an empty response is complete for the client once its headers are out
                empty = (b"content-length", b"0") in [(k.lower(), v) for k, v in message.get("headers", [])]
                if empty or message["status"] in (204, 304) or method == "HEAD":
                    record()
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                record()
            await send(message)

        try:
            if service != "admin":
                latency = self.ctx.clock.duration(f"request.{service}") if service != "oidc" else 0.0
                if latency:
                    await asyncio.sleep(latency)
                rule = self.ctx.faults.pick(service, method, path)
                if rule is not None:
                    fault_id = rule.id or rule.action
                    if rule.action == "reset":
                        transport = _TRANSPORTS.get(tuple(scope.get("client") or ()))
                        if transport is not None:
                            transport.abort()
                            await receive()  # the disconnect; uvicorn then expects no response
                        status_holder["status"] = 0
                        return
                    if rule.action == "throttle":
                        resp = service_error(
                            service,
                            429,
                            "TooManyRequests",
                            rule.message or "The request is being throttled.",
                            {"Retry-After": str(rule.retry_after)},
                        )
                    elif rule.action == "conflict":
                        resp = service_error(
                            service,
                            409,
                            rule.code or "AnotherOperationInProgress",
                            rule.message
                            or "Another operation is in progress on this resource. Please retry later.",
                        )
                    else:
                        status = rule.status or 500
                        resp = service_error(
                            service,
                            status,
                            rule.code or ("ServiceUnavailable" if status == 503 else "InternalServerError"),
                            rule.message
                            or "The server encountered an internal error. Please retry the request.",
                            {"Retry-After": str(rule.retry_after)} if status in (429, 503) else None,
                        )
                    await resp(scope, receive, send_wrapper)
                    return
            await self.app(scope, receive, send_wrapper)
        finally:
            record()


MAX_TIME_SCALE = 100.0  # 100 x Azure's pace is already an AKS create of 8 hours
MAX_OVERRIDE_SECONDS = 86400.0


def _settings_body(raw: bytes) -> tuple[float | None, dict[str, float] | None, str | None]:
    """Validate a ``PUT /_sandbox/settings`` body as a whole before anything changes: a time scale of
    1e308 used to put an endless sleep in front of every request, a string a 500."""

    def seconds(value: Any, what: str, high: float) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= high:
            raise ValueError(f"{what} must be a number from 0 to {high:g}")
        return float(value)

    try:
        body = json.loads(raw or b"{}", parse_constant=lambda c: c)  # NaN/Infinity stay strings: refused
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    unknown = set(body) - {"time_scale", "overrides", "caller_role"}
    if unknown:
        raise ValueError(f"unknown setting(s) {sorted(unknown)}; allowed: caller_role, overrides, time_scale")
    time_scale = seconds(body["time_scale"], "time_scale", MAX_TIME_SCALE) if "time_scale" in body else None
    overrides = None
    if "overrides" in body:
        if not isinstance(body["overrides"], dict):
            raise ValueError("overrides must map operation names to seconds")
        overrides = {
            k: seconds(v, f"overrides[{k!r}]", MAX_OVERRIDE_SECONDS) for k, v in body["overrides"].items()
        }
    role = body.get("caller_role")
    if role is not None and role not in CALLER_ROLES:
        raise ValueError(f"caller_role must be one of {CALLER_ROLES}")
    return time_scale, overrides, role


def _admin_routes(ctx: SandboxContext) -> list[BaseRoute]:
    def authorized(request: Request) -> bool:
        return request.headers.get("authorization", "") == f"Bearer {ctx.identity.admin_token}"

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "tenant_id": ctx.identity.tenant_id, "pid": os.getpid()})

    async def journal(request: Request) -> Response:
        if not authorized(request):
            return JSONResponse({"error": "admin token required"}, status_code=401)
        try:
            since = int(request.query_params.get("since", "0"))
        except ValueError:
            return JSONResponse({"error": "since must be an integer (a journal seq)"}, status_code=400)
        writes = request.query_params.get("writes") in ("1", "true")
        entries = ctx.journal.entries(since, service=request.query_params.get("service"), writes_only=writes)
        return JSONResponse({"last_seq": ctx.journal.last_seq, "entries": [e.__dict__ for e in entries]})

    async def faults(request: Request) -> Response:
        if not authorized(request):
            return JSONResponse({"error": "admin token required"}, status_code=401)
        try:
            if request.method == "PUT":
                ctx.faults.set_rules(await request.json())
            elif request.method == "POST":
                ctx.faults.add(await request.json())
            elif request.method == "DELETE":
                ctx.faults.clear()
        except (FaultRuleError, ValueError, TypeError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"rules": ctx.faults.rules()})

    async def settings(request: Request) -> Response:
        if not authorized(request):
            return JSONResponse({"error": "admin token required"}, status_code=401)
        if request.method == "PUT":
            try:
                time_scale, overrides, role = _settings_body(await request.body())
            except ValueError as exc:  # nothing changes on a bad body
                return JSONResponse({"error": str(exc)}, status_code=400)
            if time_scale is not None:
                ctx.clock.time_scale = time_scale
            if overrides is not None:
                ctx.clock.overrides = overrides
            if role is not None:
                ctx.settings.caller_role = role
        return JSONResponse(
            {
                "time_scale": ctx.clock.time_scale,
                "overrides": ctx.clock.overrides,
                "caller_role": ctx.settings.caller_role,
            }
        )

    return [
        Route("/_sandbox/health", health),
        Route("/_sandbox/journal", journal),
        Route("/_sandbox/faults", faults, methods=["GET", "PUT", "POST", "DELETE"]),
        Route("/_sandbox/settings", settings, methods=["GET", "PUT"]),
    ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_is_free(port: int) -> bool:
    with socket.socket() as s:
        # as uvicorn binds: connections of the previous run in TIME_WAIT must not cost the port
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class Sandbox:
    """The sandbox server. ``with Sandbox(state_dir) as sb:`` runs it in a background thread.

    The port is chosen once per state directory and kept (kubeconfigs, vault URIs and the OIDC
    issuer URLs stored in state embed it), unless ``port`` is given.
    """

    def __init__(
        self,
        state_dir: Path | str,
        *,
        time_scale: float = 0.0,
        faults_file: Path | None = None,
        port: int | None = None,
    ) -> None:
        if isinstance(time_scale, bool) or not 0 <= time_scale <= MAX_TIME_SCALE:  # NaN fails too
            raise ValueError(f"time_scale must be a number from 0 to {MAX_TIME_SCALE:g}, got {time_scale!r}")
        self.state_dir = Path(state_dir).resolve()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        identity = Identity.load_or_create(self.state_dir / "identity.json")
        self.port = port or self._choose_port()
        tls = ensure_tls(self.state_dir)
        faults = FaultInjector()
        if faults_file is not None:
            faults.load(faults_file)
        self.ctx = SandboxContext(
            state_dir=self.state_dir,
            base_url=f"https://127.0.0.1:{self.port}",
            identity=identity,
            tls=tls,
            clock=Clock(time_scale=time_scale),
            journal=Journal(self.state_dir / "journal.jsonl"),
            faults=faults,
            settings=Settings(),
        )
        self.app = self._build_app()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # -- assembly ---------------------------------------------------------------------------
    def _choose_port(self) -> int:
        port_file = self.state_dir / "port"
        if port_file.exists():
            port = int(port_file.read_text().strip())
            if _port_is_free(port):
                return port
        port = _free_port()
        port_file.write_text(str(port))
        return port

    def _build_app(self) -> ASGIApp:
        ctx = self.ctx
        routes = _admin_routes(ctx)
        for name in SERVICE_MODULES:
            routes.extend(importlib.import_module(name).routes(ctx))

        @contextlib.asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            for hook in ctx.on_startup:
                await hook()
            yield
            for hook in ctx.on_shutdown:
                await hook()

        async def not_found(request: Request, exc: Exception) -> Response:
            return service_error(
                classify(request.url.path),
                404,
                "NotFound",
                f"No route for {request.method} {request.url.path}",
            )

        async def crashed(request: Request, exc: Exception) -> Response:
            return service_error(
                classify(request.url.path), 500, "InternalServerError", f"sandbox error: {type(exc).__name__}"
            )

        app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={404: not_found, 500: crashed})
        return JournalAndFaults(app, ctx)

    # -- the connection file --------------------------------------------------------------------
    @property
    def connection(self) -> dict[str, Any]:
        ident = self.ctx.identity
        return {
            "arm_endpoint": self.ctx.base_url,
            "authority_host": self.ctx.base_url,
            "tenant_id": ident.tenant_id,
            "subscription_id": ident.subscription_id,
            "client_id": ident.client_id,
            "client_secret": ident.client_secret,
            "ca_bundle": str(self.ctx.tls.ca_bundle),
            "admin_endpoint": f"{self.ctx.base_url}/_sandbox",
            "admin_token": ident.admin_token,
            "state_dir": str(self.state_dir),
            "pid": os.getpid(),
        }

    def _write_connection(self) -> None:
        path = self.state_dir / CONNECTION_FILE
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(self.connection, f, indent=1)
        os.replace(tmp, path)

    def _remove_connection(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.state_dir / CONNECTION_FILE).unlink()

    # -- running --------------------------------------------------------------------------------
    def _config(self) -> uvicorn.Config:
        return uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            ssl_certfile=str(self.ctx.tls.cert_chain),
            ssl_keyfile=str(self.ctx.tls.private_key),
            http=_ResettableH11,
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=2,
            ws="none",
        )

    def serve_forever(self) -> None:
        """Run in the foreground until interrupted (Ctrl-C / SIGTERM)."""

        async def forget_connection() -> None:
            # uvicorn re-raises the captured signal after shutdown, which ends the process before a
            # ``finally`` here would run: remove the connection file while shutting down instead.
            self._remove_connection()

        self.ctx.on_shutdown.append(forget_connection)
        self._server = uvicorn.Server(self._config())
        watcher = threading.Thread(target=self._announce_when_started, daemon=True)
        watcher.start()
        try:
            self._server.run()
        finally:
            self._remove_connection()

    def _announce_when_started(self) -> None:
        while self._server is not None and not self._server.started:
            if self._server.should_exit:
                return
            time.sleep(0.02)
        self._write_connection()

    def start(self, timeout: float = 20.0) -> Sandbox:
        self._server = uvicorn.Server(self._config())
        self._thread = threading.Thread(target=self._server.run, name="sandbox-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the sandbox did not start on 127.0.0.1:{self.port}")
            time.sleep(0.02)
        self._write_connection()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._remove_connection()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
