"""Knowledge snippets and their ``kb.jsonl`` file format.

One JSON object a line::

    {"id": "refund-policy", "title": "...", "body": "...", "tags": ["refund"], "lang": "en",
     "triggers": ["money back"]}

``id``, ``title``, ``body``, ``tags`` and ``lang`` are required, ``triggers`` is optional, any
other field is an error. Blank lines are skipped. Every problem is a ``KnowledgeError`` (an
``InputError``) naming the file and line; ``load_snippets_jsonl`` reports every bad line of a file
at once, so a file can be fixed in one pass.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sidecar.kernel.errors import InputError

Status = Literal["draft", "published"]
STATUSES: tuple[Status, ...] = ("draft", "published")

ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
LANG_PATTERN = re.compile(r"(?P<lang>[a-z]{2,3})(-(?P<sub>[A-Za-z]{2}|[0-9]{3}|[A-Za-z]{4}))?")
SCRIPTS = frozenset({"hans", "hant", "latn", "cyrl", "arab", "deva", "jpan", "kore", "thai", "hebr", "grek"})
# ISO 639-1, and the few ISO 639-3 codes a contact centre meets (Chinese varieties, Filipino...)
_LANGUAGE_CODES = (
    "aa ab ae af ak am an ar as av ay az ba be bg bh bi bm bn bo br bs ca ce ch co cr cs cu cv cy da de dv dz "
    "ee el en eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he hi ho hr ht hu hy hz ia id ie ig ii ik "
    "io is it iu ja jv ka kg ki kj kk kl km kn ko kr ks ku kv kw ky la lb lg li ln lo lt lu lv mg mh mi mk ml "
    "mn mr ms mt my na nb nd ne ng nl nn no nr nv ny oc oj om or os pa pi pl ps pt qu rm rn ro ru rw sa sc sd "
    "se sg si sk sl sm sn so sq sr ss st su sv sw ta te tg th ti tk tl tn to tr ts tt tw ty ug uk ur uz ve vi "
    "vo wa wo xh yi yo za zh zu yue cmn wuu nan hak gsw fil haw ckb"
)
LANGUAGES = frozenset(_LANGUAGE_CODES.split())
# control characters (a body keeps its newlines and tabs) and the bidirectional overrides that
# make a title read differently from what it holds
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_CONTROL_OR_NEWLINE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


def is_language_code(value: str) -> bool:
    """``en``, ``zh``, ``yue``, ``zh-TW``, ``zh-Hant``, ``en-GB``, ``es-419``: a known language and
    an optional region or script."""
    m = LANG_PATTERN.fullmatch(value)
    if m is None or m["lang"] not in LANGUAGES:
        return False
    return m["sub"] is None or len(m["sub"]) != 4 or m["sub"].lower() in SCRIPTS


REQUIRED_FIELDS = ("id", "title", "body", "tags", "lang")
OPTIONAL_FIELDS = ("triggers",)


class KnowledgeError(InputError):
    """A knowledge-base file or snippet we cannot take. ``problems`` lists each one (file:line: why)."""

    def __init__(self, message: str, problems: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems or (message,)


@dataclass(frozen=True, slots=True)
class Snippet:
    """One knowledge snippet. ``version``, ``status``, ``updated_by`` and ``updated_at`` are set by
    the store; they are not part of the ``kb.jsonl`` format."""

    id: str
    title: str
    body: str
    tags: tuple[str, ...]
    lang: str
    triggers: tuple[str, ...] = ()
    version: int = 1
    status: Status = "published"
    updated_by: str = ""
    updated_at: float = 0.0

    def to_json_dict(self, full: bool = False) -> dict[str, Any]:
        """The ``kb.jsonl`` object (``triggers`` only when there are some); with ``full`` also
        ``version``, ``status``, ``updated_by`` and ``updated_at``."""
        out: dict[str, Any] = {
            "id": self.id,
            "title": self.title,
            "body": self.body,
            "tags": list(self.tags),
            "lang": self.lang,
        }
        if self.triggers:
            out["triggers"] = list(self.triggers)
        if full:
            out |= {
                "version": self.version,
                "status": self.status,
                "updated_by": self.updated_by,
                "updated_at": self.updated_at,
            }
        return out

    def same_content(self, other: Snippet) -> bool:
        """True when the two have the same id, text, tags, language, triggers and status."""
        return _content(self) == _content(other)


def _content(s: Snippet) -> tuple[object, ...]:
    return (s.id, s.title, s.body, s.tags, s.lang, s.triggers, s.status)


def snippet_problems(s: Snippet) -> list[str]:
    """What is wrong with a snippet's values (empty when nothing): the rules of the file format."""
    problems = []
    if not isinstance(s.id, str) or not ID_PATTERN.fullmatch(s.id):
        problems.append(f'field "id" must be 1-128 letters, digits, ".", "_" or "-" (got {s.id!r})')
    for name in ("title", "body"):
        value = getattr(s, name)
        if not isinstance(value, str) or not value.strip():
            problems.append(f'field "{name}" must be a non-empty string')
        elif (_CONTROL if name == "body" else _CONTROL_OR_NEWLINE).search(value):
            problems.append(f'field "{name}" must not hold control characters')
    for name in ("tags", "triggers"):
        value = getattr(s, name)
        if not isinstance(value, tuple) or not all(isinstance(v, str) and v.strip() for v in value):
            problems.append(f'field "{name}" must be a list of non-empty strings')
        elif any(_CONTROL_OR_NEWLINE.search(v) for v in value):
            problems.append(f'field "{name}" must not hold control characters')
    if not isinstance(s.lang, str) or not is_language_code(s.lang):
        problems.append(
            f'field "lang" must be a language code such as "en", "zh" or "zh-TW" (got {s.lang!r})'
        )
    if s.status not in STATUSES:
        problems.append(f'status must be "draft" or "published" (got {s.status!r})')
    return problems


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f'field "{key}" given twice')
        out[key] = value
    return out


def _string_list(obj: dict[str, Any], name: str) -> tuple[str, ...] | None:
    value = obj.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return None
    return tuple(value)


def parse_snippet_line(line: str, lineno: int, source: str) -> Snippet:
    """Parse one ``kb.jsonl`` line; a bad line raises ``KnowledgeError("source:lineno: why; why")``."""
    where = f"{source}:{lineno}"
    try:
        obj = json.loads(line, object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as exc:
        raise KnowledgeError(f"{where}: not JSON ({exc.msg}, column {exc.colno})") from None
    except ValueError as exc:  # a duplicate key
        raise KnowledgeError(f"{where}: {exc}") from None
    if not isinstance(obj, dict):
        raise KnowledgeError(f"{where}: not a JSON object (got {type(obj).__name__})")

    problems = [f'missing field "{name}"' for name in REQUIRED_FIELDS if name not in obj]
    known = REQUIRED_FIELDS + OPTIONAL_FIELDS
    problems += [f'unknown field "{name}"' for name in obj if name not in known]
    for name in ("id", "title", "body", "lang"):
        if name in obj and not isinstance(obj[name], str):
            problems.append(f'field "{name}" must be a string (got {type(obj[name]).__name__})')
    tags, triggers = _string_list(obj, "tags"), _string_list(obj, "triggers")
    if tags is None:
        problems.append('field "tags" must be a list of strings')
    if triggers is None:
        problems.append('field "triggers" must be a list of strings')
    if problems:
        raise KnowledgeError(f"{where}: {'; '.join(problems)}")

    snippet = Snippet(obj["id"], obj["title"], obj["body"], tags or (), obj["lang"], triggers or ())
    if problems := snippet_problems(snippet):
        raise KnowledgeError(f"{where}: {'; '.join(problems)}")
    return snippet


def load_snippets_jsonl(path: str | Path) -> list[Snippet]:
    """Every snippet of a ``kb.jsonl`` file, in file order.

    All lines are read and checked first; if any is bad (including an id used twice) one
    ``KnowledgeError`` lists every bad line, and nothing is returned.
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise KnowledgeError(f"{source}: no such file") from None
    except IsADirectoryError:
        raise KnowledgeError(f"{source}: is a directory, not a kb.jsonl file") from None
    except UnicodeDecodeError as exc:
        raise KnowledgeError(f"{source}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise KnowledgeError(f"{source}: cannot read: {exc.strerror or exc}") from None

    snippets: list[Snippet] = []
    problems: list[str] = []
    first_line: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            snippet = parse_snippet_line(line, lineno, source)
        except KnowledgeError as exc:
            problems.append(str(exc))
            continue
        if snippet.id in first_line:
            problems.append(
                f'{source}:{lineno}: duplicate id "{snippet.id}" (first on line {first_line[snippet.id]})'
            )
            continue
        first_line[snippet.id] = lineno
        snippets.append(snippet)

    if len(problems) == 1:
        raise KnowledgeError(problems[0])
    if problems:
        listing = "\n".join(f"  {p}" for p in problems)
        raise KnowledgeError(f"{source}: {len(problems)} bad lines:\n{listing}", tuple(problems))
    return snippets
