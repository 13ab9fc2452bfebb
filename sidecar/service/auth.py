"""Bearer tokens and roles.

Tokens come from a YAML file (``ASSIST_TOKENS_FILE``: ``tokens: [{token, role, name}]``) or the
environment (``ASSIST_TOKENS="token:role:name,..."``); with neither, ``demo_tokens`` makes one
random token per role. Tokens are compared in constant time and never logged.

What each role may do is decided here, in one table (``ALLOWED``), so the routes only name the
permission they need: no token or an unknown one is 401, a known token without the permission 403.
"""

from __future__ import annotations

import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeAlias, get_args

import yaml

from sidecar.kernel.errors import ConfigError

Role: TypeAlias = Literal["agent", "supervisor", "knowledge_manager", "integrator", "admin", "qa"]
ROLES: tuple[Role, ...] = get_args(Role)

Permission: TypeAlias = Literal[
    "calls.read",  # agents: only their own calls (checked per call)
    "calls.read_all",
    "calls.control",  # whisper, barge, start a recorded call
    "floor.read",
    "kb.read",
    "kb.search",
    "kb.feedback",
    "kb.write",
    "rules.read",
    "rules.write",
    "taps.connect",
    "history.read",  # stored calls: agents only their own
    "history.read_all",
    "history.review",  # verdicts on stored alerts
    "history.rules",  # per-rule precision from verdicts
    "history.erase",  # erasure by customer reference
    "history.audit",  # the call store's audit log
]

# the call store: what QA reviewers do with it, and what only supervisors (and admins) may
_HISTORY_REVIEW: frozenset[Permission] = frozenset(
    {"history.read", "history.read_all", "history.review", "history.rules"}
)
_HISTORY_ADMIN: frozenset[Permission] = frozenset({"history.erase", "history.audit"})
_SUPERVISOR_LIVE: frozenset[Permission] = frozenset(
    {"calls.read", "calls.read_all", "calls.control", "floor.read", "kb.read", "kb.search", "kb.feedback"}
)
ALLOWED: dict[Role, frozenset[Permission]] = {
    "agent": frozenset({"calls.read", "kb.search", "kb.feedback", "history.read"}),
    "supervisor": _SUPERVISOR_LIVE | _HISTORY_REVIEW | _HISTORY_ADMIN,
    "knowledge_manager": frozenset(
        {"kb.read", "kb.search", "kb.write", "rules.read", "rules.write", "history.rules"}
    ),
    "qa": _HISTORY_REVIEW | frozenset({"rules.read"}),
    "integrator": frozenset({"taps.connect"}),
    "admin": frozenset(get_args(Permission)),
}


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    role: Role

    def may(self, permission: Permission) -> bool:
        return permission in ALLOWED[self.role]


@dataclass(frozen=True, slots=True)
class TokenEntry:
    token: str
    principal: Principal


class TokenTable:
    def __init__(self, entries: list[TokenEntry], *, generated: bool = False) -> None:
        self._entries = entries
        self.generated = generated  # made at start (demo tokens): the only ones ever printed

    @property
    def entries(self) -> list[TokenEntry]:
        return list(self._entries)

    def lookup(self, token: str) -> Principal | None:
        found = None
        for entry in self._entries:  # no early exit: the time taken does not say which matched
            if hmac.compare_digest(entry.token.encode(), token.encode()):
                found = entry.principal
        return found

    def token_for(self, role: Role) -> str | None:
        return next((e.token for e in self._entries if e.principal.role == role), None)


def _entry(token: object, role: object, name: object, where: str) -> TokenEntry:
    if not isinstance(token, str) or len(token) < 8:
        raise ConfigError(f"{where}: a token must be a string of at least 8 characters")
    if role not in ROLES:
        raise ConfigError(f"{where}: unknown role {role!r} (one of {', '.join(ROLES)})")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}: every token needs a name (an agent's name is their agent id)")
    return TokenEntry(token, Principal(name, role))


def load_tokens_file(path: Path) -> TokenTable:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"tokens file {path}: {exc}") from None
    items = data.get("tokens") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise ConfigError(f"tokens file {path}: expected a mapping with a 'tokens' list")
    entries = []
    for i, item in enumerate(items, 1):
        if not isinstance(item, dict):
            raise ConfigError(f"tokens file {path}: entry {i} is not a mapping")
        entries.append(_entry(item.get("token"), item.get("role"), item.get("name"), f"{path} entry {i}"))
    return TokenTable(entries)


def parse_tokens_env(value: str) -> TokenTable:
    entries = []
    for i, part in enumerate(p.strip() for p in value.split(",") if p.strip()):
        fields = part.split(":")
        if len(fields) != 3:
            raise ConfigError(f"ASSIST_TOKENS item {i + 1}: expected token:role:name")
        entries.append(_entry(fields[0], fields[1], fields[2], f"ASSIST_TOKENS item {i + 1}"))
    return TokenTable(entries)


def demo_tokens() -> TokenTable:
    """One random token per role; the agent's name is ``demo-agent``."""
    names = {"agent": "demo-agent"}
    return TokenTable(
        [TokenEntry(f"{role}-{secrets.token_urlsafe(12)}", Principal(names.get(role, f"demo-{role}"), role))
         for role in ROLES], generated=True,
    )  # fmt: skip


def tokens_from_env() -> TokenTable | None:
    """The configured tokens, or None when nothing is configured."""
    if path := os.environ.get("ASSIST_TOKENS_FILE"):
        return load_tokens_file(Path(path))
    if value := os.environ.get("ASSIST_TOKENS"):
        return parse_tokens_env(value)
    return None
