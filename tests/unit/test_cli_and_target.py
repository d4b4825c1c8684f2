"""Pure parts of the CLI and target choice: private file writing, spec loading, Azure credential errors."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest
import typer

from keyless_gitops.cli import _load_spec, write_private
from keyless_gitops.target import TargetError, azure_credentials_from_env
from tasks.common import wait_until


def test_write_private_is_0600_from_the_start(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "kubeconfig"
    write_private(path, b"apiVersion: v1\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.chmod(0o644)
    write_private(path, b"again")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_bytes() == b"again"


def test_load_spec_from_a_deployments_file_or_a_bare_spec(tmp_path: Path) -> None:
    deployments = Path(__file__).resolve().parents[2] / "deployments" / "staging.yaml"
    if deployments.exists():
        assert _load_spec("dev", deployments).environment == "staging"
    bare = tmp_path / "spec.yaml"
    bare.write_text("environment: qa\nnode_count: 4\n")
    spec = _load_spec("dev", bare)
    assert (spec.environment, spec.node_count) == ("qa", 4)
    assert _load_spec("prod", None).protected


def test_load_spec_refuses_invalid_specs_before_any_call(tmp_path: Path) -> None:
    bad = tmp_path / "spec.yaml"
    bad.write_text("spec:\n  key_vault_name: '1-bad'\n")
    with pytest.raises(typer.Exit) as info:
        _load_spec("dev", bad)
    assert info.value.exit_code == 2


@pytest.mark.parametrize(
    ("environ", "missing"),
    [
        ({}, ["AZURE_SUBSCRIPTION_ID is missing"]),
        (
            {"AZURE_SUBSCRIPTION_ID": "s", "AZURE_CLIENT_SECRET": "s3cr3t-value"},
            ["AZURE_TENANT_ID", "AZURE_CLIENT_ID"],
        ),
        (
            {"AZURE_SUBSCRIPTION_ID": "s", "AZURE_FEDERATED_TOKEN_FILE": "/t", "AZURE_TENANT_ID": "t"},
            ["AZURE_CLIENT_ID"],
        ),
        # a half-set service principal is not the default chain (found by trying it as a new user)
        (
            {"AZURE_SUBSCRIPTION_ID": "s", "AZURE_CLIENT_ID": "c"},
            ["AZURE_CLIENT_ID set but neither AZURE_CLIENT_SECRET nor AZURE_FEDERATED_TOKEN_FILE"],
        ),
        (
            {"AZURE_SUBSCRIPTION_ID": "s", "AZURE_TENANT_ID": "t"},
            ["AZURE_TENANT_ID set but neither AZURE_CLIENT_SECRET nor AZURE_FEDERATED_TOKEN_FILE"],
        ),
    ],
)
def test_azure_from_env_names_what_is_missing(environ: dict[str, str], missing: list[str]) -> None:
    with pytest.raises(TargetError) as info:
        azure_credentials_from_env(environ)
    for name in missing:
        assert name in str(info.value)
    assert "s3cr3t-value" not in str(info.value)


def test_azure_from_env_modes() -> None:
    assert azure_credentials_from_env({"AZURE_SUBSCRIPTION_ID": "s"}).mode == "default_chain"
    sp = azure_credentials_from_env(
        {
            "AZURE_SUBSCRIPTION_ID": "s",
            "AZURE_TENANT_ID": "t",
            "AZURE_CLIENT_ID": "c",
            "AZURE_CLIENT_SECRET": "x",
        }
    )
    assert sp.mode == "service_principal"


def test_long_waits_print_progress(caplog: pytest.LogCaptureFixture) -> None:
    calls = iter(range(100))
    with caplog.at_level(logging.INFO, logger="keyless_gitops"):
        wait_until(
            lambda: next(calls) >= 6,
            what="the slow thing",
            timeout=10,
            interval=0.02,
            max_interval=0.05,
            progress_every=0.05,
            describe=lambda: "2/3 ready",
        )
    progress = [
        r.getMessage() for r in caplog.records if "still waiting for the slow thing" in r.getMessage()
    ]
    assert progress and "(2/3 ready)" in progress[0]
    assert any("the slow thing: done after" in r.getMessage() for r in caplog.records)
