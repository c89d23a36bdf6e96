"""Exponential backoff for remote calls: rate limits (429) and server errors (5xx) are retried."""

from __future__ import annotations

import random
import time
from typing import Callable, TypeVar

T = TypeVar("T")
RETRY_STATUS = (408, 409, 429, 500, 502, 503, 504)


def status_of(exc: BaseException) -> int | None:
    for attr in ("status_code", "code", "status"):
        value = getattr(exc, attr, None)
        if isinstance(value, int):
            return value
    response = getattr(exc, "response", None)
    value = getattr(response, "status_code", None)
    return value if isinstance(value, int) else None


def is_transient(exc: BaseException) -> bool:
    status = status_of(exc)
    if status is not None:
        return status in RETRY_STATUS
    name = type(exc).__name__
    return name in ("APIConnectionError", "APITimeoutError", "ConnectError", "ReadTimeout", "RemoteProtocolError")


def with_backoff(call: Callable[[], T], *, attempts: int = 6, initial: float = 1.0, maximum: float = 60.0,
                 sleep: Callable[[float], None] = time.sleep, on_retry: Callable[[int, BaseException], None] | None = None) -> T:
    """Run ``call``; on a transient error wait initial*2^k (with jitter, capped) and try again."""
    for attempt in range(attempts):
        try:
            return call()
        except Exception as exc:  # noqa: BLE001 - filtered by is_transient
            if attempt + 1 >= attempts or not is_transient(exc):
                raise
            if on_retry is not None:
                on_retry(attempt, exc)
            delay = min(maximum, initial * 2 ** attempt)
            sleep(delay * (0.5 + random.random() / 2))
    raise AssertionError("unreachable")
