"""``assist kb try`` and ``POST /v1/kb/try``: draft snippets tried on recorded calls.

The composition the knowledge base cannot do itself (it imports neither the coach nor the call
files): read the transcripts (``sidecar.callfile``), build the coach with the live suggestion
policy over the draft (``coach`` + ``knowledge.policy``), and hand both to ``knowledge.dryrun``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from knowledge.dryrun import DryRunReport, Suggest, dry_run, load_draft
from knowledge.policy import Firing, SuggestionPolicy
from knowledge.snippets import Snippet
from sidecar.callfile import load_transcripts
from sidecar.kernel.turns import Turn


def try_drafts(draft: Path, calls_dir: Path, suggester: Callable[[], Suggest]) -> DryRunReport:
    """Every transcript ``*.jsonl`` of ``calls_dir`` through ``suggester()`` with the snippets of
    ``draft``. The draft's problems come first, then the transcripts' (every bad line or file
    listed), and the suggester is built only when both are good: nothing is run otherwise."""
    snippets = load_draft(draft)
    calls = load_transcripts(calls_dir)
    return dry_run(snippets, calls, suggest=suggester())


def offline_suggester() -> Callable[[list[Turn], list[Snippet]], list[Firing]]:
    """What the live policy (with the coach's intents) would push on a recorded transcript,
    against a draft set of snippets."""
    from coach.engine import Coach
    from knowledge.policy import StoreKnowledge, default_policy
    from knowledge.store import SnippetStore
    from sidecar.kernel.events import CallStarted, Event, Suggestion, TranscriptFinal

    coach = Coach()
    embedder = coach.embedder
    assert embedder is not None
    policies: dict[tuple[Snippet, ...], SuggestionPolicy] = {}

    def policy_for(snippets: list[Snippet]) -> SuggestionPolicy:
        """One index and policy per draft, however many calls it is tried on."""
        key = tuple(snippets)
        if key not in policies:
            store = SnippetStore(":memory:")
            for snippet in snippets:
                store.upsert(replace(snippet, status="published"), actor="dry-run")
            policies[key] = default_policy(StoreKnowledge(store, embedder))
        return policies[key]

    def suggest(turns: list[Turn], snippets: list[Snippet]) -> list[Firing]:
        session = coach.session("dry-run", "en", policy_for(snippets))
        session.process(
            Event(
                "call.started",
                "dry-run",
                None,
                0,
                0,
                CallStarted("dry-run", "en", ("agent", "customer"), False),
            )
        )
        out: list[Firing] = []
        for i, turn in enumerate(turns):
            final = TranscriptFinal(turn.text, (), "en", i + 1)
            for ev in session.process(
                Event("transcript.final", "dry-run", turn.channel, turn.start_s, turn.end_s, final)
            ):
                if isinstance(ev.payload, Suggestion):
                    p = ev.payload
                    out.append(Firing(ev.t_end, p.snippet_id, p.title, p.score, p.reason))
        return out

    return suggest
