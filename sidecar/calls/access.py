"""What a tap may ask of the service, as the taps see it: its calls (``TapCalls``: open one, find
a live one, check that one could open) and who is connecting (``Authorize``: a token and a
permission in, the caller out).

The service implements both and hands them to the taps when it installs them
(``sidecar.taps.access``): the taps never import the service.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, Protocol, TypeAlias

from sidecar.calls.live_call import CallMeta, LiveCall
from sidecar.kernel.events import Channel, Event

TapPermission: TypeAlias = Literal["taps.connect", "calls.control"]  # what a tap's routes ask for


class Caller(Protocol):
    """Who is connecting (the service's principal): a name for logs and events, and a role."""

    @property
    def name(self) -> str: ...

    @property
    def role(self) -> str: ...


class AccessDeniedError(Exception):
    """No token or an unknown one (``status`` 401, ``role`` None), or a known caller whose role
    lacks the permission (403). The message is the HTTP answer's; a tap with a protocol of its
    own words its answer from ``status`` and ``role``."""

    def __init__(self, status: Literal[401, 403], message: str, role: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.role = role


Authorize: TypeAlias = Callable[[str | None, TapPermission], Caller]
"""The caller holding a token, if they hold the permission; else ``AccessDeniedError`` (counted)."""


class TapCalls(Protocol):
    """The service's calls, for a tap."""

    @property
    def closing(self) -> bool:
        """The service is stopping: no call should start."""
        ...

    def get(self, call_id: str) -> LiveCall | None:
        """A tap's call running in this process."""
        ...

    def in_use(self, call_id: str) -> bool:
        """The id is a call's: a tap's call here, or any call on the board (live or ended, any node)."""
        ...

    def check_open(self, call_id: str, *, joining: int = 0) -> None:
        """Raises what opening a call under ``call_id`` now would: ``CallIdInUseError`` (the id is
        in use) or ``TooManyCallsError`` (no room for one more; ``joining``: calls the tap is still
        setting up, counted as running). For a tap that accepts a call before it opens it."""
        ...

    async def open_call(
        self,
        meta: CallMeta,
        channels: tuple[Channel, ...] = ("agent", "customer"),
        *,
        kind: type[LiveCall] = ...,
    ) -> LiveCall:
        """A new call, started (``call.started`` published) and ready for ``push``."""
        ...

    async def barge(self, call_id: str, t: float, author: str, reason: str) -> Event:
        """A supervisor barges in (``barge`` event); ``CallNotLiveError`` when the call has ended."""
        ...
