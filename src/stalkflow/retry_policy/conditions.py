"""Retry conditions: which errors a step retries (``retry_*``).

A condition is a predicate on the exception a step raised. Conditions combine
with ``|`` (:class:`retry_any`) and ``&`` (:class:`retry_all`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Protocol, TypeAlias

from stalkflow.retry_policy._common import _describe

_ExceptionTypes: TypeAlias = "type[BaseException] | tuple[type[BaseException], ...]"


class RetryCondition(Protocol):
    """A predicate saying whether an exception should be retried."""

    def __call__(self, error: BaseException) -> bool: ...


class _RetryConditionBase:
    """Base of the retry conditions: adds ``|`` (any) and ``&`` (all)."""

    def __call__(self, error: BaseException) -> bool:
        raise NotImplementedError

    def __repr__(self) -> str:
        return _describe(self)

    def __or__(self, other: RetryCondition) -> retry_any:
        return retry_any(self, other)

    def __ror__(self, other: RetryCondition) -> retry_any:
        return retry_any(other, self)

    def __and__(self, other: RetryCondition) -> retry_all:
        return retry_all(self, other)

    def __rand__(self, other: RetryCondition) -> retry_all:
        return retry_all(other, self)


class _IsInstance:
    """Picklable ``isinstance`` predicate (a lambda would not survive pickling)."""

    def __init__(self, exception_types: _ExceptionTypes, negate: bool) -> None:
        self.exception_types = exception_types
        self.negate = negate

    def __call__(self, error: BaseException) -> bool:
        return isinstance(error, self.exception_types) != self.negate

    def __repr__(self) -> str:
        return _describe(self)


class retry_if_exception(_RetryConditionBase):
    """Retry when ``predicate(error)`` is true.

    For decisions the other conditions cannot express, e.g.
    ``retry_if_exception(lambda e: "rate limit" in str(e).lower())``.
    """

    def __init__(self, predicate: Callable[[BaseException], bool]) -> None:
        self.predicate = predicate

    def __call__(self, error: BaseException) -> bool:
        return bool(self.predicate(error))


class retry_if_exception_type(retry_if_exception):
    """Retry only errors that are instances of ``exception_types`` (subclasses too).

    The usual choice for transient failures, e.g.
    ``retry_if_exception_type((TimeoutError, ConnectionError))``.
    """

    def __init__(
        self,
        exception_types: type[BaseException] | tuple[type[BaseException], ...] = Exception,
    ) -> None:
        self.exception_types = exception_types
        super().__init__(_IsInstance(exception_types, negate=False))


class retry_if_not_exception_type(retry_if_exception):
    """Retry every error except instances of ``exception_types``.

    For when most failures are transient but a few are known to be permanent,
    e.g. ``retry_if_not_exception_type((ValueError, PermissionError))``.
    """

    def __init__(
        self,
        exception_types: type[BaseException] | tuple[type[BaseException], ...] = Exception,
    ) -> None:
        self.exception_types = exception_types
        super().__init__(_IsInstance(exception_types, negate=True))


class retry_unless_exception_type(retry_if_not_exception_type):
    """Tenacity's name for :class:`retry_if_not_exception_type`; same behaviour."""


class retry_if_exception_message(_RetryConditionBase):
    """Retry when the error's ``str()`` equals ``message`` or contains ``match``.

    Give exactly one of them: ``message`` is compared for equality, ``match`` is
    a regular expression (string or compiled) searched anywhere in the message.
    Useful when a provider signals transient failures only through the text.

    Raises:
        TypeError: if neither or both of ``message`` and ``match`` are given.
    """

    def __init__(
        self,
        message: str | None = None,
        match: str | re.Pattern[str] | None = None,
    ) -> None:
        name = type(self).__name__
        if message is None and match is None:
            raise TypeError(f"{name}() missing 1 required argument 'message' or 'match'")
        if message is not None and match is not None:
            raise TypeError(f"{name}() takes either 'message' or 'match', not both")
        self.message = message
        self.match = match
        self._pattern: re.Pattern[str] | None = re.compile(match) if match is not None else None

    def _matches(self, error: BaseException) -> bool:
        text = str(error)
        if self._pattern is not None:
            return self._pattern.search(text) is not None
        return text == self.message

    def __call__(self, error: BaseException) -> bool:
        return self._matches(error)


class retry_if_not_exception_message(retry_if_exception_message):
    """Retry unless the error's message equals ``message`` or contains ``match``.

    For providers whose messages mark permanent failures, e.g.
    ``retry_if_not_exception_message(match="invalid_api_key|permission denied")``.
    """

    def __call__(self, error: BaseException) -> bool:
        return not self._matches(error)


class retry_if_exception_cause_type(_RetryConditionBase):
    """Retry when an exception in the error's ``__cause__`` chain has a given type.

    Follows only explicit chaining (``raise X from Y``), as tenacity does; the
    error itself and implicit ``__context__`` links are not inspected. Useful
    when a library wraps a transient low-level error in its own exception type.
    """

    def __init__(
        self,
        exception_types: type[BaseException] | tuple[type[BaseException], ...] = Exception,
    ) -> None:
        self.exception_types = exception_types

    def __call__(self, error: BaseException) -> bool:
        seen: set[int] = set()
        cause = error.__cause__
        while cause is not None and id(cause) not in seen:
            if isinstance(cause, self.exception_types):
                return True
            seen.add(id(cause))
            cause = cause.__cause__
        return False


class retry_any(_RetryConditionBase):
    """Retry when at least one of ``retries`` says so (what ``a | b`` builds)."""

    def __init__(self, *retries: RetryCondition) -> None:
        self.retries = retries

    def __call__(self, error: BaseException) -> bool:
        return any(condition(error) for condition in self.retries)


class retry_all(_RetryConditionBase):
    """Retry only when every one of ``retries`` says so (what ``a & b`` builds)."""

    def __init__(self, *retries: RetryCondition) -> None:
        self.retries = retries

    def __call__(self, error: BaseException) -> bool:
        return all(condition(error) for condition in self.retries)


class retry_always(_RetryConditionBase):
    """Retry every error; states the intent explicitly in a composed policy."""

    def __call__(self, error: BaseException) -> bool:
        return True


class retry_never(_RetryConditionBase):
    """Retry no error; handy in tests or to switch off one branch of an ``|``."""

    def __call__(self, error: BaseException) -> bool:
        return False
