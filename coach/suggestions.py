"""What a coach session needs from a suggestion policy, and nothing more.

The session asks the policy, on each customer turn, which procedures to push; it keeps the
policy's state for the call without looking inside it, and reads the pushed snippet back to show
it. ``knowledge.policy.SuggestionPolicy`` is the real one; the composition (the service, the CLI,
``sidecar.kb_try``) hands it in, so the coach never imports the knowledge base's policy and the
knowledge base never imports the coach.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

State = TypeVar("State")


class Firing(Protocol):
    """A decision to push one snippet."""

    @property
    def snippet_id(self) -> str: ...

    @property
    def score(self) -> float: ...

    @property
    def reason(self) -> str: ...


class Card(Protocol):
    """The snippet a suggestion shows."""

    @property
    def id(self) -> str: ...

    @property
    def title(self) -> str: ...

    @property
    def body(self) -> str: ...

    @property
    def version(self) -> int: ...


class SuggestionPolicy(Protocol[State]):
    """Decides, on a customer utterance, which snippets to push; its per-call state is opaque."""

    def initial_state(self) -> State: ...

    def decide(
        self, state: State, text: str, t_s: float, intents: Sequence[str] = (), agent_said: str = ""
    ) -> tuple[State, Sequence[Firing]]: ...

    def snippet(self, snippet_id: str) -> Card | None: ...
