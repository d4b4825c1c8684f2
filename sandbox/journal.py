"""The journal: one line per request the sandbox served.

Each entry is a JSON object (also appended to ``STATE_DIR/journal.jsonl``)::

    {"seq": 12, "ts": 1764777600.12, "service": "arm", "method": "PUT",
     "path": "/subscriptions/.../resourcegroups/rg-x", "api_version": "2025-04-01",
     "status": 201, "latency_ms": 3.1, "caller": "<oid or k8s user>", "write": true,
     "fault": null, "request_id": "<x-ms-client-request-id>"}

``write`` is true for PUT/POST/PATCH/DELETE except the read-only POSTs (token requests, ARM
``list*`` actions, Kubernetes TokenRequest/SelfSubjectAccessReview-style reads), so tests and
benchmarks can count real writes. Tests read it in-process (:meth:`Journal.entries`) or over
the admin endpoint ``GET /_sandbox/journal?since=SEQ``.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

WRITE_METHODS = {"PUT", "POST", "PATCH", "DELETE"}

# POSTs that change nothing: Entra token grants, ARM list actions, k8s TokenRequest and reviews.
_READ_ONLY_POST = re.compile(
    r"(/oauth2/v2\.0/token$|/list[A-Za-z]*$|/checkNameAvailability$|/serviceaccounts/[^/]+/token$"
    r"|/(selfsubjectaccessreviews|selfsubjectrulesreviews|tokenreviews|subjectaccessreviews)$)",
    re.IGNORECASE,
)


def is_write(method: str, path: str) -> bool:
    method = method.upper()
    if method not in WRITE_METHODS:
        return False
    return not (method == "POST" and _READ_ONLY_POST.search(path.rstrip("/")))


def classify(path: str) -> str:
    """Which service a request path belongs to (the sandbox's URL layout, see sandbox/README.md)."""
    first = path.lstrip("/").split("/", 1)[0].lower()
    if first in ("subscriptions", "providers"):
        return "arm"
    if first == "vaults":
        return "keyvault"
    if first == "k8s":
        return "kubernetes"
    if first == "oidc":
        return "oidc"
    if first == "_sandbox":
        return "admin"
    return "entra"


@dataclass(frozen=True, kw_only=True)
class JournalEntry:
    seq: int
    ts: float
    service: str
    method: str
    path: str
    api_version: str | None
    status: int
    latency_ms: float
    caller: str | None
    write: bool
    fault: str | None = None
    request_id: str | None = None


class Journal:
    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._entries: list[JournalEntry] = []
        self._seq = 0
        if path is not None and path.exists():
            for line in path.read_text().splitlines():
                if line.strip():
                    self._seq = max(self._seq, json.loads(line).get("seq", 0))

    def record(self, **fields: object) -> JournalEntry:
        with self._lock:
            self._seq += 1
            entry = JournalEntry(seq=self._seq, **fields)  # type: ignore[arg-type]
            self._entries.append(entry)
            if self._path is not None:
                with self._path.open("a") as f:
                    f.write(json.dumps(asdict(entry)) + "\n")
            return entry

    @property
    def last_seq(self) -> int:
        with self._lock:
            return self._seq

    def entries(
        self, since: int = 0, *, service: str | None = None, writes_only: bool = False
    ) -> list[JournalEntry]:
        """Entries recorded by this process with ``seq > since`` (optionally filtered)."""
        with self._lock:
            items = [e for e in self._entries if e.seq > since]
        if service is not None:
            items = [e for e in items if e.service == service]
        if writes_only:
            items = [e for e in items if e.write]
        return items

    def writes(self, since: int = 0, *, service: str | None = None) -> list[JournalEntry]:
        return self.entries(since, service=service, writes_only=True)
