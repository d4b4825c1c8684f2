"""What every task module shares: step facts, error kinds, the one wait helper, cross-run locks.

- ``StepFacts``: the small frozen result every ``ensure_*`` task returns (ids, never secrets, never
  SDK models — results are persisted), with what it did (created/updated/unchanged) and when.
- ``is_transient`` / ``retry_transient``: Prefect task retries are for throttling, 5xx, connection
  errors and the named propagation errors of PITFALLS only; a 400 or a 403 fails at once.
- ``wait_until``: the single, tested way to wait inside a step (LROs, propagation, readiness), with
  a deadline and progress lines, built on tenacity. No sleeps anywhere else.
- ``serialized``: a Prefect global concurrency limit of one slot, created on demand and used with
  ``strict=True``, so writes Azure cannot take in parallel are serialised across threads, flow runs
  and machines (PITFALLS P4, P20).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import tenacity
import urllib3.exceptions
from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError
from azure.core.polling import LROPoller
from kubernetes.client.exceptions import ApiException
from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.sync import concurrency
from prefect.context import TaskRunContext
from prefect.exceptions import MissingContextError, ObjectAlreadyExists, ObjectNotFound

from blocks.credentials import AzureCredentials

T = TypeVar("T")
Change = Literal["created", "updated", "unchanged"]

# Error codes that mean "not yet", not "wrong": Entra replication (P2), Key Vault RBAC propagation
# (P8), vault DNS registration (P9), FIC write overlap (P4), cluster operation overlap (P20).
PROPAGATION_CODES = frozenset(
    {
        "PrincipalNotFound",
        "ForbiddenByRbac",
        "RegisteringDns",
        "ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity",
        "AnotherOperationInProgress",
        "OperationNotAllowed",
        "TooManyRequests",
    }
)
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True, kw_only=True)
class StepFacts:
    """What a step did, to which resource, and when (epoch seconds)."""

    step: str
    resource: str
    id: str
    change: Change
    started: float
    ended: float

    @property
    def duration(self) -> float:
        return self.ended - self.started


class Stopwatch:
    """Start time of a step; ``stamp()`` gives the fields every ``StepFacts`` needs."""

    def __init__(self) -> None:
        self.started = time.time()

    def stamp(self) -> dict[str, float]:
        return {"started": self.started, "ended": time.time()}


def log() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The run logger inside a flow/task run (shown live in the terminal and the UI), else ours."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("keyless_gitops")


# -- error kinds -------------------------------------------------------------------------------


def error_code(exc: BaseException) -> str | None:
    """The service's error code (ARM/Key Vault ``error.code``, Kubernetes ``reason``), if any."""
    if isinstance(exc, HttpResponseError):
        if exc.error is not None and exc.error.code:
            return str(exc.error.code)
        with contextlib.suppress(Exception):
            body = json.loads(exc.response.text()) if exc.response is not None else None
            if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
                return str(body["error"].get("code"))
        return None
    if isinstance(exc, ApiException):
        with contextlib.suppress(Exception):
            return str(json.loads(exc.body or "{}").get("reason"))
    return None


def is_transient(exc: BaseException) -> bool:
    """Throttling, 5xx, connection errors, and the named propagation errors (PITFALLS)."""
    if isinstance(exc, ServiceRequestError | ServiceResponseError | ConnectionError):
        return True
    if isinstance(exc, urllib3.exceptions.HTTPError):
        return True
    if isinstance(exc, HttpResponseError):
        return exc.status_code in TRANSIENT_STATUS or error_code(exc) in PROPAGATION_CODES
    if isinstance(exc, ApiException):
        return exc.status in TRANSIENT_STATUS or exc.status == 0
    cause = exc.__cause__
    return cause is not None and cause is not exc and is_transient(cause)


def retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """``retry_condition_fn`` for Prefect tasks: retry only what ``is_transient`` accepts."""
    try:
        state.result()
    except Exception as exc:
        return is_transient(exc)
    return False


# -- the one wait helper -----------------------------------------------------------------------


class WaitTimeout(TimeoutError):
    """A bounded wait ran out; the message names what was awaited and the last thing seen."""


def wait_until(
    probe: Callable[[], T],
    *,
    what: str,
    timeout: float,
    interval: float = 0.25,
    max_interval: float = 10.0,
    retry_on: Callable[[BaseException], bool] | None = None,
    progress_every: float = 20.0,
    describe: Callable[[], str] | None = None,
) -> T:
    """Call ``probe`` until it returns something truthy (returned) or ``timeout`` seconds pass.

    Exceptions for which ``retry_on`` is true count as "not yet" (propagation windows); others
    propagate at once. Backs off from ``interval`` to ``max_interval``; logs a progress line every
    ``progress_every`` seconds so long waits never look like a hang. ``describe`` (if given) says
    what the world looked like, for the progress lines and the timeout message.
    """
    start = time.monotonic()
    last_report = [start]
    last_seen: list[str] = ["nothing yet"]

    def note(rs: tenacity.RetryCallState) -> None:
        outcome = rs.outcome
        if outcome is not None:
            if outcome.failed:
                exc = outcome.exception()
                if exc is not None:
                    last_seen[0] = f"{type(exc).__name__} {error_code(exc) or ''}".strip()
            else:
                last_seen[0] = "not ready"
            if describe is not None:
                with contextlib.suppress(Exception):
                    last_seen[0] = describe()
        now = time.monotonic()
        if now - last_report[0] >= progress_every:
            last_report[0] = now
            log().info("still waiting for %s: %.0fs of %.0fs (%s)", what, now - start, timeout, last_seen[0])

    retry: tenacity.retry_base = tenacity.retry_if_result(lambda value: not value)
    if retry_on is not None:
        retry = retry | tenacity.retry_if_exception(retry_on)
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_delay(timeout),
        wait=tenacity.wait_exponential(multiplier=interval, min=interval, max=max_interval),
        retry=retry,
        before_sleep=note,
        reraise=False,
    )
    try:
        value = retrying(probe)
    except tenacity.RetryError as exc:
        last = exc.last_attempt
        cause = last.exception() if last.failed else None
        raise WaitTimeout(
            f"gave up waiting for {what} after {timeout:.0f}s (last: {last_seen[0]})"
        ) from cause
    elapsed = time.monotonic() - start
    if elapsed >= progress_every:
        log().info("%s: done after %.0fs", what, elapsed)
    return value


def wait_for_poller(poller: LROPoller[T], *, what: str, timeout: float) -> T:
    """Wait for an Azure long-running operation with a deadline and progress lines (P22)."""
    wait_until(poller.done, what=what, timeout=timeout, interval=0.5, max_interval=5.0)
    return poller.result()


def provisioning_state(resource: Mapping[str, Any] | None) -> str | None:
    """An ARM resource's ``properties.provisioningState`` (None when absent)."""
    return (resource or {}).get("properties", {}).get("provisioningState")


def wait_until_settled(
    read: Callable[[], dict[str, Any] | None],
    busy: frozenset[str],
    *,
    what: str,
    timeout: float,
    interval: float = 2.0,
) -> dict[str, Any] | None:
    """Wait until ``read()`` returns the resource in a state outside ``busy`` (another operation, ours
    from an earlier run or someone else's, must finish before we reconcile it: P20)."""

    def settled() -> dict[str, Any] | None:
        resource = read()
        return resource if resource is not None and provisioning_state(resource) not in busy else None

    return wait_until(settled, what=what, timeout=timeout, interval=interval, max_interval=15.0)


# -- log hygiene -------------------------------------------------------------------------------


class _WorkerThreadTimeoutNotice(logging.Filter):
    """Drop Prefect's per-task "Timeout ... running in a worker thread" warning.

    Every step here bounds its own waits with a deadline below its task timeout (``wait_until``,
    ``wait_for_poller``), so the Prefect timeout is only a backstop; the warning, printed for every
    step of every run, would bury the progress lines users read.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "running in a worker thread. Timeouts in worker threads" not in str(record.msg)


logging.getLogger("prefect.task_runs").addFilter(_WorkerThreadTimeoutNotice())


# -- cross-run serialisation ---------------------------------------------------------------------


def lock_name(kind: str, resource_id: str) -> str:
    """A global-concurrency-limit name for one resource (ids hashed: limit names are short slugs)."""
    digest = hashlib.sha256(resource_id.lower().encode()).hexdigest()[:16]
    return f"keyless-gitops-{kind}-{digest}"


def ensure_lock(name: str) -> None:
    """Create the one-slot global concurrency limit ``name`` unless it exists.

    Flows call it once before fanning out tasks that share the lock: when parallel tasks race to
    create it, Prefect's SQLite server answers one of them with a logged IntegrityError traceback.
    """
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            with contextlib.suppress(ObjectAlreadyExists):
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))


@contextlib.contextmanager
def serialized(name: str, *, timeout: float = 600.0) -> Iterator[None]:
    """Hold the single slot of global concurrency limit ``name`` (created on demand, strict)."""
    ensure_lock(name)
    with concurrency(name, occupy=1, strict=True, timeout_seconds=timeout):
        yield


# -- small helpers -----------------------------------------------------------------------------


def load_credentials(block_name: str) -> AzureCredentials:
    return AzureCredentials.load(block_name)  # type: ignore[return-value]


def to_rest(model: Any) -> dict[str, Any]:
    """An SDK model as its REST dict (camelCase), for comparing with the desired body."""
    if model is None:
        return {}
    if hasattr(model, "serialize") and not isinstance(model, Mapping):
        return dict(model.serialize(keep_readonly=True))
    if hasattr(model, "as_dict"):
        return dict(model.as_dict())
    return dict(model)


def in_task_run() -> bool:
    return TaskRunContext.get() is not None
