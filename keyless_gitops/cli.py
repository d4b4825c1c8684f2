"""The ``keyless-gitops`` command."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

if TYPE_CHECKING:
    from keyless_gitops.spec import EnvironmentSpec

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help=(
        "Provision (up), validate (check) and tear down (down) a keyless GitOps stack on Azure "
        "or on the local sandbox."
    ),
)
sandbox_app = typer.Typer(no_args_is_help=True, help="Run the local Azure + AKS sandbox.")
app.add_typer(sandbox_app, name="sandbox")

DEFAULT_STATE_DIR = Path(".state/sandbox")


@sandbox_app.command("serve")
def sandbox_serve(
    state_dir: Annotated[
        Path, typer.Option(help="Where the sandbox keeps its state, CA and connection file.")
    ] = (DEFAULT_STATE_DIR),
    time_scale: Annotated[
        float, typer.Option(help="Speed of modelled time: 1 = real Azure durations, 0 = instant.")
    ] = 0.0,
    faults: Annotated[
        Path | None, typer.Option(help="A JSON file of fault rules (see sandbox/README.md).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Listen on this port (default: kept per state dir).")
    ] = None,
) -> None:
    """Serve the sandbox over HTTPS on 127.0.0.1 until interrupted.

    Writes STATE_DIR/connection.json once it accepts requests.
    """
    from sandbox.server import Sandbox

    if not 0 <= time_scale <= 100:  # also refuses NaN
        raise typer.BadParameter("must be between 0 (instant) and 100", param_hint="--time-scale")
    if faults is not None and not faults.is_file():
        raise typer.BadParameter(f"{faults} is not a file", param_hint="--faults")
    sb = Sandbox(state_dir, time_scale=time_scale, faults_file=faults, port=port)
    typer.echo(f"sandbox: serving https://127.0.0.1:{sb.port} (state in {sb.state_dir}); Ctrl-C stops it")
    typer.echo(f"sandbox: connection file {sb.state_dir / 'connection.json'}")
    sb.serve_forever()


# -- up / kubeconfig (the provision path) ---------------------------------------------------------

TARGET_HELP = "Where the environment lives: the local sandbox (default) or Azure (needs credentials)."
SPEC_HELP = "A YAML environment spec (or a deployments/ENV.yaml); overrides --env's built-in values."


def _prefect_defaults(state_dir: Path) -> None:
    """Prefect settings for a CLI run, unless the user set them (read when prefect is imported)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # The embedded server can take a while to come up on a busy machine (default 20 s).
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    # Persisted results (ids only, never secrets) let `prefect flow-run retry` skip finished steps.
    # They stay in Prefect's own setting (default $PREFECT_HOME/storage), so a later `prefect`
    # command on this machine finds them; workers on several machines need shared result storage.


@app.command("up")
def up(
    env: Annotated[
        str, typer.Option(help="Environment: dev (the recipe), staging, prod, or another name.")
    ] = "dev",
    target: Annotated[str, typer.Option(help=TARGET_HELP)] = "sandbox",
    state_dir: Annotated[Path, typer.Option(help="The sandbox's state directory.")] = DEFAULT_STATE_DIR,
    spec_file: Annotated[Path | None, typer.Option("--spec", help=SPEC_HELP)] = None,
) -> None:
    """Provision the whole stack (idempotent: a second run changes nothing)."""
    _prefect_defaults(state_dir)
    spec = _load_spec(env, spec_file)
    env = spec.environment
    from flows.provision import ProvisionResult, provision, summary_rows
    from keyless_gitops.target import TargetError, open_target

    try:
        with open_target(_target_kind(target), state_dir=state_dir) as tgt:
            typer.echo(f"keyless-gitops up --env {env}: {tgt.description}")
            state = provision(
                spec=spec,
                credentials_block=tgt.credentials_block,
                generate_missing_secrets=tgt.generate_missing_secrets,
                return_state=True,
            )
    except TargetError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    run_id = state.state_details.flow_run_id
    if not state.is_completed():
        typer.echo(f"\nprovision {env} ended {state.name}: {state.message}", err=True)
        typer.echo(
            "retry only the unfinished steps with: "
            f"prefect flow-run retry {run_id} --entrypoint flows/provision.py:provision",
            err=True,
        )
        _how_to_open(run_id)
        raise typer.Exit(1)
    result: ProvisionResult = state.result()
    typer.echo("")
    rows = summary_rows(result)
    typer.echo(f"{'step':<22} {'change':<10} {'start s':>8} {'end s':>8}  resource")
    for r in rows:
        typer.echo(f"{r['step']:<22} {r['change']:<10} {r['start_s']:>8} {r['end_s']:>8}  {r['resource']}")
    verdict = "every step unchanged" if result.unchanged else "done"
    typer.echo(f"\nprovisioned {env}: {verdict}. Cluster {result.cluster} in {result.resource_group}.")
    generated = [b for step in result.steps for b in getattr(step, "generated_blocks", ())]
    if generated:
        typer.echo(
            f"created Prefect Secret blocks {', '.join(generated)} with generated values "
            "(sandbox); set your own values in those blocks and run up again to rotate them"
        )
    if target == "sandbox":
        typer.echo(
            f"kubectl access: keep the sandbox up with `{_bin('keyless-gitops')} sandbox serve &`, then "
            f"`{_bin('keyless-gitops')} kubeconfig --env {env}` and `{_bin('kubectl')} --kubeconfig ...`"
        )
    else:
        typer.echo(f"kubectl access: {_bin('keyless-gitops')} kubeconfig --env {env} --target {target}")
    _how_to_open(run_id)


def _bin(name: str) -> str:
    """How to call a program of this installation (``.venv/bin/NAME``: it is not on PATH by default)."""
    path = Path(sys.executable).parent / name
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _load_spec(env: str, spec_file: Path | None) -> EnvironmentSpec:
    """The environment spec: from ``--spec`` (a spec, or a deployments/*.yaml with a ``spec:`` key), else
    the built-in preset for ``--env``. Validated here, before any call."""
    import yaml
    from pydantic import ValidationError

    from keyless_gitops.spec import EnvironmentSpec, preset

    try:
        if spec_file is None:
            return preset(env)
        doc = yaml.safe_load(spec_file.read_text()) or {}
        return EnvironmentSpec.model_validate(doc.get("spec", doc) if isinstance(doc, dict) else doc)
    except ValidationError as exc:
        problems = "\n".join(
            f"  {'.'.join(str(p) for p in err['loc']) or 'spec'}: {err['msg']} (got {err.get('input')!r})"
            for err in exc.errors(include_url=False)
        )
        typer.echo(f"error: the environment spec is not valid (nothing was created):\n{problems}", err=True)
        raise typer.Exit(2) from None
    except (OSError, yaml.YAMLError) as exc:
        typer.echo(f"error: cannot read the environment spec {spec_file}: {exc}", err=True)
        raise typer.Exit(2) from None


def _target_kind(target: str) -> Literal["sandbox", "azure"]:
    if target not in ("sandbox", "azure"):
        raise typer.BadParameter("use sandbox or azure", param_hint="--target")
    return "sandbox" if target == "sandbox" else "azure"


def _how_to_open(run_id: object) -> None:
    typer.echo(
        f"artifacts (step table + summary) are in flow run {run_id}: run "
        f"`{_bin('prefect')} server start` and open http://127.0.0.1:4200/runs/flow-run/{run_id} "
        f"(or: {_bin('prefect')} artifact ls)"
    )


@app.command("kubeconfig")
def kubeconfig(
    env: Annotated[str, typer.Option(help="Environment whose cluster to reach.")] = "dev",
    target: Annotated[str, typer.Option(help=TARGET_HELP)] = "sandbox",
    output: Annotated[
        Path | None, typer.Option(help="Where to write it (default .state/kubeconfig-ENV).")
    ] = None,
    state_dir: Annotated[Path, typer.Option(help="The sandbox's state directory.")] = DEFAULT_STATE_DIR,
    spec_file: Annotated[Path | None, typer.Option("--spec", help=SPEC_HELP)] = None,
) -> None:
    """Write the cluster's kubeconfig for kubectl (a credential: mode 0600, never printed)."""
    _prefect_defaults(state_dir)
    from azure.core.exceptions import ResourceNotFoundError

    from keyless_gitops.target import TargetError, open_target
    from tasks.aks import get_kubeconfig
    from tasks.common import load_credentials

    base_spec = _load_spec(env, spec_file)
    env = base_spec.environment
    path = output or state_dir.parent / f"kubeconfig-{env}"
    try:
        with open_target(_target_kind(target), state_dir=state_dir) as tgt:
            creds = load_credentials(tgt.credentials_block)
            spec = base_spec.for_subscription(creds.subscription_id)
            try:
                data = get_kubeconfig(creds, spec.names)
            except ResourceNotFoundError:
                typer.echo(
                    f"error: environment {env!r} has no cluster {spec.names.cluster} in resource group "
                    f"{spec.names.resource_group}: run `keyless-gitops up --env {env}` first",
                    err=True,
                )
                raise typer.Exit(1) from None
            attached = "attached" in tgt.description
    except TargetError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    write_private(path, data)
    typer.echo(f"wrote {path} (mode 0600): {_bin('kubectl')} --kubeconfig {path} get pods -A")
    if target == "sandbox" and not attached:
        typer.echo("the sandbox is not running now: start it with `keyless-gitops sandbox serve` for kubectl")


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` readable by the owner only (created 0600, never world-readable in between)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(data)
    os.replace(tmp, path)


# -- check / down (validation and teardown): keyless_gitops/cli_ops.py ---------------------------
from keyless_gitops import cli_ops  # noqa: E402

app.command("check")(cli_ops.check)
app.command("down")(cli_ops.down)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
