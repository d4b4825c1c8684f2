"""Choosing where to provision: the sandbox (default) or Azure.

The only product code that knows about the sandbox. For ``sandbox`` it attaches to a running one
(``STATE_DIR/connection.json`` + ``GET {admin_endpoint}/health``) or starts ``sandbox.server.Sandbox``
in-process and stops it at the end (state is on disk, nothing is lost), and saves an
``AzureCredentials`` block from the connection file. For ``azure`` it loads a saved block or builds
one from the ``AZURE_*`` environment variables, and fails before any call, naming what is missing.
The sandbox is never used when Azure was asked for.
"""

from __future__ import annotations

import contextlib
import json
import os
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx

from blocks.credentials import AzureCredentials, missing_fields

TargetKind = Literal["sandbox", "azure"]
SANDBOX_BLOCK = "keyless-gitops-sandbox"
AZURE_BLOCK = "keyless-gitops-azure"
DEFAULT_STATE_DIR = Path(".state/sandbox")

AZURE_ENV = {
    "subscription_id": "AZURE_SUBSCRIPTION_ID",
    "tenant_id": "AZURE_TENANT_ID",
    "client_id": "AZURE_CLIENT_ID",
    "client_secret": "AZURE_CLIENT_SECRET",
    "federated_token_file": "AZURE_FEDERATED_TOKEN_FILE",
}


class TargetError(RuntimeError):
    """The target cannot be used; the message says what is missing and how to fix it."""


@dataclass(frozen=True, kw_only=True)
class Target:
    kind: TargetKind
    credentials_block: str
    description: str  # what the user is told ("attached to the sandbox at ...")
    generate_missing_secrets: bool
    connection: dict[str, Any] | None = None  # the sandbox's connection file (holds credentials)


def read_connection(state_dir: Path) -> dict[str, Any] | None:
    path = state_dir / "connection.json"
    try:
        return dict(json.loads(path.read_text()))
    except (FileNotFoundError, ValueError):
        return None


def sandbox_is_up(conn: dict[str, Any]) -> bool:
    try:
        tls = ssl.create_default_context(cafile=conn["ca_bundle"])
        resp = httpx.get(f"{conn['admin_endpoint']}/health", verify=tls, timeout=3.0)
    except (httpx.HTTPError, OSError, KeyError):
        return False
    return resp.status_code == 200 and resp.json().get("tenant_id") == conn.get("tenant_id")


def sandbox_credentials(conn: dict[str, Any]) -> AzureCredentials:
    return AzureCredentials(
        subscription_id=conn["subscription_id"],
        tenant_id=conn["tenant_id"],
        client_id=conn["client_id"],
        client_secret=conn["client_secret"],
        arm_endpoint=conn["arm_endpoint"],
        authority_host=conn["authority_host"],
        ca_bundle=conn["ca_bundle"],
        disable_instance_discovery=True,
        retry_total=4,
    )


@contextlib.contextmanager
def sandbox_target(state_dir: Path = DEFAULT_STATE_DIR, *, time_scale: float = 0.0) -> Iterator[Target]:
    """Attach to the sandbox serving ``state_dir``, or run one in-process for the duration."""
    state_dir = state_dir.resolve()
    conn = read_connection(state_dir)
    started = None
    if conn is not None and sandbox_is_up(conn):
        how = f"attached to the running sandbox at {conn['arm_endpoint']} (state in {state_dir})"
    else:
        from sandbox.server import Sandbox  # the one place the product starts the sandbox

        started = Sandbox(state_dir, time_scale=time_scale).start()
        conn = started.connection
        how = (
            f"started the sandbox in-process at {conn['arm_endpoint']} (state in {state_dir}); "
            "it stops when this command ends"
        )
    try:
        sandbox_credentials(conn).save(SANDBOX_BLOCK, overwrite=True)
        yield Target(
            kind="sandbox",
            credentials_block=SANDBOX_BLOCK,
            description=how,
            generate_missing_secrets=True,
            connection=conn,
        )
    finally:
        if started is not None:
            started.stop()


def azure_credentials_from_env(environ: dict[str, str] | None = None) -> AzureCredentials:
    env = os.environ if environ is None else environ
    values = {field: env[var] for field, var in AZURE_ENV.items() if env.get(var)}
    problems = missing_fields(values)
    if problems:
        named = "; ".join(_env_names(p) for p in problems)
        raise TargetError(
            f"--target azure needs credentials: no AzureCredentials block named {AZURE_BLOCK!r} is saved, "
            f"and the environment is incomplete: {named}. Either save the block "
            "(prefect block register -m blocks.credentials, then create it in the UI), or set "
            "AZURE_SUBSCRIPTION_ID plus, for a service principal, AZURE_TENANT_ID, AZURE_CLIENT_ID and "
            "AZURE_CLIENT_SECRET; for keyless CI, AZURE_TENANT_ID, AZURE_CLIENT_ID and "
            "AZURE_FEDERATED_TOKEN_FILE; or only AZURE_SUBSCRIPTION_ID to use the default chain (az login)."
        )
    return AzureCredentials.model_validate(values)


def _env_names(problem: str) -> str:
    """A block-field problem in the user's terms: the environment variables to set."""
    for field, var in sorted(AZURE_ENV.items(), key=lambda kv: -len(kv[0])):
        problem = problem.replace(field, var)
    return problem


@contextlib.contextmanager
def azure_target(block_name: str = AZURE_BLOCK) -> Iterator[Target]:
    """Real Azure from ``AZURE_*`` variables when any is set, else from the saved block.

    Variables win and are checked as a whole before anything runs; they are saved under their own
    block (``<block_name>-env``, rewritten every time) so a half-set environment never lingers in the
    block the user saved themselves.
    """
    if any(os.environ.get(var) for var in AZURE_ENV.values()):
        creds = azure_credentials_from_env()
        env_block = f"{block_name}-env"
        creds.save(env_block, overwrite=True)
        how = f"Azure, with {creds.mode.replace('_', ' ')} credentials from the environment"
        yield Target(
            kind="azure", credentials_block=env_block, description=how, generate_missing_secrets=False
        )
        return
    try:
        saved = AzureCredentials.load(block_name)
    except ValueError as exc:
        if "Unable to find block document" not in str(exc) and "not found" not in str(exc).lower():
            raise TargetError(f"block {block_name!r} cannot be used: {exc}") from None
        azure_credentials_from_env()  # raises, naming what is missing
        raise
    problems = missing_fields(saved)  # type: ignore[arg-type]
    if problems:
        raise TargetError(f"block {block_name!r} cannot be used: {'; '.join(problems)}")
    how = f"Azure, with the credentials in block {block_name!r}"
    yield Target(kind="azure", credentials_block=block_name, description=how, generate_missing_secrets=False)


def open_target(
    kind: TargetKind, *, state_dir: Path = DEFAULT_STATE_DIR
) -> contextlib.AbstractContextManager[Target]:
    if kind == "sandbox":
        return sandbox_target(state_dir)
    if kind == "azure":
        return azure_target()
    raise TargetError(f"unknown target {kind!r}: use sandbox or azure")
