"""Teardown order and the protected-environment refusal (pure)."""

from __future__ import annotations

import pytest

from tasks.teardown_plan import (
    TEARDOWN_ORDER,
    Outcome,
    ProtectedEnvironmentError,
    TeardownResult,
    TeardownStep,
    ensure_teardown_allowed,
    summarize,
)


def test_order_is_the_recipe_cleanup_fixed() -> None:
    # Applications before the extension (finalizers need Argo CD: PITFALLS P23), credentials and
    # assignments before the group, purge after the group (P10), verification last.
    assert [s.value for s in TEARDOWN_ORDER] == [
        "applications",
        "sample_namespace",
        "extension",
        "federated_credentials",
        "role_assignments",
        "resource_group",
        "purge_vault",
        "verify",
    ]


def test_unprotected_needs_no_confirmation() -> None:
    ensure_teardown_allowed(environment="dev", protected=False, confirm=None)


@pytest.mark.parametrize("confirm", [None, "", "yes", "PROD", "prod ", "dev"])
def test_protected_refuses_without_its_exact_name(confirm: str | None) -> None:
    with pytest.raises(ProtectedEnvironmentError, match=r"--confirm prod"):
        ensure_teardown_allowed(environment="prod", protected=True, confirm=confirm)


def test_protected_proceeds_when_confirmed_by_name() -> None:
    ensure_teardown_allowed(environment="prod", protected=True, confirm="prod")


def test_summary_counts_and_reports_what_was_kept() -> None:
    results = [
        TeardownResult(step=TeardownStep.APPLICATIONS, resource="app", outcome=Outcome.DELETED),
        TeardownResult(step=TeardownStep.EXTENSION, resource="argocd", outcome=Outcome.ABSENT),
        TeardownResult(
            step=TeardownStep.PURGE_VAULT,
            resource="kv-x",
            outcome=Outcome.KEPT,
            detail="purge protection is on",
        ),
    ]
    text = summarize(results)
    assert text.startswith(
        "Teardown: 1 deleted, 1 already absent or verified, 1 kept (purge protection is on)"
    )
    assert "| purge_vault | kv-x | kept |" in text
    assert results[0].as_dict()["outcome"] == "deleted"
