"""The service's settings and the long-lived objects built from them.

Embedded defaults: in-process bus, SQLite knowledge base and feedback in ``data_dir``, a copy of the
shipped rule pack in ``data_dir/rules`` (what knowledge managers edit and publish), the bundled
sample call and knowledge base. ``REDIS_URL`` switches the bus to Redis Streams.

Environment: ``ASSIST_DATA`` (data directory), ``ASSIST_RECORDINGS`` (recorded calls that may be
played), ``ASSIST_KB_SEED`` (snippets imported into an empty store; ``none`` for none),
``REDIS_URL``, ``ASSIST_TOKENS_FILE`` / ``ASSIST_TOKENS`` (see ``auth.py``),
``ASSIST_AUDIOSOCKET_PORT`` / ``ASSIST_AUDIOSOCKET_HOST`` (the Asterisk AudioSocket tap's TCP server),
``ASSIST_FRAME_ANCESTORS`` (origins that may frame the agent widget, space-separated; default any:
every other page may not be framed), ``ASSIST_MAX_CALLS_PER_USER`` (recorded calls one user may
run at once, default 10), ``ASSIST_ROLE`` (``all``, ``media``, ``api``: ``assist serve --role``),
``ASSIST_REDIS_PREFIX`` (the bus's key prefix, default ``assist``), ``ASSIST_NODE_ID`` (this node's
name among the others; default host and pid), ``ASSIST_DRAIN_S`` (on SIGTERM, how long a node that
runs calls keeps running them while refusing new ones, default 0: end them at once; ``serve.py``),
``ASSIST_REDIS_RECONNECT_S`` (Redis away: how long the bus waits for it, buffering, before a
publish fails; default 30; ``kernel/redis_bus.py``).
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from coach.engine import Coach
from coach.rules import DEFAULT_PACK
from knowledge.feedback import FeedbackLog
from knowledge.policy import StoreKnowledge, SuggestionPolicy, default_policy
from knowledge.store import SnippetStore
from sidecar.kernel.bus import Bus, InMemoryBus
from sidecar.kernel.errors import ConfigError
from sidecar.service.auth import TokenTable, demo_tokens, tokens_from_env

log = logging.getLogger(__name__)
SAMPLES = Path(__file__).resolve().parent.parent.parent / "samples"


@dataclass
class ServiceConfig:
    data_dir: Path = Path(".assist")
    recordings_dir: Path | None = SAMPLES
    kb_seed: Path | None = SAMPLES / "sample-kb.jsonl"
    rules_dir: Path | None = None  # default: data_dir/rules, seeded from the shipped pack
    redis_url: str | None = None
    tokens: TokenTable | None = None  # default: from the environment, else demo tokens
    knowledge: bool = True  # load the embedders and push procedures
    preload_lang: str | None = "en"  # load the ASR model at start, not on the first call
    audiosocket_host: str = "127.0.0.1"  # the AudioSocket tap has no auth: a trusted network only
    audiosocket_port: int | None = None  # None: no AudioSocket server
    frame_ancestors: str | None = None  # origins that may frame the agent widget (None: any)
    max_calls_per_user: int = 10  # recorded calls one user may have running at once
    role: str = "all"  # all | media | api (sidecar/service/roles.py); media and api need redis_url
    redis_prefix: str = "assist"  # the bus's keys (nodes of one deployment share it)
    node_id: str | None = None  # this node among the others (default: host and pid)
    drain_s: float = 0.0  # on SIGTERM: seconds the live calls may go on while no new call is taken
    redis_reconnect_s: float = 30.0  # Redis away: how long publishes wait (nothing dropped) before failing

    def __post_init__(self) -> None:
        if not 0 <= self.drain_s <= 24 * 3600:
            raise ConfigError(f"ASSIST_DRAIN_S={self.drain_s}: seconds from 0 to 86400")
        if not 0 < self.redis_reconnect_s <= 3600:
            raise ConfigError(
                f"ASSIST_REDIS_RECONNECT_S={self.redis_reconnect_s}: seconds above 0, at most 3600"
            )

    @classmethod
    def from_env(cls) -> ServiceConfig:
        env = os.environ
        seed = env.get("ASSIST_KB_SEED")
        audiosocket_port = env.get("ASSIST_AUDIOSOCKET_PORT")
        return cls(
            data_dir=Path(env.get("ASSIST_DATA", ".assist")),
            recordings_dir=Path(env["ASSIST_RECORDINGS"]) if env.get("ASSIST_RECORDINGS") else SAMPLES,
            kb_seed=None if seed == "none" else Path(seed) if seed else SAMPLES / "sample-kb.jsonl",
            redis_url=env.get("REDIS_URL") or None,
            audiosocket_host=env.get("ASSIST_AUDIOSOCKET_HOST", "127.0.0.1"),
            audiosocket_port=int(audiosocket_port) if audiosocket_port else None,
            frame_ancestors=env.get("ASSIST_FRAME_ANCESTORS") or None,
            max_calls_per_user=int(env.get("ASSIST_MAX_CALLS_PER_USER", "10")),
            role=env.get("ASSIST_ROLE", "all"),
            redis_prefix=env.get("ASSIST_REDIS_PREFIX", "assist"),
            node_id=env.get("ASSIST_NODE_ID") or None,
            drain_s=_seconds(env, "ASSIST_DRAIN_S"),
            redis_reconnect_s=_seconds(env, "ASSIST_REDIS_RECONNECT_S", 30.0),
        )

    @property
    def rules_path(self) -> Path:
        return self.rules_dir or self.data_dir / "rules"


def _seconds(env: os._Environ[str], name: str, default: float = 0.0) -> float:
    raw = env.get(name, "").strip()
    try:
        return float(raw) if raw else default
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: a number of seconds") from None


@dataclass
class Services:
    config: ServiceConfig
    bus: Bus
    tokens: TokenTable
    store: SnippetStore
    feedback: FeedbackLog
    coach: Coach
    knowledge: StoreKnowledge | None
    policy: SuggestionPolicy | None


def make_bus(config: ServiceConfig) -> Bus:
    if config.redis_url:
        from sidecar.kernel.redis_bus import RedisStreamsBus

        return RedisStreamsBus(
            config.redis_url, prefix=config.redis_prefix, reconnect_s=config.redis_reconnect_s
        )
    return InMemoryBus()


def seed_rules(target: Path) -> None:
    """A first start copies the shipped pack; later starts keep what was published."""
    if target.is_dir() and any(target.glob("*.yaml")):
        return
    target.mkdir(parents=True, exist_ok=True)
    for path in DEFAULT_PACK.glob("*.yaml"):
        shutil.copy2(path, target / path.name)
    log.info("rule pack seeded from %s into %s", DEFAULT_PACK, target)


def build_services(config: ServiceConfig, bus: Bus | None = None) -> Services:
    """Everything heavy (models, index) loads here, before the service accepts calls."""
    from knowledge.cli import index_dir
    from knowledge.index import SnippetIndex

    config.data_dir.mkdir(parents=True, exist_ok=True)
    seed_rules(config.rules_path)
    tokens = config.tokens or tokens_from_env() or demo_tokens()
    db = config.data_dir / "kb.sqlite3"
    store = SnippetStore(db)
    if config.kb_seed is not None and not store.list():
        report = store.import_jsonl(config.kb_seed, actor="seed")
        log.info("knowledge base seeded with %d snippets from %s", report.created, config.kb_seed)
    coach = Coach(config.rules_path)
    knowledge = policy = None
    if config.knowledge and coach.embedder is not None:
        index = SnippetIndex.load_or_rebuild(index_dir(db), store, coach.embedder, progress=False)
        knowledge = StoreKnowledge(store, coach.embedder, index=index)
        policy = default_policy(knowledge)
        policy.warm_up()
    return Services(
        config=config,
        bus=bus or make_bus(config),
        tokens=tokens,
        store=store,
        feedback=FeedbackLog(store),
        coach=coach,
        knowledge=knowledge,
        policy=policy,
    )
