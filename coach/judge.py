"""The judge: which of the pack's labels an utterance carries, read from its meaning.

Fitted from the rule pack's ``categories`` at load and on every hot reload (``fit_judge``): each
example and hard negative is embedded by a multilingual panel (multilingual-e5-small and the
multilingual Universal Sentence Encoder, concatenated), and one logistic regression per label is
trained over every sentence of that label's channel: its examples are the positives; its hard
negatives, the other labels' examples and the channel's background talk are the negatives. Both
languages train one model (the embeddings are multilingual, so an English paraphrase teaches the
Chinese reading too). Emotion is one multinomial regression over the four emotion labels, read as
a temperature (angry -1 .. positive +0.5).

Embeddings are cached on disk by model and text (``VectorCache``), so a reload embeds only what
changed: a compliance edit is in force in seconds, not after a training job. Reading an utterance
costs one embedding per model and a matrix product; ``read`` is synchronous and thread-safe (the
coach calls it from its worker thread, through ``JudgeRunner`` with a time budget).
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from coach.rules import EMOTION_LABELS, JUDGE_KINDS, Category
from coach.text import sentences
from knowledge.embed import Embedder, Matrix, load_embedder
from models.registry import model_cache_dir

log = logging.getLogger(__name__)

PANEL = ("embed-e5", "embed-multilingual")
DEFAULT_THRESHOLD = {"violation": 0.5, "intent": 0.8, "disclosure": 0.3, "signal": 0.5}  # chosen on dev
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
class LabelModel:
    label: str
    kind: str
    channel: str
    threshold: float
    weights: NDArray[np.float32]
    bias: float


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
    emotion: tuple[NDArray[np.float32], NDArray[np.float32]] | None = None  # (weights 4×d, bias 4)
    examples: int = 0
    fit_s: float = 0.0

    def features(self, texts: Sequence[str]) -> Matrix:
        parts = [e.embed(list(texts), query=True) for e in self.panel]
        return np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]

    def threshold(self, label: str) -> float:
        model = self.labels.get(label)
        return model.threshold if model is not None else 1.0

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
        temperature = None
        if self.emotion is not None and channel == "customer":
            w, b = self.emotion
            logits = x[:1] @ w.T + b  # the whole utterance's tone
            p = np.exp(logits - logits.max())
            p /= p.sum()
            values = np.array([EMOTION_VALUE[name] for name in EMOTION_LABELS], dtype=np.float32)
            temperature = round(float(p[0] @ values), 4)
        return Reading(scores, evidence, temperature, round(1000 * (time.perf_counter() - t0), 2), thresholds)


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


def fit_judge(
    categories: Sequence[Category], panel: tuple[Embedder, ...], cache: VectorCache | None = None
) -> Judge:
    """One model per label from the pack's categories (seconds once the vectors are cached)."""
    t0 = time.perf_counter()
    cache = cache or VectorCache()
    judge = Judge(panel)

    def features(texts: Sequence[str]) -> Matrix:
        return np.concatenate([cache.embed(e, texts) for e in panel], axis=1).astype(np.float32)

    kinds = {c.label: c for c in categories if c.kind not in ("background", "emotion")}
    for channel in ("agent", "customer"):
        texts, pos, neg, untaught = _training_set(categories, channel)
        if not pos:
            continue
        x = features(texts)
        judge.examples += len(texts)
        for label, ids in pos.items():
            cat = kinds[label]
            y = np.zeros(len(texts), dtype=np.int8)
            y[list(ids)] = 1
            weight = np.ones(len(texts), dtype=np.float32)
            hard = [i for i in neg.get(label, ()) if i not in ids]
            weight[hard] = HARD_NEGATIVE_WEIGHT
            weight[[i for i in untaught.get(cat.kind, ()) if i not in ids]] = 0.0
            w, b = _logistic(x, y, weight)
            thresholds = [c.threshold for c in categories if c.label == label and c.threshold]
            threshold = min(thresholds) if thresholds else DEFAULT_THRESHOLD.get(cat.kind, 0.5)
            judge.labels[label] = LabelModel(label, cat.kind, channel, threshold, w, b)
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
    judge.read(
        ["Thanks for calling, how can I help?", "您好，请问有什么可以帮您？"], "customer"
    )  # first-call setup, now
    judge.fit_s = round(time.perf_counter() - t0, 2)
    return judge


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
