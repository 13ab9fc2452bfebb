"""The early-warning engine: one digest per ended call in, the warnings it raised or cleared out.

Time is the calls' own: a digest is taken at its ``ended_at``. Order: calls end in roughly the
order they are reported, not exactly (two workers, a slow store). A digest no more than
``late_tolerance_s`` older than the newest one seen is taken as of the newest time (its place in
the windows is off by at most that much); an older one is dropped and counted in
``late_dropped`` (its windows have moved on). A call id seen before is ignored (``duplicates``).
Pure and synchronous: the service runs it from the task that follows the bus.
"""

from __future__ import annotations

from collections import OrderedDict

from sidecar.qa.config import EarlyWarningConfig
from sidecar.qa.detectors import AgentHot, ComplaintBurst, NegativeShare, TopicShare
from sidecar.qa.digest import CallDigest
from sidecar.qa.volume import QueueSpike
from sidecar.qa.warning import EarlyWarning

SEEN_CALLS = 20_000  # call ids remembered for de-duplication


class WarningEngine:
    def __init__(self, config: EarlyWarningConfig | None = None) -> None:
        self.config = config or EarlyWarningConfig()
        c = self.config
        self.detectors = (
            ComplaintBurst(c.complaint_burst),
            QueueSpike(c.queue_spike),
            TopicShare(c.topic_share),
            AgentHot(c.agent_hot),
            NegativeShare(c.negative_share),
        )
        self.now = float("-inf")
        self.calls_seen = 0
        self.late_dropped = 0
        self.duplicates = 0
        self._seen: OrderedDict[str, None] = OrderedDict()

    def feed(self, digest: CallDigest) -> list[EarlyWarning]:
        """Take one ended call; the warnings this call raised (or whose end it revealed)."""
        if digest.call_id in self._seen:
            self.duplicates += 1
            return []
        if digest.ended_at < self.now - self.config.late_tolerance_s:
            self.late_dropped += 1
            return []
        self._seen[digest.call_id] = None
        self.calls_seen += 1
        if len(self._seen) > SEEN_CALLS:
            self._seen.popitem(last=False)
        self.now = max(self.now, digest.ended_at)
        out: list[EarlyWarning] = []
        for detector in self.detectors:
            out += detector.observe(digest, self.now)
        return out

    def reconfigure(self, config: EarlyWarningConfig) -> None:
        """New thresholds (a hot reload): the detectors keep their windows, episodes and history;
        the next step judges with the new values (a longer window fills as calls come)."""
        self.config = config
        complaint, volume, share, agent, negative = self.detectors
        complaint.config = config.complaint_burst
        volume.config = volume.baseline.config = config.queue_spike
        share.config = config.topic_share
        agent.config = config.agent_hot
        negative.config = config.negative_share

    def advance(self, now: float) -> list[EarlyWarning]:
        """Time passes with no call ending (a timer): the episodes that ended meanwhile clear.
        A time before the newest seen changes nothing."""
        if now <= self.now:
            return []
        self.now = now
        out: list[EarlyWarning] = []
        for detector in self.detectors:
            out += detector.advance(now)
        return out

    def open_episodes(self) -> dict[str, list[str]]:
        """Keys in an episode now, per warning kind."""
        return {d.episodes.kind: sorted(d.episodes.open) for d in self.detectors}
