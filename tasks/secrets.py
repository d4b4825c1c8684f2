"""Seeding Key Vault secrets from Prefect ``Secret`` blocks.

Only block *names* travel (spec, parameters, results); values are read inside the task, compared
with the vault's current version in memory, and written only when they differ — so a second run
writes nothing. A 403 ``ForbiddenByRbac`` right after the pipeline was granted Secrets Officer is
RBAC propagation (P8) and is retried within a budget. With ``generate_missing`` (the sandbox), a
missing block is created with a random value, and the log says so.
"""

from __future__ import annotations

import hmac
import secrets as pysecrets
from dataclasses import dataclass
from typing import Any, cast

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.keyvault.secrets import SecretClient, SecretProperties
from prefect import task
from prefect.blocks.system import Secret
from prefect.tasks import exponential_backoff
from pydantic import SecretStr

from keyless_gitops.spec import EnvironmentSpec
from tasks.common import (
    Change,
    StepFacts,
    Stopwatch,
    error_code,
    load_credentials,
    log,
    retry_transient,
    wait_until,
)
from tasks.keyvault import VaultFacts
from tasks.redaction import register_secret
from tasks.roles import RoleAssignmentFacts

PROPAGATION_BUDGET = 5 * 60


class MissingSecretBlock(LookupError):
    pass


@dataclass(frozen=True, kw_only=True)
class SeededSecret:
    name: str
    block: str
    version: str
    change: Change


@dataclass(frozen=True, kw_only=True)
class SecretsFacts(StepFacts):
    secrets: tuple[SeededSecret, ...]
    generated_blocks: tuple[str, ...]


def read_secret_block(block_name: str, *, generate_missing: bool) -> tuple[str, bool]:
    """(value, generated): the value of a Prefect Secret block, created with a random value if allowed."""
    try:
        block = cast(Secret[Any], Secret.load(block_name))
    except ValueError:  # Prefect: "Unable to find block document named ..."
        if not generate_missing:
            raise MissingSecretBlock(
                f"Prefect Secret block {block_name!r} does not exist; create it "
                f"(UI: Blocks > Secret, or Secret(value=...).save({block_name!r}))"
            ) from None
        Secret(value=SecretStr(pysecrets.token_urlsafe(24))).save(block_name)
        return str(cast(Secret[Any], Secret.load(block_name)).get()), True
    return str(block.get()), False


def recover_if_soft_deleted(client: SecretClient, name: str) -> bool:
    """Recover secret ``name`` if it sits soft-deleted (deleted by hand): until then its name cannot
    be set again (409 Conflict "deleted but recoverable"). Recovery keeps its versions. True if it
    recovered one."""
    try:
        client.get_deleted_secret(name)
    except ResourceNotFoundError:
        return False
    client.begin_recover_deleted_secret(name).wait()
    return True


def _forbidden(exc: BaseException) -> bool:
    return isinstance(exc, HttpResponseError) and (
        error_code(exc) == "ForbiddenByRbac" or exc.status_code == 403
    )


@task(
    name="seed secrets",
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_condition_fn=retry_transient,
    timeout_seconds=PROPAGATION_BUDGET + 120,
    persist_result=True,
)
def ensure_secrets_seeded(
    spec: EnvironmentSpec,
    credentials_block: str,
    vault: VaultFacts,
    writer: RoleAssignmentFacts,
    generate_missing: bool = False,
) -> SecretsFacts:
    """``writer``: the pipeline's Secrets Officer assignment, which must exist first (P8)."""
    watch = Stopwatch()
    names = spec.names
    client = load_credentials(credentials_block).get_secret_client(vault.vault_uri)
    seeded: list[SeededSecret] = []
    generated: list[str] = []
    for secret_name, block_name in sorted(spec.secrets.items()):
        value, was_generated = read_secret_block(block_name, generate_missing=generate_missing)
        register_secret(value)
        if was_generated:
            generated.append(block_name)
            log().warning(
                "created Prefect Secret block %s with a generated value (sandbox); "
                "replace it to choose the value",
                block_name,
            )

        def current(name: str = secret_name) -> tuple[str | None, str | None]:
            try:
                s = client.get_secret(name)
            except ResourceNotFoundError:
                return None, None
            return s.value, s.properties.version

        current_value, version = wait_until(
            lambda: (current(),),  # a 1-tuple is truthy even when the secret is absent
            what=f"read access to {names.key_vault} (RBAC propagation)",
            timeout=PROPAGATION_BUDGET,
            interval=1.0,
            retry_on=_forbidden,
        )[0]
        if current_value is None and recover_if_soft_deleted(client, secret_name):
            log().info("secret %s in %s: recovered from soft delete", secret_name, names.key_vault)
            current_value, version = current()
        if current_value is not None and hmac.compare_digest(current_value, value):
            change: Change = "unchanged"
        else:
            change = "created" if current_value is None else "updated"

            def write(name: str = secret_name, new: str = value) -> SecretProperties:
                return client.set_secret(name, new).properties

            props = wait_until(
                write,
                what=f"write access to {names.key_vault} (RBAC propagation)",
                timeout=PROPAGATION_BUDGET,
                interval=1.0,
                retry_on=_forbidden,
            )
            version = props.version
        del value, current_value
        log().info("secret %s in %s: %s (version %s)", secret_name, names.key_vault, change, version)
        seeded.append(SeededSecret(name=secret_name, block=block_name, version=str(version), change=change))
    changes = {s.change for s in seeded}
    overall: Change = (
        "unchanged" if changes == {"unchanged"} else ("created" if "created" in changes else "updated")
    )
    return SecretsFacts(
        step="seed_secrets",
        resource=f"{names.key_vault}: {', '.join(s.name for s in seeded)}",
        id=vault.id,
        change=overall,
        secrets=tuple(seeded),
        generated_blocks=tuple(generated),
        **watch.stamp(),
    )
