"""A logging filter that masks secret values the pipeline has handled, as a backstop (PITFALLS P28).

The first defence is that values never reach a log call, an exception or a result. This catches
mistakes: every value read from a Prefect Secret block is registered with ``register_secret``, and
the filter, installed on every handler of the root, ``prefect``, ``prefect.flow_runs`` and
``prefect.task_runs`` loggers (the console and the Prefect API handlers), replaces it with ``***``
in the formatted message before any handler writes it.
"""

from __future__ import annotations

import logging
import threading

MASK = "***"
_SECRETS: set[str] = set()
_LOCK = threading.Lock()
_LOGGERS = ("", "prefect", "prefect.flow_runs", "prefect.task_runs")


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        with _LOCK:
            secrets = sorted(_SECRETS, key=len, reverse=True)
        if not secrets:
            return True
        message = record.getMessage()
        masked = message
        for value in secrets:
            masked = masked.replace(value, MASK)
        if masked != message:
            record.msg, record.args = masked, None
        return True


_FILTER = RedactingFilter()


def install() -> None:
    """Attach the filter to every handler of the pipeline's loggers (idempotent)."""
    for name in _LOGGERS:
        for handler in logging.getLogger(name).handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)


def register_secret(value: str) -> None:
    """Mask ``value`` in every log line from now on (values shorter than 6 characters are not masked)."""
    if len(value) < 6:
        return
    with _LOCK:
        _SECRETS.add(value)
    install()
