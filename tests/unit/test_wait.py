"""The one wait helper (tenacity, with a deadline) and the error classification for retries."""

from __future__ import annotations

import itertools
import time

import pytest
from azure.core.exceptions import HttpResponseError, ServiceRequestError
from kubernetes.client.exceptions import ApiException

from tasks.common import WaitTimeout, error_code, is_transient, wait_until, wait_until_settled


def test_returns_the_first_truthy_value() -> None:
    calls = itertools.count()
    assert wait_until(lambda: next(calls) >= 2 and "ok", what="x", timeout=5, interval=0.01) == "ok"


def test_deadline_raises_naming_what_and_the_last_state() -> None:
    start = time.monotonic()
    with pytest.raises(WaitTimeout, match=r"gave up waiting for the thing after 0s \(last: still pending\)"):
        wait_until(
            lambda: False, what="the thing", timeout=0.3, interval=0.01, describe=lambda: "still pending"
        )
    assert time.monotonic() - start < 2


def test_retryable_errors_count_as_not_yet_others_propagate() -> None:
    attempts = itertools.count()

    def flaky() -> str:
        if next(attempts) < 2:
            raise KeyError("propagating")
        return "done"

    assert (
        wait_until(flaky, what="x", timeout=5, interval=0.01, retry_on=lambda e: isinstance(e, KeyError))
        == "done"
    )
    with pytest.raises(ValueError, match="bad"):
        wait_until(lambda: (_ for _ in ()).throw(ValueError("bad")), what="x", timeout=5, interval=0.01)


def test_timeout_chains_the_last_error() -> None:
    def always() -> None:
        raise KeyError("nope")

    with pytest.raises(WaitTimeout) as info:
        wait_until(always, what="x", timeout=0.2, interval=0.01, retry_on=lambda e: True)
    assert isinstance(info.value.__cause__, KeyError)


def _arm_error(status: int, code: str) -> HttpResponseError:
    err = HttpResponseError(message=f"{code}: x")
    err.status_code = status
    err.error = type("E", (), {"code": code})()  # type: ignore[assignment]
    return err


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (_arm_error(429, "TooManyRequests"), True),
        (_arm_error(503, "ServiceUnavailable"), True),
        (_arm_error(400, "PrincipalNotFound"), True),  # P2
        (_arm_error(409, "ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity"), True),  # P4
        (_arm_error(409, "AnotherOperationInProgress"), True),  # P20
        (_arm_error(403, "ForbiddenByRbac"), True),  # P8
        (_arm_error(400, "InvalidParameter"), False),
        (_arm_error(403, "AuthorizationFailed"), False),
        (_arm_error(409, "RoleAssignmentExists"), False),
        (ServiceRequestError("connection reset"), True),
        (ApiException(status=503), True),
        (ApiException(status=422), False),
        (ValueError("x"), False),
    ],
)
def test_is_transient(exc: BaseException, transient: bool) -> None:
    assert is_transient(exc) is transient


def test_error_code_of_kubernetes_status() -> None:
    exc = ApiException(status=409)
    exc.body = '{"kind": "Status", "reason": "AlreadyExists"}'
    assert error_code(exc) == "AlreadyExists"


def test_settled_waits_out_a_busy_state_and_a_vanished_read() -> None:
    seen = iter(
        [
            {"properties": {"provisioningState": "Updating"}},
            None,
            {"properties": {"provisioningState": "Succeeded"}},
        ]
    )
    got = wait_until_settled(lambda: next(seen), frozenset({"Updating"}), what="x", timeout=5, interval=0.01)
    assert got == {"properties": {"provisioningState": "Succeeded"}}
    with pytest.raises(WaitTimeout):
        wait_until_settled(
            lambda: {"properties": {"provisioningState": "Deleting"}},
            frozenset({"Deleting"}),
            what="x",
            timeout=0.2,
            interval=0.01,
        )
