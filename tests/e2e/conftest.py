"""End-to-end fixtures: the session sandbox + the session Prefect harness + the sandbox credentials block."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from keyless_gitops.spec import AKS_STORE_DEMO_REPO, AKS_STORE_DEMO_REVISION, EnvironmentSpec
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


def upstream_pin_resolves(state_dir: Path) -> bool:
    """Does the sandbox's git mirror resolve the product's pin (upstream aks-store-demo 7ce10c5)?"""
    from sandbox.k8s.controllers import gitrepos

    gitrepos.ensure_builtin_mirrors(state_dir)
    repo = gitrepos.mirror_path(state_dir, AKS_STORE_DEMO_REPO)
    try:
        gitrepos.resolve(repo, AKS_STORE_DEMO_REVISION)  # type: ignore[arg-type]
    except gitrepos.GitError:
        return False
    return True


def sandbox_pin(sandbox: Sandbox | Path) -> str:
    """The pinned revision for e2e specs: the product's own pin when the sandbox resolves it.

    The sandbox's mirror serves the vendored fixture (upstream commit 7ce10c5) as its own
    deterministic commit, whose SHA differs from upstream's; until the mirror also resolves the
    upstream SHA, the e2e specs pin the mirror's commit (same files) so the rest is tested.
    """
    state_dir = sandbox if isinstance(sandbox, Path) else sandbox.state_dir
    if upstream_pin_resolves(state_dir):
        return AKS_STORE_DEMO_REVISION
    from sandbox.k8s.controllers import gitrepos

    return gitrepos.resolve(gitrepos.mirror_path(state_dir, AKS_STORE_DEMO_REPO), "HEAD")  # type: ignore[arg-type]


@pytest.fixture
def spec(sandbox: Sandbox, unique: str) -> EnvironmentSpec:
    """A fresh environment (its own names) bound to the sandbox subscription."""
    return EnvironmentSpec(
        environment=f"t{unique}", gitops={"target_revision": sandbox_pin(sandbox)}
    ).for_subscription(  # type: ignore[arg-type]
        sandbox.connection["subscription_id"]
    )


@pytest.fixture
def writes_since(sandbox: Sandbox) -> Callable[[int], list[Any]]:
    """Journal entries that wrote anything (PUT/POST/PATCH/DELETE, not token grants) after ``seq``."""

    def entries(seq: int) -> list[Any]:
        return [e for e in sandbox.ctx.journal.entries(seq, writes_only=True) if e.service != "admin"]

    return entries
