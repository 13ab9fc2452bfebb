"""Cross-call early warnings (issue 15): every ended call becomes a ``CallDigest``; detectors over
explicit time windows watch the digests together and raise an ``EarlyWarning`` once per episode
(similar complaints, a queue's volume spike, a topic's rising share, an agent running hot, a
queue's negative-word share), cleared when the condition ends. ``WarningWatch`` runs them in the
service and publishes ``warning.raised`` / ``warning.cleared`` events."""

from sidecar.qa.config import EarlyWarningConfig
from sidecar.qa.digest import CallDigest, DigestFold, digest_from_board, digest_from_events
from sidecar.qa.engine import WarningEngine
from sidecar.qa.warning import EarlyWarning, OutOfOrderError, WarningKind

__all__ = [
    "CallDigest",
    "DigestFold",
    "EarlyWarning",
    "EarlyWarningConfig",
    "OutOfOrderError",
    "WarningEngine",
    "WarningKind",
    "digest_from_board",
    "digest_from_events",
]
