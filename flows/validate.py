"""Validate one environment: is the keyless chain intact, end to end? Read-only.

    observe (GET/list only) -> evaluate (one row per check) -> publish (table + markdown artifact
    keyed per environment, a Prefect event) -> [remediate: re-run the drifted provision steps,
    then observe and publish again] -> succeed, or fail the run when drift remains (so a scheduled
    deployment run, CI's ``prefect deployment run --watch`` and Automations all see it).

DESIGN.md "Validation (drift)"; PITFALLS P7, P11-P15.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from flows.remediate import remediate_steps
from keyless_gitops.spec import EnvironmentSpec
from tasks.checks import evaluate
from tasks.common import load_credentials, log
from tasks.drift import EXIT_OK, CheckRow, Report, event_for, remediation_steps, reported_only
from tasks.observe import observe


class DriftFound(RuntimeError):
    """Validation found drift (or could not check everything); the message lists the broken links."""


@task(name="validation checks", timeout_seconds=300, retries=0, cache_policy=NO_CACHE)
def run_checks(spec: EnvironmentSpec, credentials_block: str) -> list[dict[str, Any]]:
    """Observe (read-only) and evaluate; returns the rows as plain dicts (never values or hashes)."""
    obs, tenant_id = observe(spec, load_credentials(credentials_block))
    return [r.as_dict() for r in evaluate(spec, spec.names, tenant_id, obs)]


def publish(report: Report, *, stage: str = "") -> None:
    """The table and markdown artifacts (keyed per environment: the UI shows the latest) and the event."""
    label = f" ({stage})" if stage else ""
    create_table_artifact(
        key=report.table_key,
        table=report.table(),
        description=f"Validation of {report.environment}{label}: {report.counts}",
    )
    create_markdown_artifact(
        key=report.summary_key,
        markdown=report.markdown(),
        description=f"Validation summary of {report.environment}{label}",
    )
    emit_event(**event_for(report))
    # The run log carries what needs attention; every row is in the table artifact (and printed by
    # the CLI), so a clean run is one line here rather than fifty.
    logger = log()
    for line in report.lines():
        if not line.startswith("ok"):
            logger.warning("%s", line)
    c = report.counts
    logger.info(
        "validation of %s%s: %s pass, %s drift, %s fail (every row: artifact %s)",
        report.environment,
        label,
        c["pass"],
        c["drift"],
        c["fail"],
        report.table_key,
    )


@flow(name="validate", log_prints=False)
def validate(
    spec: EnvironmentSpec | None = None,
    credentials_block: str = "keyless-gitops-sandbox",
    remediate: bool = False,
    fail_on_drift: bool = True,
) -> dict[str, Any]:
    """Check every link of the keyless chain of ``spec``'s environment; read-only unless ``remediate``.

    ``remediate`` re-runs only the provision steps behind drifted rows (never removes roles or
    federated credentials it did not create: those are reported), then validates again.
    ``fail_on_drift`` ends the run Failed when drift remains (for schedules, CI and Automations);
    the CLI turns it off and sets its exit status from the report instead.
    Returns the report as JSON (``--report FILE`` writes the same document).
    """
    spec = (spec or EnvironmentSpec()).for_subscription(load_credentials(credentials_block).subscription_id)
    report = Report(
        environment=spec.environment,
        rows=tuple(CheckRow.from_dict(r) for r in run_checks(spec, credentials_block)),
    )
    publish(report)
    doc = report.as_json()
    if remediate and report.exit_code != EXIT_OK:
        steps = remediation_steps(report.rows)
        left = reported_only(report.rows)
        log().info(
            "remediation: re-running %s%s",
            ", ".join(s.value for s in steps) or "nothing",
            f"; left for a person: {', '.join(r.check for r in left)}" if left else "",
        )
        changes = remediate_steps(spec, credentials_block, steps, report.rows)
        report = Report(
            environment=spec.environment,
            rows=tuple(CheckRow.from_dict(r) for r in run_checks(spec, credentials_block)),
        )
        publish(report, stage="after remediation")
        doc = {**report.as_json(), "remediation": {"steps": [s.value for s in steps], "changes": changes}}
    if fail_on_drift and report.exit_code != EXIT_OK:
        worst = "; ".join(f"{r.layer.value} {r.resource}: {r.hint}" for r in report.problems[:3])
        raise DriftFound(
            f"validation of {spec.environment}: {report.counts['drift']} drift, {report.counts['fail']} fail "
            f"(exit {report.exit_code}). {worst}"
        )
    return doc
