"""Shared fixtures: one sandbox per test session (tests isolate by unique names)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from sandbox.server import Sandbox


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """The session's sandbox, instant time (time_scale=0), no faults."""
    with Sandbox(tmp_path_factory.mktemp("sandbox"), time_scale=0.0) as sb:
        yield sb


@pytest.fixture
def fresh_sandbox(sandbox: Sandbox) -> Iterator[Sandbox]:
    """The session sandbox, with faults, time overrides and caller role reset after the test."""
    yield sandbox
    sandbox.ctx.faults.clear()
    sandbox.ctx.clock.time_scale = 0.0
    sandbox.ctx.clock.overrides = {}
    sandbox.ctx.settings.caller_role = "Owner"


@pytest.fixture(scope="session")
def conn(sandbox: Sandbox) -> dict[str, Any]:
    """The sandbox's connection file contents."""
    return sandbox.connection


@pytest.fixture
def unique() -> str:
    """A short unique suffix for resource names in this test."""
    return uuid.uuid4().hex[:6]
