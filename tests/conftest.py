"""Shared fixtures: one sandbox per test session (tests isolate by unique names)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
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


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The session's one Prefect test harness (temporary database + API); yields the result storage dir.

    ``prefect_test_harness`` does not move result storage, so persisted results go to a temporary
    folder here (CLIENT-FACTS, Prefect 3.9).
    """
    from prefect.settings import (
        PREFECT_RESULTS_LOCAL_STORAGE_PATH,
        PREFECT_SERVER_ANALYTICS_ENABLED,
        temporary_settings,
    )
    from prefect.testing.utilities import prefect_test_harness

    results = tmp_path_factory.mktemp("prefect-results")
    with (
        temporary_settings(
            {PREFECT_RESULTS_LOCAL_STORAGE_PATH: results, PREFECT_SERVER_ANALYTICS_ENABLED: False}
        ),
        prefect_test_harness(server_startup_timeout=60),
    ):
        yield results
