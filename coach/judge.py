"""The judge: which of the pack's labels an utterance carries, read from its meaning.

Fitted from the rule pack's ``categories`` at load and on every hot reload (``fit_judge``): each
example and hard negative is embedded by a multilingual panel (multilingual-e5-small and the
multilingual Universal Sentence Encoder, concatenated), with hashed character n-grams beside the
vectors (the surface cues of tone and stance a sentence vector averages away). The default head
(``JudgeSettings``) fits one multinomial regression per kind of label and channel, in which the
labels of that kind and "none of them" compete (the channel's other sentences and background talk
are "none"; hard negatives weigh double); ``ovr`` fits one yes/no regression per label instead.
Both languages train one model (the embeddings are multilingual, so an English paraphrase teaches
the Chinese reading too). Emotion is one multinomial regression over the four emotion labels, read
as a temperature (angry -1 .. positive +0.5).

Embeddings are cached on disk by model and text (``VectorCache``) and fitted weights by everything
the fit depends on (``FitCache``), so a restart reads the judge back in milliseconds and a reload
embeds and fits only when the pack changed (half a minute on 2 cores): a compliance edit is in force
without a training job. Reading an utterance costs one embedding per model, the n-gram hashing and a
matrix product; ``read`` is synchronous and thread-safe (the coach calls it from its worker thread,
through ``JudgeRunner`` with a time budget).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from coach.rules import EMOTION_LABELS, JUDGE_KINDS, Category
from knowledge.embed import Embedder, Matrix, load_embedder
from models.registry import model_cache_dir
from sidecar.kernel.errors import ConfigError
from sidecar.kernel.text import sentences

log = logging.getLogger(__name__)

PANEL = ("embed-e5", "embed-multilingual")
HEADS = ("ovr", "softmax")
DEFAULT_THRESHOLDS = {  # chosen on dev
    "ovr": {"violation": 0.5, "intent": 0.8, "disclosure": 0.3, "signal": 0.5},
    "softmax": {"violation": 0.5, "intent": 0.7, "disclosure": 0.3, "signal": 0.5},
}
EMOTION_VALUE = {"angry": -1.0, "negative": -0.5, "neutral": 0.0, "positive": 0.5}
HARD_NEGATIVE_WEIGHT = 2.0  # a curated near miss teaches more than any other label's example
REGULARISATION_C = 30.0  # the vectors are unit-length: weak regularisation


class VectorCache:
    """Sentence vectors on disk, by model name and text (SQLite; safe across threads and processes)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or model_cache_dir() / "judge-vectors.sqlite"
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    def _conn(self) -> sqlite3.Connection | None:
        if self._db is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
                db.execute(
                    "CREATE TABLE IF NOT EXISTS vec (model TEXT, key TEXT, v BLOB, PRIMARY KEY (model, key))"
                )
                db.commit()
                self._db = db
            except sqlite3.Error as exc:  # a read-only cache dir: embed every time, never fail
                log.warning("judge vector cache unavailable (%s): embedding without it", type(exc).__name__)
                return None
        return self._db

    @staticmethod
    def _key(text: str) -> str:
        return hashlib.sha1(text.encode("utf-8")).hexdigest()

    def embed(self, embedder: Embedder, texts: Sequence[str]) -> Matrix:
        out = np.zeros((len(texts), embedder.dim), dtype=np.float32)
        keys = [self._key(t) for t in texts]
        missing: list[int] = list(range(len(texts)))
        with self._lock:
            db = self._conn()
            if db is not None:
                found: dict[str, bytes] = {}
                for start in range(0, len(keys), 500):
                    chunk = keys[start : start + 500]
                    marks = ",".join("?" * len(chunk))
                    rows = db.execute(f"SELECT key, v FROM vec WHERE model = ? AND key IN ({marks})",
                                      (embedder.name, *chunk)).fetchall()  # fmt: skip
                    found.update(rows)
                missing = []
                for i, key in enumerate(keys):
                    blob = found.get(key)
                    if blob is not None and len(blob) == 4 * embedder.dim:
                        out[i] = np.frombuffer(blob, dtype=np.float32)
                    else:
                        missing.append(i)
        for start in range(0, len(missing), 64):
            batch = missing[start : start + 64]
            vecs = embedder.embed([texts[i] for i in batch], query=True)
            out[batch] = vecs
            with self._lock:
                db = self._conn()
                if db is not None:
                    db.executemany("INSERT OR REPLACE INTO vec VALUES (?, ?, ?)",
                                   [(embedder.name, keys[i], vecs[j].tobytes()) for j, i in enumerate(batch)])  # fmt: skip
                    db.commit()
        return out


@dataclass(frozen=True, slots=True)
class JudgeSettings:
    """How the judge reads and decides (chosen on the dev set with bench/judge_turns.py).

    ``head``: ``softmax``, one model per kind of label and channel in which the labels and "none"
    compete; ``ovr``, one yes/no model per label. ``lexical``: weight of hashed character n-grams
    beside the sentence embeddings (0: embeddings only), ``hash_bits`` their table size (2**bits)."""

    head: str = "softmax"
    lexical: float = 1.0
    hash_bits: int = 16

    @classmethod
    def from_env(cls) -> JudgeSettings:
        """``ASSIST_JUDGE_HEAD``, ``ASSIST_JUDGE_LEXICAL``, ``ASSIST_JUDGE_HASH_BITS`` over the defaults."""
        base = cls()
        head = os.environ.get("ASSIST_JUDGE_HEAD", "").strip().lower() or base.head
        if head not in HEADS:
            raise ConfigError(f"ASSIST_JUDGE_HEAD={head!r}: choose one of {', '.join(HEADS)}")
        try:
            lexical = float(os.environ.get("ASSIST_JUDGE_LEXICAL", base.lexical))
            bits = int(os.environ.get("ASSIST_JUDGE_HASH_BITS", base.hash_bits))
        except ValueError as exc:
            raise ConfigError(f"ASSIST_JUDGE_LEXICAL / ASSIST_JUDGE_HASH_BITS: {exc}") from exc
        if lexical < 0 or not 10 <= bits <= 22:
            raise ConfigError("ASSIST_JUDGE_LEXICAL must be >= 0 and ASSIST_JUDGE_HASH_BITS within 10..22")
        return cls(head, lexical, bits)


@dataclass(frozen=True, slots=True)
class LabelModel:
    label: str
    kind: str
    channel: str
    threshold: float
    weights: NDArray[np.float32]
    bias: float


@dataclass(frozen=True, slots=True)
class GroupModel:
    """One multinomial reading over every label of one kind on one channel, plus "none of them"
    (the last class): the labels compete, so a turn is read as the label it most resembles rather
    than as whichever label's own yes/no model happens to clear its bar."""

    kind: str
    channel: str
    labels: tuple[str, ...]
    thresholds: tuple[float, ...]
    weights: NDArray[np.float32]  # (labels + 1) × d
    bias: NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Reading:
    """What the judge read in one utterance: a probability per label of the speaker's channel
    (the best over the whole utterance and each of its sentences), and the customer's temperature."""

    scores: Mapping[str, float]
    evidence: Mapping[str, str]  # label → the sentence that carried it
    temperature: float | None = None
    elapsed_ms: float = 0.0
    thresholds: Mapping[str, float] = field(default_factory=dict)

    def carries(self, label: str) -> bool:
        return self.scores.get(label, 0.0) >= self.thresholds.get(label, 1.0)

    def only(self, labels: Iterable[str]) -> Reading:
        """The same reading restricted to some labels (a partial is judged for fatal ones only)."""
        keep = set(labels)
        return Reading({k: v for k, v in self.scores.items() if k in keep},
                       {k: v for k, v in self.evidence.items() if k in keep}, None, self.elapsed_ms,
                       self.thresholds)  # fmt: skip


@dataclass
class Judge:
    panel: tuple[Embedder, ...]
    labels: dict[str, LabelModel] = field(default_factory=dict)  # label → model
    groups: list[GroupModel] = field(default_factory=list)  # the softmax head's models
    emotion: tuple[NDArray[np.float32], NDArray[np.float32]] | None = None  # (weights 4×d, bias 4)
    examples: int = 0
    fit_s: float = 0.0
    settings: JudgeSettings = field(default_factory=JudgeSettings)

    def features(self, texts: Sequence[str]) -> Matrix:
        parts = [e.embed(list(texts), query=True) for e in self.panel]
        dense = np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
        return _with_lexical(dense, texts, self.settings)

    def label_names(self) -> list[str]:
        return [*self.labels, *(label for g in self.groups for label in g.labels)]

    def read(self, units: Sequence[str], channel: str) -> Reading:
        """``units``: the whole utterance first, then its sentences (when it has several)."""
        t0 = time.perf_counter()
        units = [u for i, u in enumerate(units) if u.strip() and (i == 0 or _long_enough(u))]
        if not units:
            return Reading({}, {})
        x = self.features(units)
        scores: dict[str, float] = {}
        evidence: dict[str, str] = {}
        thresholds: dict[str, float] = {}
        for model in self.labels.values():
            if model.channel not in ("any", channel):
                continue
            thresholds[model.label] = model.threshold
            probs = 1.0 / (1.0 + np.exp(-(x @ model.weights + model.bias)))
            best = int(np.argmax(probs))
            scores[model.label] = round(float(probs[best]), 4)
            evidence[model.label] = units[best]
        for group in self.groups:
            if group.channel not in ("any", channel):
                continue
            logits = x @ group.weights.T + group.bias
            p = np.exp(logits - logits.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            for j, label in enumerate(group.labels):
                best = int(np.argmax(p[:, j]))
                scores[label] = round(float(p[best, j]), 4)
                evidence[label] = units[best]
                thresholds[label] = group.thresholds[j]
        temperature = None
        if self.emotion is not None and channel == "customer":
            w, b = self.emotion
            logits = x[:1] @ w.T + b  # the whole utterance's tone
            p = np.exp(logits - logits.max())
            p /= p.sum()
            values = np.array([EMOTION_VALUE[name] for name in EMOTION_LABELS], dtype=np.float32)
            temperature = round(float(p[0] @ values), 4)
        return Reading(scores, evidence, temperature, round(1000 * (time.perf_counter() - t0), 2), thresholds)


def _with_lexical(dense: Matrix, texts: Sequence[str], settings: JudgeSettings) -> Matrix:
    """The embeddings, and beside them (when ``settings.lexical``) hashed character n-grams: the
    surface cues of tone and stance that a sentence vector averages away ("again", "of course",
    "真是", "?!"). The hashing needs no vocabulary, so a reload fits exactly what the pack says."""
    if settings.lexical <= 0:
        return dense
    from scipy import sparse  # type: ignore[import-untyped]
    from sklearn.feature_extraction.text import HashingVectorizer

    hasher = HashingVectorizer(
        analyzer="char_wb", ngram_range=(2, 4), n_features=2**settings.hash_bits, alternate_sign=False
    )
    grams = hasher.transform(list(texts)) * settings.lexical
    return sparse.hstack([sparse.csr_matrix(dense), grams], format="csr")  # type: ignore[no-any-return]


def _long_enough(sentence: str) -> bool:
    """A sentence worth reading on its own ("Thanks." or "不客气。" says nothing by itself)."""
    cjk = sum(1 for ch in sentence if "\u3400" <= ch <= "\u9fff")
    return cjk >= 6 if cjk else len(sentence.split()) >= 4


def _training_set(
    categories: Iterable[Category], channel: str
) -> tuple[list[str], dict[str, set[int]], dict[str, set[int]], dict[str, set[int]]]:
    """Unique texts of a channel; per label the indices of its examples and of its hard negatives,
    and per kind of label the background texts that must not be negatives for it."""
    index: dict[str, int] = {}
    texts: list[str] = []
    pos: dict[str, set[int]] = {}
    neg: dict[str, set[int]] = {}
    untaught: dict[str, set[int]] = {}  # kind → background that says nothing about it

    def at(text: str) -> int:
        if text not in index:
            index[text] = len(texts)
            texts.append(text)
        return index[text]

    for cat in categories:
        if cat.channel not in (channel, "any") or cat.kind == "emotion":
            continue
        ids = {at(t) for t in cat.examples}
        if cat.kind != "background":
            pos.setdefault(cat.label, set()).update(ids)
            neg.setdefault(cat.label, set()).update(at(t) for t in (*cat.negatives, *_parts(cat.negatives)))
        # every sentence of a long acceptable turn is acceptable on its own: the judge also reads
        # utterances sentence by sentence, so it must learn them as such
        if cat.kind == "background":
            ids |= {at(t) for t in _parts(cat.examples)}
            for kind in set(JUDGE_KINDS) - set(cat.teaches):
                untaught.setdefault(kind, set()).update(ids)
    return texts, pos, neg, untaught


def _parts(texts: Iterable[str]) -> list[str]:
    """The sentences of multi-sentence texts (single sentences are already there whole)."""
    out = []
    for text in texts:
        parts = sentences(text)
        if len(parts) > 1:
            out += [p for p in parts if len(p) >= 8]
    return out


def _logistic(
    x: Matrix, y: NDArray[np.int8], weight: NDArray[np.float32]
) -> tuple[NDArray[np.float32], float]:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=REGULARISATION_C, max_iter=3000)
    model.fit(x, y, sample_weight=weight)
    return model.coef_[0].astype(np.float32), float(model.intercept_[0])


def _multinomial(
    x: Matrix,
    labels: tuple[str, ...],
    pos: Mapping[str, set[int]],
    neg: Mapping[str, set[int]],
    untaught: set[int],
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Labels 0..k-1 and "none" (k): a text taught as two labels (a turn with two needs) counts
    for both; "none" is every other text of the channel that teaches this kind, a curated near
    miss of any of the labels weighing double."""
    from sklearn.linear_model import LogisticRegression

    rows: list[int] = []
    y: list[int] = []
    weight: list[float] = []
    positive: set[int] = set()
    for j, label in enumerate(labels):
        ids = sorted(pos[label])
        rows += ids
        y += [j] * len(ids)
        weight += [1.0] * len(ids)
        positive |= pos[label]
    hard = set().union(*(neg.get(label, set()) for label in labels))
    for i in range(x.shape[0]):
        if i not in positive and i not in untaught:
            rows.append(i)
            y.append(len(labels))
            weight.append(HARD_NEGATIVE_WEIGHT if i in hard else 1.0)
    model = LogisticRegression(C=REGULARISATION_C, max_iter=3000)
    model.fit(x[rows], np.array(y), sample_weight=np.array(weight, dtype=np.float32))
    coef, intercept = model.coef_, model.intercept_
    if len(model.classes_) == 2:  # one label and "none": sklearn keeps only the second class's side
        coef = np.vstack([np.zeros_like(coef), coef])
        intercept = np.concatenate([np.zeros_like(intercept), intercept])
    classes = list(model.classes_)
    w = np.zeros((len(labels) + 1, x.shape[1]), dtype=np.float32)
    b = np.full(len(labels) + 1, -1e4, dtype=np.float32)  # a class with no example is never read
    for j in range(len(labels) + 1):
        if j in classes:
            w[j], b[j] = coef[classes.index(j)], intercept[classes.index(j)]
    return w, b


def fit_judge(
    categories: Sequence[Category],
    panel: tuple[Embedder, ...],
    cache: VectorCache | None = None,
    settings: JudgeSettings | None = None,
    fits: FitCache | None = None,
) -> Judge:
    """The judge's models from the pack's categories. A pack fitted before with the same settings
    and panel is read back from ``fits`` (milliseconds); otherwise it is fitted (seconds to half a
    minute on 2 cores once the vectors are cached) and kept there."""
    t0 = time.perf_counter()
    settings = settings or JudgeSettings.from_env()
    fits = fits if fits is not None else FitCache()
    key = fits.key(categories, panel, settings)
    judge = fits.load(key, panel, settings)
    if judge is None:
        judge = _fit(categories, panel, cache or VectorCache(), settings)
        fits.save(key, judge)
    judge.read(
        ["Thanks for calling, how can I help?", "您好，请问有什么可以帮您？"], "customer"
    )  # first-call setup, now
    judge.fit_s = round(time.perf_counter() - t0, 2)
    return judge


def _fit(
    categories: Sequence[Category], panel: tuple[Embedder, ...], cache: VectorCache, settings: JudgeSettings
) -> Judge:
    judge = Judge(panel, settings=settings)
    head = settings.head

    def features(texts: Sequence[str]) -> Matrix:
        dense = np.concatenate([cache.embed(e, texts) for e in panel], axis=1).astype(np.float32)
        return _with_lexical(dense, texts, settings)

    kinds = {c.label: c for c in categories if c.kind not in ("background", "emotion")}

    def threshold(label: str) -> float:
        set_by_pack = [c.threshold for c in categories if c.label == label and c.threshold]
        return min(set_by_pack) if set_by_pack else DEFAULT_THRESHOLDS[head].get(kinds[label].kind, 0.5)

    for channel in ("agent", "customer"):
        texts, pos, neg, untaught = _training_set(categories, channel)
        if not pos:
            continue
        x = features(texts)
        judge.examples += len(texts)
        if head == "softmax":
            for kind in sorted({kinds[label].kind for label in pos}):
                labels = tuple(sorted(label for label in pos if kinds[label].kind == kind))
                w, b = _multinomial(x, labels, pos, neg, untaught.get(kind, set()))
                judge.groups.append(
                    GroupModel(kind, channel, labels, tuple(threshold(lab) for lab in labels), w, b)
                )
            continue
        for label, ids in pos.items():
            cat = kinds[label]
            y = np.zeros(len(texts), dtype=np.int8)
            y[list(ids)] = 1
            weight = np.ones(len(texts), dtype=np.float32)
            hard = [i for i in neg.get(label, ()) if i not in ids]
            weight[hard] = HARD_NEGATIVE_WEIGHT
            weight[[i for i in untaught.get(cat.kind, ()) if i not in ids]] = 0.0
            lw, lb = _logistic(x, y, weight)
            judge.labels[label] = LabelModel(label, cat.kind, channel, threshold(label), lw, lb)
    emotions = [c for c in categories if c.kind == "emotion"]
    if {c.label for c in emotions} == set(EMOTION_LABELS):
        texts, y_list = [], []
        for c in emotions:
            for t in c.examples:
                texts.append(t)
                y_list.append(EMOTION_LABELS.index(c.label))
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(C=REGULARISATION_C / 4, max_iter=3000)
        model.fit(features(texts), np.array(y_list))
        order = [list(model.classes_).index(i) for i in range(len(EMOTION_LABELS))]
        judge.emotion = (model.coef_[order].astype(np.float32), model.intercept_[order].astype(np.float32))
        judge.examples += len(texts)
    return judge


class FitCache:
    """Fitted judges on disk, keyed by everything the fit depends on (the pack's categories, the
    panel, the settings, this module's constants): a restart or a second process with the same pack
    reads the weights back instead of fitting again; any edit to the pack is a new key."""

    VERSION = 1
    KEEP = 8

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or model_cache_dir() / "judge-fits"

    def key(
        self, categories: Sequence[Category], panel: tuple[Embedder, ...], settings: JudgeSettings
    ) -> str:
        h = hashlib.sha256()
        for part in (self.VERSION, [e.name for e in panel], settings, REGULARISATION_C, HARD_NEGATIVE_WEIGHT,
                     sorted(DEFAULT_THRESHOLDS[settings.head].items()), categories):  # fmt: skip
            h.update(repr(part).encode("utf-8"))
        return h.hexdigest()[:32]

    def load(self, key: str, panel: tuple[Embedder, ...], settings: JudgeSettings) -> Judge | None:
        path = self.directory / f"{key}.npz"
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                judge = Judge(panel, settings=settings, examples=int(meta["examples"]))
                for i, (label, kind, channel, threshold) in enumerate(meta["labels"]):
                    judge.labels[label] = LabelModel(label, kind, channel, float(threshold),
                                                     data[f"lw{i}"], float(data[f"lb{i}"]))  # fmt: skip
                for i, (kind, channel, labels, thresholds) in enumerate(meta["groups"]):
                    judge.groups.append(GroupModel(kind, channel, tuple(labels), tuple(thresholds),
                                                   data[f"gw{i}"], data[f"gb{i}"]))  # fmt: skip
                if meta["emotion"]:
                    judge.emotion = (data["ew"], data["eb"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:  # a torn or stale file: fit again
            log.warning("judge fit cache %s unreadable (%s): fitting again", path.name, type(exc).__name__)
            return None
        return judge

    def save(self, key: str, judge: Judge) -> None:
        arrays: dict[str, Any] = {}
        for i, m in enumerate(judge.labels.values()):
            arrays[f"lw{i}"], arrays[f"lb{i}"] = m.weights, np.asarray(m.bias, dtype=np.float32)
        for i, g in enumerate(judge.groups):
            arrays[f"gw{i}"], arrays[f"gb{i}"] = g.weights, g.bias
        if judge.emotion is not None:
            arrays["ew"], arrays["eb"] = judge.emotion
        meta = {
            "examples": judge.examples,
            "labels": [[m.label, m.kind, m.channel, m.threshold] for m in judge.labels.values()],
            "groups": [[g.kind, g.channel, list(g.labels), list(g.thresholds)] for g in judge.groups],
            "emotion": judge.emotion is not None,
        }
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp = self.directory / f".{key}.{os.getpid()}.{threading.get_ident()}.npz"
            np.savez(tmp, meta=np.array(json.dumps(meta)), **arrays)
            os.replace(tmp, self.directory / f"{key}.npz")
            kept = sorted(
                self.directory.glob("[!.]*.npz"), key=lambda p: p.stat().st_mtime
            )  # not a writer's temp
            for old in kept[: -self.KEEP]:
                old.unlink(missing_ok=True)  # the newest few packs (a rollback refits nothing)
        except OSError as exc:  # a read-only cache: the next start fits again
            log.warning("judge fit not cached (%s)", type(exc).__name__)


def load_panel(keys: Sequence[str] = PANEL) -> tuple[Embedder, ...]:
    return tuple(load_embedder(k) for k in keys)


class JudgeRunner:
    """The judge with a time budget, shared by every call of a process.

    A reading that takes longer than ``budget_s`` or fails is a miss: it is counted, and that
    utterance is decided by the exact matchers alone (PII patterns, timing, the pack's phrases),
    so a slow or broken judge never stalls a transcript or the event loop (the caller is already
    on the coach's worker thread; the judge has a thread of its own).
    """

    def __init__(self, judge: Judge, budget_s: float = 1.0) -> None:
        self.judge = judge
        self.budget_s = budget_s
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="judge")
        self.timeouts = 0
        self.errors = 0

    def read(self, units: Sequence[str], channel: str) -> Reading | None:
        future = self._pool.submit(self.judge.read, units, channel)
        try:
            return future.result(timeout=self.budget_s)
        except FutureTimeout:
            self.timeouts += 1
            log.warning("judge over its %.1f s budget: exact matchers only for this utterance", self.budget_s)
        except Exception as exc:
            self.errors += 1
            log.error("judge failed (%s): exact matchers only for this utterance", type(exc).__name__)
        return None


def panel_keys() -> tuple[str, ...]:
    """``ASSIST_JUDGE_PANEL``: the embedders the judge reads with (default e5 + multilingual USE)."""
    raw = os.environ.get("ASSIST_JUDGE_PANEL", "")
    keys = tuple(k.strip() for k in raw.split(",") if k.strip())
    return keys or PANEL


def budget_s() -> float:
    try:
        return max(0.05, float(os.environ.get("ASSIST_JUDGE_BUDGET_S", "1.0")))
    except ValueError:
        return 1.0
