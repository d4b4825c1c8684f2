"""Validation on the sandbox: the session sandbox + Prefect harness, one provisioned environment."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from keyless_gitops.spec import EnvironmentSpec
from keyless_gitops.target import sandbox_credentials
from sandbox.server import Sandbox

BLOCK = "keyless-gitops-validate-tests"


@pytest.fixture(scope="session")
def creds_block(sandbox: Sandbox, prefect_harness: Path) -> str:
    creds = sandbox_credentials(sandbox.connection)
    creds.retry_total = 2
    creds.polling_interval = 1
    creds.save(BLOCK, overwrite=True)
    return BLOCK


@pytest.fixture
def writes_since(sandbox: Sandbox) -> Callable[[int], list[Any]]:
    def entries(seq: int) -> list[Any]:
        return [e for e in sandbox.ctx.journal.entries(seq, writes_only=True) if e.service != "admin"]

    return entries


def new_spec(sandbox: Sandbox, tag: str) -> EnvironmentSpec:
    """A fresh environment with its own names, bound to the sandbox subscription."""
    return EnvironmentSpec(environment=tag).for_subscription(sandbox.connection["subscription_id"])
