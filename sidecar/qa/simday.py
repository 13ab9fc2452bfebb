"""A simulated contact-centre day of call digests, with or without injected patterns.

Used by ``bench/qa_day.py`` and the early-warning tests. Seeded: the same seed gives the same day.
Traffic: four queues open 08:00-20:00 UTC with a two-peak arrival profile (``calls_per_day`` in
all), each queue its own topics and complaint rate, agents on a morning (08-14) or a late (14-20)
shift, customer temperatures and negative-word shares a little worse on complaint calls. The
patterns, each aimed at one detector:

- ``complaint_burst``: from 10:30, six customers call the tech queue about an outage within 40 min;
- ``queue_spike``: from 13:00 for two hours the tech queue gets 3x its calls;
- ``agent_hot``: from 10:00 agent ``billing-m2``'s calls end a little hotter each hour;
- ``topic_share``: from 15:00 calls about ``new-tariff`` grow from about 2% to 45% of all calls
  by 17:00 (questions, not complaints);
- ``negative_share``: from 17:30 the billing queue's customers use three times the negative words.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass, replace

from sidecar.qa.digest import CallDigest, ViolationCount
from sidecar.qa.engine import WarningEngine
from sidecar.qa.warning import EarlyWarning, WarningKind

DAY0 = 1_767_225_600.0  # 2026-01-01 00:00 UTC: simulated day d starts at DAY0 + d * 86400
DAY = 86_400.0
HOUR = 3_600.0
OPEN_HOURS = range(8, 20)
PROFILE = (0.6, 1.0, 1.3, 1.3, 1.0, 0.8, 1.0, 1.2, 1.1, 0.9, 0.7, 0.5)  # 08:00 .. 19:00
QUEUES = {"billing": 0.35, "tech": 0.30, "sales": 0.20, "cards": 0.15}  # share of the day's calls
COMPLAINT_RATE = {"billing": 0.30, "tech": 0.30, "sales": 0.12, "cards": 0.20}
TOPICS = {
    "billing": {"double-charge": 1.0, "late-fee": 1.0, "refund-status": 1.0, "bill-explained": 1.0, "direct-debit": 1.0},
    "tech": {"outage": 0.6, "router-setup": 1.0, "slow-speed": 1.0, "app-login": 1.0, "sim-activation": 1.0},
    "sales": {"upgrade-offer": 1.0, "contract-end": 1.0, "handset-price": 1.0, "new-tariff": 0.3},
    "cards": {"lost-card": 1.0, "card-declined": 1.0, "pin-reset": 1.0, "fraud-check": 1.0},
}  # fmt: skip
AGENTS = {"billing": 3, "tech": 3, "sales": 2, "cards": 2}  # per shift
NEGATIVE_SHARE = 0.035  # a customer's usual negative-word share (0.06 when complaining)
PATTERNS: tuple[WarningKind, ...] = (
    "complaint_burst",
    "queue_spike",
    "agent_hot",
    "topic_share",
    "negative_share",
)


@dataclass(frozen=True, slots=True)
class Pattern:
    """An injected pattern: the warning it should raise (``kind``, ``key``) between ``start`` (when
    it began) and ``deadline``."""

    kind: WarningKind
    key: str
    start: float
    deadline: float
    description: str


@dataclass(frozen=True, slots=True)
class SimDay:
    day: int
    digests: tuple[CallDigest, ...]  # in order of their end
    patterns: tuple[Pattern, ...]


def _poisson(rng: random.Random, lam: float) -> int:
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def _clip(x: float, lo: float = -1.0, hi: float = 1.0) -> float:
    return max(lo, min(hi, x))


class _Caller:
    """Draws one call of a queue at a time."""

    def __init__(self, rng: random.Random, day: int) -> None:
        self.rng, self.day, self.n = rng, day, 0

    def agent(self, queue: str, at: float) -> str:
        shift = "m" if (at - DAY0 - self.day * DAY) < 14 * HOUR else "l"
        return f"{queue}-{shift}{self.rng.randrange(AGENTS[queue]) + 1}"

    def call(
        self, queue: str, start: float, *, topic: str | None = None, complaint: bool | None = None
    ) -> CallDigest:
        rng = self.rng
        self.n += 1
        topics = TOPICS[queue]
        if topic is None and rng.random() < 0.9:
            topic = rng.choices(list(topics), weights=list(topics.values()))[0]
        if complaint is None:
            complaint = topic is not None and rng.random() < COMPLAINT_RATE[queue]
        duration = min(40 * 60.0, rng.lognormvariate(math.log(300.0), 0.5))
        words = max(40, round(rng.gauss(220, 70)))
        share = NEGATIVE_SHARE * (1.7 if complaint else 1.0)
        negative = round(_clip(rng.gauss(words * share, math.sqrt(words * share)), 0, words))
        violations = (ViolationCount("dead_air", "general", 1),) if rng.random() < 0.15 else ()
        return CallDigest(
            call_id=f"d{self.day}-{self.n:04d}",
            agent_id=self.agent(queue, start),
            queue=queue,
            lang="en",
            started_at=start,
            ended_at=start + duration,
            team=f"team-{queue}",
            customer_ref=f"cust-{rng.randrange(10**7)}",
            intents=("complaint",) if complaint else ("info_request",),
            topics=(topic,) if topic else (),
            complaint_topics=(topic,) if complaint and topic else (),
            temperature_start=_clip(rng.gauss(-0.3 if complaint else -0.05, 0.25)),
            temperature_end=_clip(rng.gauss(-0.15 if complaint else 0.1, 0.3)),
            customer_words=words,
            negative_words=negative,
            violations=violations,
        )


def simulate_day(day: int, seed: int, *, patterns: bool, calls_per_day: int = 320) -> SimDay:
    """One day (index ``day``): the same base traffic for a seed, with or without the patterns."""
    rng = random.Random(seed * 1_000 + day)
    caller = _Caller(rng, day)
    midnight = DAY0 + day * DAY
    per_unit = calls_per_day / sum(PROFILE)
    calls: list[CallDigest] = []
    for queue, share in QUEUES.items():
        for hour, weight in zip(OPEN_HOURS, PROFILE, strict=True):
            for _ in range(_poisson(rng, per_unit * weight * share)):
                calls.append(caller.call(queue, midnight + hour * HOUR + rng.random() * HOUR))
    injected: list[Pattern] = []
    if patterns:
        calls, injected = _inject(calls, caller, random.Random(seed * 7_919 + day), midnight, per_unit)
    calls.sort(key=lambda d: (d.ended_at, d.call_id))
    return SimDay(day, tuple(calls), tuple(injected))


def _inject(
    calls: list[CallDigest], caller: _Caller, rng: random.Random, midnight: float, per_unit: float
) -> tuple[list[CallDigest], list[Pattern]]:

    def at(hour: int, minute: int = 0) -> float:
        return midnight + hour * HOUR + minute * 60

    out: list[Pattern] = []
    # (a) six customers about the outage within 40 minutes
    start = at(10, 30)
    for i in range(6):
        calls.append(
            caller.call("tech", start + i * 7 * 60 + rng.random() * 60, topic="outage", complaint=True)
        )
    out.append(Pattern("complaint_burst", "outage", start, start + HOUR, "6 outage complaints in 40 min"))
    # (b) tech at 3x for two hours
    start = at(13)
    for hour in (13, 14):
        extra = _poisson(rng, 2.0 * per_unit * PROFILE[hour - 8] * QUEUES["tech"])
        calls += [caller.call("tech", at(hour) + rng.random() * HOUR) for _ in range(extra)]
    out.append(Pattern("queue_spike", "tech", start, start + 3 * HOUR, "tech queue at 3x for 2 h"))
    # (c) new-tariff questions from 2% to 45% of all calls, 15:00 -> 17:00
    start = at(15)
    for i, d in enumerate(calls):
        ramp = min(1.0, max(0.0, (d.ended_at - start) / (2 * HOUR)))
        if ramp > 0 and rng.random() < 0.45 * ramp:
            calls[i] = replace(d, topics=("new-tariff",), complaint_topics=(), intents=("info_request",))
    out.append(Pattern("topic_share", "new-tariff", start, start + 3 * HOUR, "new-tariff 2% -> 45% of calls"))
    # (d) one agent's calls end hotter each hour from 10:00
    start, agent = at(10), "billing-m2"
    for i, d in enumerate(calls):
        if d.agent_id == agent and d.ended_at > start:
            drift = 0.35 * (d.ended_at - start) / HOUR
            calls[i] = replace(d, temperature_end=_clip(d.temperature_end - drift))
    out.append(Pattern("agent_hot", agent, start, start + 4 * HOUR, "billing-m2 drifting hot from 10:00"))
    # (e) the billing queue's customers use three times the negative words from 17:30
    start = at(17, 30)
    for i, d in enumerate(calls):
        if d.queue == "billing" and d.ended_at > start:
            negative = min(d.customer_words, round(d.customer_words * rng.gauss(0.22, 0.03)))
            calls[i] = replace(d, negative_words=max(0, negative))
    out.append(
        Pattern("negative_share", "billing", start, start + 90 * 60, "billing negative words x3 from 17:30")
    )
    return calls, out


@dataclass(frozen=True, slots=True)
class DayResult:
    day: SimDay
    warnings: tuple[EarlyWarning, ...]  # raised and cleared, on the simulated day only
    warmup_warnings: tuple[EarlyWarning, ...]  # on the warm-up days before it


def run_day(seed: int, *, patterns: bool, warmup_days: int = 7, calls_per_day: int = 320,
            engine: WarningEngine | None = None) -> DayResult:  # fmt: skip
    """Warm the engine up on ``warmup_days`` ordinary days (the queues' usual volume), then feed
    it day ``warmup_days``, with or without the patterns."""
    engine = engine or WarningEngine()
    warmup: list[EarlyWarning] = []
    for d in range(warmup_days):
        warmup += _feed(engine, simulate_day(d, seed, patterns=False, calls_per_day=calls_per_day).digests)
    day = simulate_day(warmup_days, seed, patterns=patterns, calls_per_day=calls_per_day)
    return DayResult(day, tuple(_feed(engine, day.digests)), tuple(warmup))


def _feed(engine: WarningEngine, digests: Iterable[CallDigest]) -> list[EarlyWarning]:
    out: list[EarlyWarning] = []
    for digest in digests:
        out += engine.feed(digest)
    return out


def clock(at: float) -> str:
    """HH:MM of a simulated time."""
    seconds = int(at % DAY)
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}"
