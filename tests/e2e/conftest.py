"""End-to-end fixtures: the session sandbox + the session Prefect harness + the sandbox credentials block."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from keyless_gitops.spec import EnvironmentSpec
from keyless_gitops.target import SANDBOX_BLOCK, sandbox_credentials
from sandbox.server import Sandbox

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="session")
def creds_block(sandbox: Sandbox, prefect_harness: Path) -> str:
    """The sandbox's credentials, saved as the block the flow reads (as ``keyless-gitops up`` does)."""
    creds = sandbox_credentials(sandbox.connection)
    creds.retry_total = 2
    name = (
        f"{SANDBOX_BLOCK}-e2e-session"  # not SANDBOX_BLOCK: the CLI tests save that one for their own sandbox
    )
    creds.save(name, overwrite=True)
    return name


@pytest.fixture
def spec(sandbox: Sandbox, unique: str) -> EnvironmentSpec:
    """A fresh environment (its own names) bound to the sandbox subscription."""
    return EnvironmentSpec(environment=f"t{unique}").for_subscription(sandbox.connection["subscription_id"])


@pytest.fixture
def writes_since(sandbox: Sandbox) -> Callable[[int], list[Any]]:
    """Journal entries that wrote anything (PUT/POST/PATCH/DELETE, not token grants) after ``seq``."""

    def entries(seq: int) -> list[Any]:
        return [e for e in sandbox.ctx.journal.entries(seq, writes_only=True) if e.service != "admin"]

    return entries
