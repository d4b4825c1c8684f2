"""Validation against the sandbox with the real SDKs and kubernetes client: a fresh provision
passes every row, validation writes nothing, and the report/artifacts/event carry no secret."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flows.provision import provision
from flows.validate import validate
from sandbox.server import Sandbox
from tests.validate.conftest import new_spec

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def provisioned(sandbox: Sandbox, creds_block: str) -> Any:
    spec = new_spec(sandbox, f"v{uuid.uuid4().hex[:5]}")
    provision(spec=spec, credentials_block=creds_block, generate_missing_secrets=True)
    return spec


def test_fresh_provision_passes_every_row_and_validation_writes_nothing(
    sandbox: Sandbox,
    provisioned: Any,
    creds_block: str,
    writes_since: Callable[[int], list[Any]],
    tmp_path: Path,
) -> None:
    mark = sandbox.ctx.journal.last_seq
    doc = validate(spec=provisioned, credentials_block=creds_block)
    bad = [r for r in doc["rows"] if r["status"] != "pass"]
    assert not bad, json.dumps(bad, indent=1)
    assert doc["exit_code"] == 0
    assert writes_since(mark) == []
    checks = {r["check"] for r in doc["rows"]}
    for must in (
        "azure.resource-group",
        "azure.cluster.oidc-issuer",
        "azure.cluster.workload-identity",
        "azure.cluster.csi-addon",
        "azure.key-vault.rbac",
        "entra.identity",
        "azure.role.secrets-user",
        "azure.role.no-broader",
        "azure.extension.version",
        "kubernetes.sample-app.mounted",
        "argocd.application.sync",
        "argocd.application.health",
        "argocd.application.revision",
        "e2e.live-chain",
    ):
        assert must in checks
    assert {r["layer"] for r in doc["rows"]} == {"Azure", "Entra", "Kubernetes", "Argo CD"}
    assert len([c for c in checks if c.startswith("kubernetes.e2e/")]) == len(provisioned.secrets)
