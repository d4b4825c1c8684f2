"""``keyless-gitops check``: exit status non-zero on drift (for CI) and ``--report FILE`` JSON."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from keyless_gitops.cli import app
from sandbox.server import Sandbox

pytestmark = pytest.mark.e2e


def test_check_on_a_missing_environment_reports_drift_exits_1_and_writes_the_report(
    sandbox: Sandbox, prefect_harness: Path, tmp_path: Path
) -> None:
    env = f"c{uuid.uuid4().hex[:5]}"  # never provisioned
    report = tmp_path / "out" / "report.json"
    mark = sandbox.ctx.journal.last_seq
    result = CliRunner().invoke(
        app, ["check", "--env", env, "--state-dir", str(sandbox.state_dir), "--report", str(report)]
    )
    assert result.exit_code == 1, result.output
    assert "attached" in result.output  # it used the running sandbox
    doc = json.loads(report.read_text())
    assert doc["environment"] == env and doc["exit_code"] == 1
    rg = next(r for r in doc["rows"] if r["check"] == "azure.resource-group")
    assert (rg["status"], rg["layer"], rg["actual"]) == ("drift", "Azure", "(absent)")
    assert f"validation-{env}" in result.output
    # read-only, even through the CLI
    writes = [e for e in sandbox.ctx.journal.entries(mark, writes_only=True) if e.service != "admin"]
    assert writes == []
