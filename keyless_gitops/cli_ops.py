"""``keyless-gitops check`` and ``keyless-gitops down``: validation and teardown from the terminal.

Registered on the main app in ``keyless_gitops/cli.py``. Both open the same target as ``up``
(the sandbox by default, attaching to a running one) and run the flows in-process.
Exit status of ``check``: 0 every row passes, 1 drift, 2 a check could not run (or the target
could not be opened); ``down``: 0 done, 1 failed, 3 refused (protected environment).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

TARGET_HELP = "The local sandbox (default) or Azure (needs credentials)."
DEFAULT_STATE_DIR = Path(".state/sandbox")
SPEC_HELP = "A YAML environment spec (or a deployments/ENV.yaml); overrides --env's built-in values."


def check(
    env: Annotated[str, typer.Option(help="Environment to validate: dev, staging, prod, ...")] = "dev",
    target: Annotated[str, typer.Option(help=TARGET_HELP)] = "sandbox",
    report: Annotated[Path | None, typer.Option(help="Also write the rows as JSON to this file.")] = None,
    remediate: Annotated[
        bool, typer.Option(help="Re-run only the provision steps behind drifted rows, then re-validate.")
    ] = False,
    state_dir: Annotated[Path, typer.Option(help="The sandbox's state directory.")] = DEFAULT_STATE_DIR,
    spec_file: Annotated[Path | None, typer.Option("--spec", help=SPEC_HELP)] = None,
) -> None:
    """Validate the keyless chain end to end (read-only unless --remediate); non-zero exit on drift."""
    from keyless_gitops.cli import _load_spec, _prefect_defaults, _target_kind

    _prefect_defaults(state_dir)
    from flows.validate import validate
    from keyless_gitops.target import TargetError, open_target
    from tasks.drift import EXIT_FAIL, Report

    spec = _load_spec(env, spec_file)
    env = spec.environment
    try:
        with open_target(_target_kind(target), state_dir=state_dir) as tgt:
            typer.echo(f"keyless-gitops check --env {env}: {tgt.description}")
            state = validate(
                spec=spec,
                credentials_block=tgt.credentials_block,
                remediate=remediate,
                fail_on_drift=False,
                return_state=True,
            )
    except TargetError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_FAIL) from None
    if not state.is_completed():
        typer.echo(f"validation of {env} could not run: {state.message}", err=True)
        raise typer.Exit(EXIT_FAIL)
    doc = state.result()
    rep = Report.from_json(doc)
    for line in rep.lines():
        typer.echo(line)
    c = rep.counts
    typer.echo(f"\n{env}: {c['pass']} pass, {c['drift']} drift, {c['fail']} fail")
    if "remediation" in doc:
        steps = doc["remediation"]["steps"]
        typer.echo(f"remediation re-ran: {', '.join(steps) or 'nothing'}")
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(doc, indent=1) + "\n")
        typer.echo(f"report: {report}")
    typer.echo(f"artifacts: {rep.table_key} (table) and {rep.summary_key} (summary) in the Prefect UI")
    raise typer.Exit(rep.exit_code)


def down(
    env: Annotated[str, typer.Option(help="Environment to tear down.")] = "dev",
    target: Annotated[str, typer.Option(help=TARGET_HELP)] = "sandbox",
    confirm: Annotated[
        str | None, typer.Option(help="The environment's name again: required for a protected one.")
    ] = None,
    state_dir: Annotated[Path, typer.Option(help="The sandbox's state directory.")] = DEFAULT_STATE_DIR,
    spec_file: Annotated[Path | None, typer.Option("--spec", help=SPEC_HELP)] = None,
) -> None:
    """Tear the environment down in reverse order and verify nothing is left (vault purged)."""
    from keyless_gitops.cli import _load_spec, _prefect_defaults, _target_kind

    _prefect_defaults(state_dir)
    from flows.teardown import teardown
    from keyless_gitops.target import TargetError, open_target
    from tasks.teardown_plan import ProtectedEnvironmentError, ensure_teardown_allowed

    spec = _load_spec(env, spec_file)
    env = spec.environment
    try:  # refuse before starting anything
        ensure_teardown_allowed(environment=spec.environment, protected=spec.protected, confirm=confirm)
    except ProtectedEnvironmentError as exc:
        typer.echo(f"refused: {exc}", err=True)
        raise typer.Exit(3) from None
    try:
        with open_target(_target_kind(target), state_dir=state_dir) as tgt:
            typer.echo(f"keyless-gitops down --env {env}: {tgt.description}")
            state = teardown(
                spec=spec, credentials_block=tgt.credentials_block, confirm=confirm, return_state=True
            )
    except TargetError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if not state.is_completed():
        typer.echo(f"teardown of {env} ended {state.name}: {state.message}", err=True)
        raise typer.Exit(1)
    for r in state.result():
        detail = f"  ({r['detail']})" if r["detail"] else ""
        typer.echo(f"{r['step']:<22} {r['outcome']:<9} {r['seconds']:>6.1f}s  {r['resource']}{detail}")
    typer.echo(f"\n{env} is gone.")
