"""The errors a step handler raises to say how its attempt failed: retry it (perhaps not before a delay) or not."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any


class StepError(Exception):
    """Base of the errors a handler raises on purpose; `error_type` is matched by the retry policy."""

    retryable = True

    def __init__(
        self, message: str = "", *, error_type: str | None = None, details: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.error_type = error_type or type(self).__name__
        self.details = dict(details) if details else None


class RetryableError(StepError):
    """The attempt failed but another may succeed; `retry_after` (seconds or a timedelta) is the shortest wait
    before it, and wins when longer than the retry policy's backoff."""

    def __init__(
        self,
        message: str = "",
        *,
        retry_after: float | datetime.timedelta | None = None,
        error_type: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message, error_type=error_type, details=details)
        if isinstance(retry_after, datetime.timedelta):
            retry_after = retry_after.total_seconds()
        self.retry_after = retry_after


class PermanentError(StepError):
    """The step cannot succeed (bad input, a declined card): fail it now, without retries."""

    retryable = False
