"""Why a call cannot be fed or started (taps answer with their protocol's error)."""

from __future__ import annotations


class CallNotLiveError(Exception):
    """The call has ended (or never started): nothing can be sent to it."""


class TooManyCallsError(Exception):
    """The service is running as many calls as it is configured for."""


class TooManyUserCallsError(TooManyCallsError):
    """The caller already has as many recorded calls running as one user may."""
