"""Fault injection by rule: throttling, server errors, connection resets and operation conflicts.

A rule file (``--faults FILE``, JSON) or ``PUT /_sandbox/faults`` holds::

    {"rules": [
      {"id": "slow-down", "service": "arm", "method": "PUT", "path": "managedClusters",
       "action": "throttle", "retry_after": 2, "rate": 0.5, "count": 3, "seed": 7},
      {"service": "keyvault", "action": "error", "status": 503},
      {"path": "/federatedIdentityCredentials/", "action": "reset", "count": 1},
      {"path": "managedClusters/aks-x$", "method": "PUT", "action": "conflict"}
    ]}

Matching: ``service`` (arm, entra, keyvault, kubernetes, oidc), ``method`` and ``path`` (a regular
expression searched in the request path, case-insensitive) must all match when given.
``rate`` (0-1, default 1) fires the rule with that probability using a RNG seeded by ``seed``;
``count`` caps how often it fires (default: unlimited). Actions:

- ``throttle``: 429 with ``Retry-After`` (``retry_after`` seconds, default 1) — learn.microsoft.com
  "request-limits-and-throttling" (PITFALLS P20).
- ``error``: ``status`` (default 500; 500/502/503/504) with the service's error envelope.
- ``reset``: the TCP connection is aborted before any response is sent.
- ``conflict``: 409 ``AnotherOperationInProgress`` (ARM) — Azure/AKS#3283 (PITFALLS P20).
- ``status``: any ``status`` with ``code`` and ``message`` in the service's error envelope.
"""

from __future__ import annotations

import json
import random
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Action = Literal["throttle", "error", "reset", "conflict", "status"]
_ACTIONS = {"throttle", "error", "reset", "conflict", "status"}
_KEYS = {
    "id",
    "service",
    "method",
    "path",
    "action",
    "status",
    "code",
    "message",
    "retry_after",
    "rate",
    "count",
    "seed",
}


class FaultRuleError(ValueError):
    """A fault rule that cannot be used (unknown key or action, bad rate...)."""


@dataclass
class FaultRule:
    action: Action
    id: str | None = None
    service: str | None = None
    method: str | None = None
    path: str | None = None
    status: int | None = None
    code: str | None = None
    message: str | None = None
    retry_after: int = 1
    rate: float = 1.0
    count: int | None = None
    seed: int | None = None
    fired: int = 0
    _rng: random.Random = field(default_factory=random.Random, repr=False)
    _regex: re.Pattern[str] | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> FaultRule:
        unknown = set(raw) - _KEYS
        if unknown:
            raise FaultRuleError(f"unknown fault rule key(s): {sorted(unknown)}; allowed: {sorted(_KEYS)}")
        if raw.get("action") not in _ACTIONS:
            raise FaultRuleError(
                f"fault rule action must be one of {sorted(_ACTIONS)}, got {raw.get('action')!r}"
            )
        rate = float(raw.get("rate", 1.0))
        if not 0.0 <= rate <= 1.0:
            raise FaultRuleError(f"fault rule rate must be within 0..1, got {rate}")
        rule = cls(**{k: v for k, v in raw.items()})
        rule.rate = rate
        rule._rng = random.Random(rule.seed)  # noqa: S311 - reproducible fault injection, not crypto
        if rule.path:
            try:
                rule._regex = re.compile(rule.path, re.IGNORECASE)
            except re.error as exc:
                raise FaultRuleError(f"fault rule path is not a regular expression: {exc}") from exc
        if rule.retry_after < 1:
            raise FaultRuleError("retry_after must be >= 1 (azure-core treats Retry-After: 0 as absent)")
        return rule

    def public(self) -> dict[str, Any]:
        return {
            k: getattr(self, k)
            for k in (
                "id",
                "service",
                "method",
                "path",
                "action",
                "status",
                "code",
                "message",
                "retry_after",
                "rate",
                "count",
                "seed",
                "fired",
            )
        }

    def matches(self, service: str, method: str, path: str) -> bool:
        if self.count is not None and self.fired >= self.count:
            return False
        if self.service and self.service != service:
            return False
        if self.method and self.method.upper() != method.upper():
            return False
        if self._regex is not None and not self._regex.search(path):
            return False
        return self._rng.random() < self.rate


class FaultInjector:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []

    def load(self, path: Path) -> None:
        self.set_rules(json.loads(path.read_text()))

    def set_rules(self, document: dict[str, Any] | list[dict[str, Any]]) -> None:
        raw = document.get("rules", []) if isinstance(document, dict) else document
        rules = [FaultRule.parse(r) for r in raw]
        with self._lock:
            self._rules = rules

    def add(self, raw: dict[str, Any]) -> FaultRule:
        rule = FaultRule.parse(raw)
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self._rules = []

    def rules(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.public() for r in self._rules]

    def pick(self, service: str, method: str, path: str) -> FaultRule | None:
        """The first matching rule (counted as fired), or None."""
        with self._lock:
            for rule in self._rules:
                if rule.matches(service, method, path):
                    rule.fired += 1
                    return rule
        return None
