"""The teardown plan: its order, its per-step outcome, and the refusal for protected environments.

Pure. The order is the recipe's Cleanup section fixed (PITFALLS P10, P22, P23): Argo CD
Applications first (their finalizers need a running Argo CD), then the sample app's namespace,
the extension, the federated credentials, the role assignments, the resource group (waited on,
never ``--no-wait``), then the purge of the soft-deleted vault, then a verification that nothing
of the environment is left.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any


class TeardownStep(StrEnum):
    APPLICATIONS = "applications"
    SAMPLE_NAMESPACE = "sample_namespace"
    EXTENSION = "extension"
    FEDERATED_CREDENTIALS = "federated_credentials"
    ROLE_ASSIGNMENTS = "role_assignments"
    RESOURCE_GROUP = "resource_group"
    PURGE_VAULT = "purge_vault"
    VERIFY = "verify"


TEARDOWN_ORDER: tuple[TeardownStep, ...] = tuple(TeardownStep)


class Outcome(StrEnum):
    DELETED = "deleted"
    ABSENT = "absent"  # already gone: idempotent success, nothing written
    KEPT = "kept"  # not removable (purge protection): reported, not an error
    VERIFIED = "verified"


@dataclass(frozen=True, kw_only=True)
class TeardownResult:
    step: TeardownStep
    resource: str
    outcome: Outcome
    detail: str = ""
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["step"] = self.step.value
        d["outcome"] = self.outcome.value
        return d


class ProtectedEnvironmentError(PermissionError):
    """Teardown of a protected environment without confirmation by name."""


class TeardownIncompleteError(RuntimeError):
    """Something of the environment is still there after teardown."""


def ensure_teardown_allowed(*, environment: str, protected: bool, confirm: str | None) -> None:
    """Refuse to tear down a protected environment unless ``confirm`` is exactly its name.

    Like GitHub's "type the repository name to delete it": a flag alone (``--yes``) is too easy to
    pass by accident from a script or a copied command line.
    """
    if not protected:
        return
    if confirm == environment:
        return
    given = "no confirmation" if not confirm else f"confirmation {confirm!r}"
    raise ProtectedEnvironmentError(
        f"environment {environment!r} is protected: refusing teardown with {given}; "
        f"pass confirm={environment!r} (CLI: --confirm {environment}) to tear it down"
    )


def summarize(results: Sequence[TeardownResult]) -> str:
    """A markdown summary of a teardown run."""
    lines = ["| step | resource | outcome | seconds | detail |", "|---|---|---|---|---|"]
    for r in results:
        detail = r.detail.replace("|", "\\|")
        lines.append(f"| {r.step.value} | {r.resource} | {r.outcome.value} | {r.seconds:.1f} | {detail} |")
    deleted = sum(r.outcome is Outcome.DELETED for r in results)
    kept = [r for r in results if r.outcome is Outcome.KEPT]
    head = f"Teardown: {deleted} deleted, {len(results) - deleted - len(kept)} already absent or verified"
    if kept:
        head += f", {len(kept)} kept ({'; '.join(r.detail for r in kept)})"
    return head + "\n\n" + "\n".join(lines) + "\n"
