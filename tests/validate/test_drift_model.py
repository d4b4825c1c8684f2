"""The check-row model, the report, exit status, the drift event and the remediation map (pure)."""

from __future__ import annotations

import json

import pytest

from tasks.drift import (
    DRIFT_EVENT,
    EXIT_DRIFT,
    EXIT_FAIL,
    EXIT_OK,
    FAILED_EVENT,
    PASSED_EVENT,
    CheckRow,
    Layer,
    Report,
    Severity,
    Status,
    Step,
    artifact_key,
    compare,
    event_for,
    exit_code,
    remediation_steps,
    reported_only,
)


def row(
    check: str, status: Status, *, step: Step | None = None, severity: Severity = Severity.HIGH
) -> CheckRow:
    return CheckRow(
        check=check,
        layer=Layer.ENTRA,
        resource=f"res {check}",
        expected="e",
        actual="a" if status is not Status.PASS else "e",
        status=status,
        severity=severity,
        hint="" if status is Status.PASS else f"hint for {check}",
        step=step,
    )


def test_compare_is_exact_and_names_the_link_only_on_drift() -> None:
    issuer = "https://127.0.0.1:1/oidc/abc/"
    same = compare(
        check="c",
        layer=Layer.ENTRA,
        resource="fic",
        expected=issuer,
        actual=issuer,
        severity=Severity.CRITICAL,
        hint="issuer differs",
        step=Step.FEDERATED_CREDENTIALS,
    )
    assert same.status is Status.PASS and same.hint == ""
    # PITFALLS P7: a trailing slash is a different issuer.
    diff = compare(
        check="c",
        layer=Layer.ENTRA,
        resource="fic",
        expected=issuer,
        actual=issuer.rstrip("/"),
        severity=Severity.CRITICAL,
        hint="issuer differs",
        step=Step.FEDERATED_CREDENTIALS,
    )
    assert diff.status is Status.DRIFT and diff.hint == "issuer differs"
    absent = compare(
        check="c",
        layer=Layer.AZURE,
        resource="x",
        expected=True,
        actual=None,
        severity=Severity.LOW,
        hint="h",
        step=None,
    )
    assert (absent.expected, absent.actual) == ("true", "(absent)")


@pytest.mark.parametrize(
    ("statuses", "code"),
    [
        ([Status.PASS, Status.PASS], EXIT_OK),
        ([Status.PASS, Status.DRIFT], EXIT_DRIFT),
        ([Status.DRIFT, Status.FAIL, Status.PASS], EXIT_FAIL),
        ([], EXIT_OK),
    ],
)
def test_exit_code(statuses: list[Status], code: int) -> None:
    assert exit_code(row(str(i), s) for i, s in enumerate(statuses)) == code


def test_report_round_trips_through_json() -> None:
    rows = (row("a", Status.PASS), row("b", Status.DRIFT, step=Step.WORKLOAD), row("c", Status.FAIL))
    rep = Report(environment="dev", rows=rows)
    doc = json.loads(json.dumps(rep.as_json()))
    assert doc["counts"] == {"pass": 1, "drift": 1, "fail": 1}
    assert doc["exit_code"] == EXIT_FAIL
    assert doc["rows"][1]["layer"] == "Entra" and doc["rows"][1]["step"] == "workload"
    assert set(doc["rows"][0]) == {
        "check",
        "layer",
        "resource",
        "expected",
        "actual",
        "status",
        "severity",
        "hint",
        "step",
    }
    assert Report.from_json(doc) == rep


@pytest.mark.parametrize(
    ("env", "key"),
    [("dev", "validation-dev"), ("Staging_EU", "validation-staging-eu"), ("prod--1", "validation-prod-1")],
)
def test_artifact_keys_are_lowercase_letters_digits_dashes(env: str, key: str) -> None:
    assert artifact_key("validation", env) == key
    rep = Report(environment=env, rows=())
    for k in (rep.table_key, rep.summary_key):
        assert all(ch.islower() or ch.isdigit() or ch == "-" for ch in k), k


def test_table_and_markdown_show_problems_worst_first() -> None:
    rows = (
        row("ok", Status.PASS),
        row("low", Status.DRIFT, severity=Severity.LOW),
        row("crit", Status.DRIFT, severity=Severity.CRITICAL),
    )
    rep = Report(environment="dev", rows=rows)
    table = rep.table()
    assert [t["status"] for t in table] == ["pass", "drift", "drift"]
    assert table[0]["severity"] == "" and table[2]["severity"] == "critical"
    assert all(isinstance(v, str) for t in table for v in t.values())
    md = rep.markdown()
    assert "drift found" in md
    assert md.index("hint for crit") < md.index("hint for low")
    assert "hint for ok" not in md
    assert [p.check for p in rep.problems] == ["crit", "low"]


def test_markdown_escapes_table_pipes() -> None:
    r = CheckRow(
        check="x",
        layer=Layer.AZURE,
        resource="a|b",
        expected="1",
        actual="2",
        status=Status.DRIFT,
        severity=Severity.LOW,
        hint="h|i",
    )
    assert "a\\|b" in Report(environment="dev", rows=(r,)).markdown()


def test_event_names_the_environment_and_lists_problems_only() -> None:
    drift = Report(environment="dev", rows=(row("a", Status.PASS), row("b", Status.DRIFT)))
    ev = event_for(drift)
    assert ev["event"] == DRIFT_EVENT
    assert ev["resource"]["prefect.resource.id"] == "keyless-gitops.environment.dev"
    assert [p["check"] for p in ev["payload"]["problems"]] == ["b"]
    assert event_for(Report(environment="dev", rows=(row("a", Status.PASS),)))["event"] == PASSED_EVENT
    assert event_for(Report(environment="dev", rows=(row("a", Status.FAIL),)))["event"] == FAILED_EVENT


def test_remediation_runs_only_the_steps_behind_drift_in_provision_order() -> None:
    rows = [
        row("a", Status.PASS, step=Step.CLUSTER),
        row("b", Status.DRIFT, step=Step.APPLICATION),
        row("c", Status.DRIFT, step=Step.FEDERATED_CREDENTIALS),
        row("d", Status.DRIFT, step=None),  # broader role: reported, never removed
        row("e", Status.FAIL, step=Step.KEY_VAULT),  # unknown cause: not remediated blindly
    ]
    # A FIC re-created only helps pods that start afterwards: the sample app follows.
    assert remediation_steps(rows) == [Step.FEDERATED_CREDENTIALS, Step.SAMPLE_APP, Step.APPLICATION]
    assert [r.check for r in reported_only(rows)] == ["d"]
    assert remediation_steps([row("a", Status.PASS, step=Step.CLUSTER)]) == []


def test_terminal_lines_mark_each_row() -> None:
    lines = Report(environment="dev", rows=(row("a", Status.PASS), row("b", Status.DRIFT))).lines()
    assert lines[0].startswith("ok") and lines[1].startswith("DRIFT") and "hint for b" in lines[1]
