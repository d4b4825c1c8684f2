"""The commands users run, `keyless-gitops up` and `kubeconfig`, in-process with the Prefect harness."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from keyless_gitops.cli import app
from keyless_gitops.target import AZURE_ENV
from sandbox.server import Sandbox

KUBECTL = str(Path(sys.executable).parent / "kubectl")


def _block_exists(name: str) -> bool:
    from prefect.blocks.system import Secret

    try:
        Secret.load(name)
    except ValueError:
        return False
    return True


def test_up_on_azure_without_credentials_says_what_is_missing(
    sandbox: Sandbox, prefect_harness: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in AZURE_ENV.values():
        monkeypatch.delenv(var, raising=False)
    seq = sandbox.ctx.journal.last_seq
    result = CliRunner().invoke(app, ["up", "--target", "azure"])
    assert result.exit_code == 2
    assert "AZURE_SUBSCRIPTION_ID is missing" in result.output
    assert "keyless-gitops-azure" in result.output
    assert sandbox.ctx.journal.last_seq == seq  # no call anywhere near Azure (or the sandbox)


def test_up_with_a_partial_service_principal_names_the_missing_variables(
    prefect_harness: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in AZURE_ENV.values():
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", "00000000-0000-0000-0000-000000000000")
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "not-a-real-secret")
    result = CliRunner().invoke(app, ["up", "--target", "azure"])
    assert result.exit_code == 2
    assert "AZURE_TENANT_ID is missing" in result.output and "AZURE_CLIENT_ID is missing" in result.output
    assert "not-a-real-secret" not in result.output


def test_a_half_set_environment_neither_runs_nor_sticks(
    prefect_harness: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AZURE_SUBSCRIPTION_ID + AZURE_CLIENT_ID alone is refused before any flow runs, and nothing is
    saved that a later ``--target azure`` would pick up silently."""
    from blocks.credentials import AzureCredentials

    for var in AZURE_ENV.values():
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", "00000000-0000-0000-0000-000000000000")
    monkeypatch.setenv("AZURE_CLIENT_ID", "11111111-1111-1111-1111-111111111111")
    result = CliRunner().invoke(app, ["up", "--target", "azure"])
    assert result.exit_code == 2, result.output
    assert (
        "AZURE_CLIENT_ID set but neither AZURE_CLIENT_SECRET nor AZURE_FEDERATED_TOKEN_FILE" in result.output
    )
    for name in ("keyless-gitops-azure", "keyless-gitops-azure-env"):
        with pytest.raises(ValueError):
            AzureCredentials.load(name)


def test_up_starts_the_sandbox_then_attaches_and_changes_nothing(
    prefect_harness: Path, tmp_path: Path
) -> None:
    """The README's command on a fresh state dir, then kubeconfig, then `up` again against a running
    sandbox (attach): every step unchanged and no write in the journal; kubectl sees the stack."""
    state = tmp_path / "sandbox"
    args = ["--state-dir", str(state)]
    dev_blocks_existed = _block_exists("keyless-gitops-dev-api-key")
    runner = CliRunner()
    first = runner.invoke(app, ["up", *args])
    assert first.exit_code == 0, first.output
    assert "started the sandbox in-process" in first.output
    assert "provisioned dev: done" in first.output and "flow-run/" in first.output
    if not dev_blocks_existed:
        assert "created Prefect Secret blocks keyless-gitops-dev-" in first.output

    kubeconfig = tmp_path / "kubeconfig"
    out = runner.invoke(app, ["kubeconfig", *args, "--output", str(kubeconfig)])
    assert out.exit_code == 0, out.output
    assert stat.S_IMODE(kubeconfig.stat().st_mode) == 0o600
    assert "token" not in out.output.lower() and "BEGIN" not in out.output

    with Sandbox(state) as running:
        seq = running.ctx.journal.last_seq
        second = runner.invoke(app, ["up", *args])
        assert second.exit_code == 0, second.output
        assert "attached to the running sandbox" in second.output
        assert "every step unchanged" in second.output
        writes = [e for e in running.ctx.journal.entries(seq, writes_only=True)]
        assert writes == []
        sa = subprocess.run(
            [
                KUBECTL,
                "--kubeconfig",
                str(kubeconfig),
                "get",
                "sa",
                "sample-app-sa",
                "-n",
                "sample-app",
                "-o",
                "json",
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert json.loads(sa.stdout)["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    assert (state / "journal.jsonl").exists()


def test_kubeconfig_of_an_environment_never_provisioned_says_run_up(
    prefect_harness: Path, tmp_path: Path
) -> None:
    result = CliRunner().invoke(app, ["kubeconfig", "--env", "nosuch", "--state-dir", str(tmp_path / "sb")])
    assert result.exit_code == 1
    assert "run `keyless-gitops up --env nosuch` first" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "kubeconfig-nosuch").exists()
