"""What every sandbox service module gets: identity of the fake tenant, clock, journal, faults, state.

Service modules expose ``routes(ctx: SandboxContext) -> list[starlette.routing.BaseRoute]`` and may
register cross-module APIs in ``ctx.services`` (e.g. ``ctx.services["entra"]`` verifies tokens,
``ctx.services["clusters"]`` is the Kubernetes side that ARM's managed clusters drive) and
background work in ``ctx.on_startup`` / ``ctx.on_shutdown`` (async callables run on the server loop).
"""

from __future__ import annotations

import json
import os
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.clock import Clock
from sandbox.faults import FaultInjector
from sandbox.journal import Journal
from sandbox.persist import StateFile
from sandbox.tls import TlsFiles

CALLER_ROLES = ("Owner", "Contributor")


@dataclass(frozen=True, kw_only=True)
class Identity:
    """The fake tenant, subscription and the pipeline's own service principal (persisted)."""

    tenant_id: str
    subscription_id: str
    client_id: str
    client_secret: str
    object_id: str
    admin_token: str

    @classmethod
    def load_or_create(cls, path: Path) -> Identity:
        if path.exists():
            return cls(**json.loads(path.read_text()))
        ident = cls(
            tenant_id=str(uuid.uuid4()),
            subscription_id=str(uuid.uuid4()),
            client_id=str(uuid.uuid4()),
            client_secret=secrets.token_urlsafe(32),
            object_id=str(uuid.uuid4()),
            admin_token=secrets.token_urlsafe(24),
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # holds the client secret
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(ident.__dict__, indent=1))
        return ident


@dataclass
class Settings:
    """Runtime knobs, changeable over ``PUT /_sandbox/settings``."""

    caller_role: str = "Owner"  # the pipeline principal's ARM role on the subscription
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class SandboxContext:
    state_dir: Path
    base_url: str
    identity: Identity
    tls: TlsFiles
    clock: Clock
    journal: Journal
    faults: FaultInjector
    settings: Settings
    services: dict[str, Any] = field(default_factory=dict)
    on_startup: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    on_shutdown: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    _states: dict[str, StateFile] = field(default_factory=dict)

    def state(self, area: str) -> StateFile:
        """The persistent JSON document for ``area`` (``STATE_DIR/state/<area>.json``)."""
        if area not in self._states:
            self._states[area] = StateFile(self.state_dir / "state" / f"{area}.json")
        return self._states[area]

    @property
    def authority_host(self) -> str:
        return self.base_url
