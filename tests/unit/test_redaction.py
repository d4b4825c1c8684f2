"""The redaction backstop masks registered secret values in formatted log lines (P28)."""

from __future__ import annotations

import logging

import pytest

from tasks.redaction import MASK, RedactingFilter, register_secret


def test_registered_values_are_masked_in_the_formatted_message(caplog: pytest.LogCaptureFixture) -> None:
    register_secret("canary-value-123456")
    logger = logging.getLogger("prefect.task_runs.test")
    caplog.handler.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO):
        logger.info("oops: %s and %s", "canary-value-123456", 42)
    assert "canary-value-123456" not in caplog.text
    assert f"oops: {MASK} and 42" in caplog.text


def test_short_values_are_not_registered(caplog: pytest.LogCaptureFixture) -> None:
    register_secret("abc")
    caplog.handler.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO):
        logging.getLogger("x").info("abc stays")
    assert "abc stays" in caplog.text
