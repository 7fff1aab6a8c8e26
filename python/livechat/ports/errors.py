"""Errors every backend raises in the same situations, so services handle them once."""

from __future__ import annotations


class BackendError(Exception):
    """A storage or broker operation failed; the operation had no effect unless its docstring says so."""


class BackendUnavailable(BackendError):
    """The backing service cannot be reached (connection refused, timed out, closed)."""


class ConfigurationError(ValueError):
    """A backend URL or setting is malformed, names an unknown scheme, or needs a missing driver."""


class ClosedError(BackendError):
    """The backend was closed with ``aclose()``; no further calls are accepted."""
