"""The drift-validation model: check rows, the report, exit status, the drift event, remediation.

Pure: nothing here calls Azure or Kubernetes. ``tasks/checks.py`` produces :class:`CheckRow`s,
``flows/validate.py`` turns them into a :class:`Report` and publishes it (JSON for ``--report``,
a Prefect table + markdown artifact keyed per environment, a Prefect event when drift is found).

Rows never carry secret values, nor hashes of them: the end-to-end proof compares hashes in
memory and records only "match"/"mismatch" and the version ids (DESIGN.md "Validation (drift)").
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class Layer(StrEnum):
    AZURE = "Azure"
    ENTRA = "Entra"
    KUBERNETES = "Kubernetes"
    ARGOCD = "Argo CD"


class Status(StrEnum):
    PASS = "pass"  # noqa: S105 - a status word, not a password
    DRIFT = "drift"  # the world differs from the spec (the check ran)
    FAIL = "fail"  # the check could not be evaluated (API error, prerequisite missing)


class Severity(StrEnum):
    """What it costs when this check does not pass."""

    CRITICAL = "critical"  # the keyless chain is broken: the app cannot read its secrets
    HIGH = "high"  # a security property is lost (broader role, RBAC off) or the chain will break
    MEDIUM = "medium"  # configuration differs but the chain still holds
    LOW = "low"  # cosmetic (tags, labels nobody reads)
    INFO = "info"


_SEVERITY_ORDER = {s: i for i, s in enumerate(Severity)}


class Step(StrEnum):
    """The provision steps a drifted row can be remediated by, in provision (graph) order."""

    RESOURCE_GROUP = "resource_group"
    CLUSTER = "cluster"
    KEY_VAULT = "key_vault"
    SECRETS_OFFICER = "secrets_officer"
    SEED_SECRETS = "seed_secrets"
    IDENTITY = "identity"
    ROLE_ASSIGNMENT = "role_assignment"
    FEDERATED_CREDENTIALS = "federated_credentials"
    EXTENSION = "extension"
    WORKLOAD = "workload"  # namespace, ServiceAccount, SecretProviderClass
    SAMPLE_APP = "sample_app"  # the Deployment (pod labels, CSI volume) + its rollout
    APPLICATION = "application"  # the Argo CD Application (sync)


STEP_ORDER: tuple[Step, ...] = tuple(Step)

# What must run again after a step is re-run, because it only takes effect on recreated pods or
# a fresh sync (PITFALLS P13/P14: the webhook injects at pod creation; mounts happen at pod start).
_FOLLOW_UPS: dict[Step, tuple[Step, ...]] = {
    Step.FEDERATED_CREDENTIALS: (Step.SAMPLE_APP,),
    Step.ROLE_ASSIGNMENT: (Step.SAMPLE_APP,),
    Step.KEY_VAULT: (Step.SAMPLE_APP,),
    Step.SEED_SECRETS: (Step.SAMPLE_APP,),
    Step.WORKLOAD: (Step.SAMPLE_APP,),
    Step.EXTENSION: (Step.APPLICATION,),
}


@dataclass(frozen=True, kw_only=True)
class CheckRow:
    """One validation check: what was expected, what was found, and which link broke if any.

    ``step`` is the provision step that restores it (``None``: reported only, never changed
    automatically, e.g. a broader role someone granted on purpose).
    """

    check: str  # stable id, e.g. "entra.fic.subject/sample-app"
    layer: Layer
    resource: str
    expected: str
    actual: str
    status: Status
    severity: Severity
    hint: str = ""
    step: Step | None = None

    @property
    def ok(self) -> bool:
        return self.status is Status.PASS

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["layer"] = self.layer.value
        d["status"] = self.status.value
        d["severity"] = self.severity.value
        d["step"] = self.step.value if self.step else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CheckRow:
        return cls(
            check=d["check"],
            layer=Layer(d["layer"]),
            resource=d["resource"],
            expected=d["expected"],
            actual=d["actual"],
            status=Status(d["status"]),
            severity=Severity(d["severity"]),
            hint=d.get("hint", ""),
            step=Step(d["step"]) if d.get("step") else None,
        )


def compare(
    *,
    check: str,
    layer: Layer,
    resource: str,
    expected: object,
    actual: object,
    severity: Severity,
    hint: str,
    step: Step | None,
) -> CheckRow:
    """A row that passes when ``actual == expected`` exactly (no trimming, no case folding: P7)."""
    ok = actual == expected
    return CheckRow(
        check=check,
        layer=layer,
        resource=resource,
        expected=_show(expected),
        actual=_show(actual),
        status=Status.PASS if ok else Status.DRIFT,
        severity=severity,
        hint="" if ok else hint,
        step=step,
    )


def _show(value: object) -> str:
    if value is None:
        return "(absent)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple | set | frozenset):
        return ", ".join(sorted(str(v) for v in value)) or "(none)"
    return str(value)


# -- exit status ------------------------------------------------------------------------------------

EXIT_OK = 0
EXIT_DRIFT = 1
EXIT_FAIL = 2


def exit_code(rows: Iterable[CheckRow]) -> int:
    """0: every row passes; 1: drift found; 2: some check could not be evaluated (it dominates,
    because a check that did not run cannot vouch for the chain)."""
    statuses = {r.status for r in rows}
    if Status.FAIL in statuses:
        return EXIT_FAIL
    if Status.DRIFT in statuses:
        return EXIT_DRIFT
    return EXIT_OK


# -- the report -----------------------------------------------------------------------------------

_KEY_CHARS = re.compile(r"[^a-z0-9-]+")


def artifact_key(prefix: str, environment: str) -> str:
    """A Prefect artifact key (lowercase letters, digits, dashes only), e.g. ``validation-dev``."""
    key = _KEY_CHARS.sub("-", f"{prefix}-{environment}".lower()).strip("-")
    return re.sub("-{2,}", "-", key)


@dataclass(frozen=True, kw_only=True)
class Report:
    environment: str
    rows: tuple[CheckRow, ...]
    generated_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def counts(self) -> dict[str, int]:
        c = Counter(r.status.value for r in self.rows)
        return {s.value: c.get(s.value, 0) for s in Status}

    @property
    def exit_code(self) -> int:
        return exit_code(self.rows)

    @property
    def problems(self) -> list[CheckRow]:
        """Rows that do not pass, worst first."""
        bad = [r for r in self.rows if not r.ok]
        return sorted(bad, key=lambda r: (_SEVERITY_ORDER[r.severity], r.status is not Status.FAIL))

    @property
    def table_key(self) -> str:
        return artifact_key("validation", self.environment)

    @property
    def summary_key(self) -> str:
        return artifact_key("validation-summary", self.environment)

    def as_json(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "generated_at": self.generated_at,
            "exit_code": self.exit_code,
            "counts": self.counts,
            "rows": [r.as_dict() for r in self.rows],
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Report:
        return cls(
            environment=doc["environment"],
            generated_at=doc["generated_at"],
            rows=tuple(CheckRow.from_dict(r) for r in doc["rows"]),
        )

    def table(self) -> list[dict[str, str]]:
        """Rows for ``create_table_artifact`` (every column a string)."""
        return [
            {
                "layer": r.layer.value,
                "resource": r.resource,
                "expected": r.expected,
                "actual": r.actual,
                "status": r.status.value,
                "severity": r.severity.value if not r.ok else "",
                "hint": r.hint,
            }
            for r in self.rows
        ]

    def markdown(self) -> str:
        c = self.counts
        verdict = {
            EXIT_OK: "the keyless chain holds end to end",
            EXIT_DRIFT: "**drift found**",
            EXIT_FAIL: "**some checks could not run**",
        }[self.exit_code]
        lines = [
            f"# Validation of `{self.environment}`: {verdict}",
            "",
            f"{c['pass']} pass, {c['drift']} drift, {c['fail']} fail "
            f"({len(self.rows)} checks, {self.generated_at}).",
        ]
        if self.problems:
            lines += ["", "| severity | layer | resource | status | hint |", "|---|---|---|---|---|"]
            lines += [
                f"| {r.severity.value} | {r.layer.value} | {_md(r.resource)} "
                f"| {r.status.value} | {_md(r.hint)} |"
                for r in self.problems
            ]
        layers = Counter(r.layer.value for r in self.rows if r.ok)
        lines += ["", "Passing checks per layer: " + ", ".join(f"{k} {v}" for k, v in sorted(layers.items()))]
        return "\n".join(lines) + "\n"

    def lines(self) -> list[str]:
        """A plain-text rendering for the terminal and logs (one line per row)."""
        out = []
        for r in self.rows:
            mark = {"pass": "ok   ", "drift": "DRIFT", "fail": "FAIL "}[r.status.value]
            line = f"{mark} {r.layer.value:<10} {r.resource}: expected {r.expected}, actual {r.actual}"
            if not r.ok:
                line += f" [{r.severity.value}] {r.hint}"
            out.append(line)
        return out


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# -- the event ------------------------------------------------------------------------------------

DRIFT_EVENT = "keyless-gitops.validation.drift"
PASSED_EVENT = "keyless-gitops.validation.passed"
FAILED_EVENT = "keyless-gitops.validation.failed"


def event_for(report: Report) -> dict[str, Any]:
    """Keyword arguments for ``prefect.events.emit_event`` describing this validation.

    The resource is the environment (``keyless-gitops.environment.<env>``) so an Automation can
    trigger on ``keyless-gitops.validation.drift`` for one environment or all of them.
    """
    name = {EXIT_OK: PASSED_EVENT, EXIT_DRIFT: DRIFT_EVENT, EXIT_FAIL: FAILED_EVENT}[report.exit_code]
    return {
        "event": name,
        "resource": {
            "prefect.resource.id": f"keyless-gitops.environment.{report.environment}",
            "prefect.resource.name": report.environment,
        },
        "payload": {
            "counts": report.counts,
            "exit_code": report.exit_code,
            "problems": [
                {
                    "check": r.check,
                    "layer": r.layer.value,
                    "resource": r.resource,
                    "status": r.status.value,
                    "severity": r.severity.value,
                }
                for r in report.problems
            ],
        },
    }


# -- remediation ----------------------------------------------------------------------------------


def remediation_steps(rows: Sequence[CheckRow]) -> list[Step]:
    """The provision steps behind the drifted rows (plus what must follow them), in provision order.

    Rows without a step (reported only) and passing rows add nothing; failed checks are not
    remediated blindly either (their cause is unknown).
    """
    wanted: set[Step] = set()
    for r in rows:
        if r.status is Status.DRIFT and r.step is not None:
            wanted.add(r.step)
    for s in list(wanted):
        wanted.update(_FOLLOW_UPS.get(s, ()))
    return [s for s in STEP_ORDER if s in wanted]


def reported_only(rows: Sequence[CheckRow]) -> list[CheckRow]:
    """Drifted rows that remediation leaves alone on purpose (a person must decide)."""
    return [r for r in rows if r.status is Status.DRIFT and r.step is None]
