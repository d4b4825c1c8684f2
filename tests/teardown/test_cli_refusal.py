"""``keyless-gitops down --env prod`` refuses before touching anything (prod is protected)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from keyless_gitops.cli import app


def test_down_prod_refuses_without_confirmation_and_starts_nothing(tmp_path: Path) -> None:
    state_dir = tmp_path / "sandbox"
    result = CliRunner().invoke(app, ["down", "--env", "prod", "--state-dir", str(state_dir)])
    assert result.exit_code == 3, result.output
    assert "protected" in result.output and "--confirm prod" in result.output
    assert not state_dir.exists()  # no sandbox was started, no call was made


def test_down_prod_with_the_wrong_name_refuses(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["down", "--env", "prod", "--confirm", "dev", "--state-dir", str(tmp_path / "s")]
    )
    assert result.exit_code == 3, result.output


def test_down_with_the_prod_deployment_file_refuses(tmp_path: Path) -> None:
    spec_file = Path(__file__).resolve().parents[2] / "deployments" / "prod.yaml"
    result = CliRunner().invoke(app, ["down", "--spec", str(spec_file), "--state-dir", str(tmp_path / "s")])
    assert result.exit_code == 3, result.output
    assert "'prod' is protected" in result.output
