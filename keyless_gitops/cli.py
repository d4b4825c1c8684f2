"""The ``keyless-gitops`` command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
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

    if time_scale < 0:
        raise typer.BadParameter("must be >= 0", param_hint="--time-scale")
    if faults is not None and not faults.is_file():
        raise typer.BadParameter(f"{faults} is not a file", param_hint="--faults")
    sb = Sandbox(state_dir, time_scale=time_scale, faults_file=faults, port=port)
    typer.echo(f"sandbox: serving https://127.0.0.1:{sb.port} (state in {sb.state_dir}); Ctrl-C stops it")
    typer.echo(f"sandbox: connection file {sb.state_dir / 'connection.json'}")
    sb.serve_forever()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
