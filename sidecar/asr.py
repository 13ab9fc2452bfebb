"""Speech recognition behind one Protocol, and its faster-whisper implementation.

``WhisperRecognizer.recognize`` is blocking and is called from a worker thread (the
``SpeechEngine`` pool); it materialises everything it returns. Whisper pads every input to 30 s
of features, which makes each decode cost the same however short the audio. We pad to a
shorter *window* instead (``DecodeOptions.window_frames``): the encoder cost drops 4-8x, and a
repetition check falls back to the full 30 s window when a short one misbehaves.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import ctranslate2
import numpy as np
import opencc
from faster_whisper import WhisperModel
from faster_whisper.audio import pad_or_trim
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import TranscriptionOptions, get_compression_ratio, merge_punctuations

from sidecar.audio import Float32
from sidecar.commit import join_words, normalize
from sidecar.kernel.events import Word

FULL_WINDOW = 3000  # Whisper's 30 s of 10 ms feature frames
SIMPLIFIED_CHINESE_PROMPT = "以下是普通话的句子。"
_MAX_TOKENS_PER_S = 10.0
_PREPEND = "\"'“¿([{-"
_APPEND = "\"'.。,，!！?？:：”)]}、"


@dataclass(frozen=True, slots=True)
class Hypothesis:
    words: tuple[Word, ...]  # times relative to the start of the decoded audio
    text: str
    lang: str
    no_speech_prob: float
    avg_logprob: float
    window_frames: int
    decode_s: float


def strip_prompt_echo(words: tuple[Word, ...], prompt: str) -> tuple[Word, ...]:
    """On unintelligible audio Whisper may say its prompt back: drop a leading echo of it."""
    target = normalize(prompt).replace(" ", "")
    said = ""
    for i, word in enumerate(words):
        said += normalize(word.text).replace(" ", "")
        if said == target:
            rest = words[i + 1 :]
            while rest and not normalize(rest[0].text):  # the echo's own punctuation
                rest = rest[1:]
            return rest
        if not target.startswith(said):
            return words
    return () if said else words  # all of it was (part of) the prompt


_T2S = opencc.OpenCC("t2s")
_T2S_LOCK = threading.Lock()


def to_simplified(words: tuple[Word, ...]) -> tuple[Word, ...]:
    """Whisper writes Traditional characters now and then even with a Simplified prompt (the
    pipeline, the coach's corpus and the agent all read Simplified). OpenCC's t2s over the whole
    hypothesis, so phrase rules see context, split back by word; per word if a length changed."""
    if not words:
        return words
    with _T2S_LOCK:
        joined = _T2S.convert("".join(w.text for w in words))
        if len(joined) != sum(len(w.text) for w in words):
            return tuple(replace(w, text=_T2S.convert(w.text)) for w in words)
    out, i = [], 0
    for w in words:
        out.append(
            w if joined[i : i + len(w.text)] == w.text else replace(w, text=joined[i : i + len(w.text)])
        )
        i += len(w.text)
    return tuple(out)


def collapse_repeats(words: tuple[Word, ...], min_phrase: int = 3) -> tuple[Word, ...]:
    """Cut a decoding loop: the same phrase of ``min_phrase``+ words said again back to back (kept once).

    A short padded window sometimes makes Whisper say the utterance again ("Can I have your order,
    please? Can I have your order, please?"); people do not repeat whole phrases verbatim.
    """
    keys = [normalize(w.text) for w in words]
    n = len(keys)
    for size in range(n // 2, min_phrase - 1, -1):
        for start in range(0, n - 2 * size + 1):
            if keys[start : start + size] == keys[start + size : start + 2 * size]:
                end = start + size
                while keys[end : end + size] == keys[start : start + size]:
                    end += size
                return collapse_repeats(words[: start + size] + words[end:], min_phrase)
    return words


class Recognizer(Protocol):
    """Transcribe one stretch of 16 kHz float audio. Blocking: run it in a worker thread."""

    @property
    def multilingual(self) -> bool: ...

    def recognize(
        self, audio: Float32, *, lang: str | None, prompt: str | None = None, prefix: str | None = None
    ) -> Hypothesis:
        """``lang=None`` detects the language (multilingual models only). ``prompt`` is earlier
        text (context); ``prefix`` is text the audio is known to start with: it is forced, not
        decoded, and returned as the first words of the hypothesis (with fresh times)."""
        ...


@dataclass(frozen=True, slots=True)
class DecodeRequest:
    """One decode, as ``Recognizer.recognize`` takes it (``sidecar.decode_batch`` gathers them)."""

    audio: Float32
    lang: str | None
    prompt: str | None = None
    prefix: str | None = None


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A request made ready to decode: features, window, language, prompt tokens, budget."""

    request: DecodeRequest
    features: Any
    content: int  # frames of audio (the rest is padding)
    window: int
    lang: str | None  # None: to be detected from the audio
    tokenizer: Tokenizer
    options: TranscriptionOptions
    prompt: list[int]
    sot_index: int
    budget: int


@dataclass(slots=True)
class _Row:
    """One request's row of a batch, between decoding and alignment."""

    index: int  # in the requests
    row: int  # in the batch
    prepared: _Prepared
    result: Any
    avg_logprob: float
    tokens: list[int]
    words: tuple[Word, ...] = ()


@dataclass(frozen=True, slots=True)
class DecodeOptions:
    beam_size: int = 1
    # Decode with timestamp tokens, as batch Whisper does: measured better text on short
    # utterances than <|notimestamps|> (the timestamps themselves are not used: words are aligned).
    # Decodes with a forced prefix always run without timestamps.
    timestamps: bool = True
    # window = content x ratio, rounded up to a multiple of step, at least min, at most 30 s
    window_ratio: float = 2.0
    window_step: int = 500
    min_window: int = 1000
    no_speech_threshold: float = 0.6
    log_prob_threshold: float = -1.0
    compression_ratio_threshold: float = 2.4

    def window_frames(self, content_frames: int) -> int:
        wanted = int(np.ceil(content_frames * self.window_ratio / self.window_step)) * self.window_step
        return int(min(FULL_WINDOW, max(self.min_window, wanted)))


class WhisperRecognizer:
    max_batch = 32  # requests in one CTranslate2 batch

    def __init__(self, model: WhisperModel, options: DecodeOptions | None = None) -> None:
        self._model = model
        self.options = options or DecodeOptions()
        self._tokenizers: dict[str | None, Tokenizer] = {}
        self._lock = threading.Lock()

    @property
    def multilingual(self) -> bool:
        return bool(self._model.model.is_multilingual)

    def _tokenizer(self, lang: str) -> Tokenizer:
        with self._lock:
            tok = self._tokenizers.get(lang)
            if tok is None:
                tok = Tokenizer(self._model.hf_tokenizer, self.multilingual, task="transcribe", language=lang)
                self._tokenizers[lang] = tok
            return tok

    def _transcription_options(
        self, prompt: str | None, max_new_tokens: int, prefix: str | None = None
    ) -> TranscriptionOptions:
        o = self.options
        return TranscriptionOptions(
            beam_size=o.beam_size, best_of=1, patience=1.0, length_penalty=1.0, repetition_penalty=1.0,
            no_repeat_ngram_size=0, log_prob_threshold=o.log_prob_threshold,
            no_speech_threshold=o.no_speech_threshold, compression_ratio_threshold=None,
            condition_on_previous_text=False, prompt_reset_on_temperature=0.5, temperatures=[0.0],
            initial_prompt=prompt, prefix=(prefix or "").strip() or None,
            suppress_blank=True, suppress_tokens=[-1],
            # a forced prefix and timestamp mode do not mix: after a long prefix the model ends at once
            without_timestamps=not o.timestamps or bool(prefix),
            max_initial_timestamp=1.0, word_timestamps=True,
            prepend_punctuations=_PREPEND, append_punctuations=_APPEND, multilingual=False,
            max_new_tokens=max_new_tokens, clip_timestamps="0", hallucination_silence_threshold=None,
            hotwords=None,
        )  # fmt: skip

    def recognize(
        self, audio: Float32, *, lang: str | None, prompt: str | None = None, prefix: str | None = None
    ) -> Hypothesis:
        started = time.perf_counter()
        return self._decode_alone(self._prepare(DecodeRequest(audio, lang, prompt, prefix)), started)

    def _decode_alone(self, p: _Prepared, started: float) -> Hypothesis:
        """One prepared request, decoded by itself (detecting its language when it has none)."""
        encoded = self._model.encode(pad_or_trim(p.features, p.window))
        if p.lang is None:
            p = self._prepare(replace(p.request, lang=self._detect(encoded)), p.features)
        result, avg_logprob, tokens, text = self._generate(encoded, p)
        window = p.window
        if window < FULL_WINDOW and get_compression_ratio(text) > self.options.compression_ratio_threshold:
            window = FULL_WINDOW  # a repetition loop: decode again with Whisper's own padding
            encoded = self._model.encode(pad_or_trim(p.features, window))
            result, avg_logprob, tokens, text = self._generate(encoded, p)
        silent = self._silent(result.no_speech_prob, avg_logprob)
        words = () if silent or not tokens else self._align(p.tokenizer, [tokens], encoded, [p.content])[0]
        return self._hypothesis(
            p, words, result.no_speech_prob, avg_logprob, window, time.perf_counter() - started
        )

    def recognize_batch(self, requests: Sequence[DecodeRequest]) -> list[Hypothesis]:
        """Several decodes (of any calls and channels) as CTranslate2 batches: the encoder, the
        decoder and the word alignment each run once per group of requests that can share a batch
        (the same window, language and prompt shape). Each request gets the hypothesis
        ``recognize`` gives it alone (tests/test_decode_batch.py): a request that cannot share a
        batch, hits its token budget, or needs the 30 s second pass is decoded alone."""
        out: list[Hypothesis | None] = [None] * len(requests)
        groups: dict[tuple[object, ...], list[tuple[int, _Prepared]]] = {}
        for i, request in enumerate(requests):
            p = self._prepare(request)
            # the language detected from this audio, or refused for its length (with its reason): alone
            if p.lang is None or len(p.prompt) + p.budget > self._model.max_length:
                out[i] = self._decode_alone(p, time.perf_counter())
                continue
            key = (p.window, p.lang, p.sot_index, p.options.without_timestamps)
            groups.setdefault(key, []).append((i, p))
        for members in groups.values():
            for start in range(0, len(members), self.max_batch):
                for i, hyp in self._decode_group(members[start : start + self.max_batch]):
                    out[i] = hyp
        assert all(h is not None for h in out)
        return [h for h in out if h is not None]

    def _decode_group(self, members: list[tuple[int, _Prepared]]) -> list[tuple[int, Hypothesis]]:
        started = time.perf_counter()
        model, window = self._model, members[0][1].window
        encoded = model.encode(np.stack([pad_or_trim(p.features, window) for _, p in members]))
        o = members[0][1].options
        results = model.model.generate(
            encoded, [p.prompt for _, p in members],
            length_penalty=o.length_penalty, repetition_penalty=o.repetition_penalty,
            no_repeat_ngram_size=o.no_repeat_ngram_size,
            max_length=max(len(p.prompt) + p.budget for _, p in members),
            return_scores=True, return_no_speech_prob=True, suppress_blank=o.suppress_blank,
            suppress_tokens=o.suppress_tokens,
            max_initial_timestamp_index=round(o.max_initial_timestamp / model.time_precision),
            beam_size=o.beam_size, patience=o.patience,
        )  # fmt: skip
        alone: list[tuple[int, _Prepared]] = []
        kept: list[_Row] = []
        for row, ((i, p), result) in enumerate(zip(members, results, strict=True)):
            sequence = result.sequences_ids[0]
            tokens = [t for t in sequence if t < p.tokenizer.eot]
            text = p.tokenizer.decode(tokens).strip()
            # the batch's length limit is the longest request's: one that reached its own budget
            # might have been cut elsewhere alone; a repetition loop needs the 30 s window
            looping = (
                window < FULL_WINDOW
                and get_compression_ratio(text) > self.options.compression_ratio_threshold
            )
            if len(sequence) >= p.budget or looping:
                alone.append((i, p))
            else:
                kept.append(_Row(i, row, p, result, self._avg_logprob(result), tokens))
        speech = [k for k in kept if k.tokens and not self._silent(k.result.no_speech_prob, k.avg_logprob)]
        if speech:
            rows = [k.row for k in speech]
            view = encoded if len(rows) == len(members) else _rows(encoded, rows)
            aligned = self._align(
                speech[0].prepared.tokenizer,
                [k.tokens for k in speech],
                view,
                [k.prepared.content for k in speech],
            )
            for k, words in zip(speech, aligned, strict=True):
                k.words = words
        share = (time.perf_counter() - started) / len(members)
        out = [
            (
                k.index,
                self._hypothesis(k.prepared, k.words, k.result.no_speech_prob, k.avg_logprob, window, share),
            )
            for k in kept
        ]
        out += [(i, self._decode_alone(p, time.perf_counter())) for i, p in alone]
        return out

    def _prepare(self, request: DecodeRequest, features: Any = None) -> _Prepared:
        if features is None:
            features = self._model.feature_extractor(request.audio)
        content = features.shape[-1] - 1
        lang = request.lang if self.multilingual else "en"
        prompt = request.prompt
        if lang == "zh":
            prompt = SIMPLIFIED_CHINESE_PROMPT + (prompt or "")
        # nobody says more than ~8 tokens a second: a budget that stops runaway decoding loops
        budget = int(_MAX_TOKENS_PER_S * request.audio.size / 16_000) + 8
        options = self._transcription_options(prompt, budget, request.prefix)
        tokenizer = self._tokenizer(lang or "en")
        previous: list[int] = []
        if options.initial_prompt:
            previous = tokenizer.encode(" " + str(options.initial_prompt).strip())
        prompt_tokens = self._model.get_prompt(
            tokenizer, previous, without_timestamps=options.without_timestamps, prefix=options.prefix
        )
        return _Prepared(
            request=request, features=features, content=content, window=self.options.window_frames(content), lang=lang,
            tokenizer=tokenizer, options=options, prompt=prompt_tokens,
            sot_index=prompt_tokens.index(tokenizer.sot), budget=budget,
        )  # fmt: skip

    def _silent(self, no_speech_prob: float, avg_logprob: float) -> bool:
        return (
            no_speech_prob > self.options.no_speech_threshold
            and avg_logprob < self.options.log_prob_threshold
        )

    @staticmethod
    def _avg_logprob(result: Any) -> float:
        """As faster-whisper recovers it from the returned score (length penalty 1)."""
        seq_len = len(result.sequences_ids[0])
        return float(result.scores[0] * seq_len / (seq_len + 1))

    @staticmethod
    def _hypothesis(
        p: _Prepared,
        words: tuple[Word, ...],
        no_speech_prob: float,
        avg_logprob: float,
        window: int,
        seconds: float,
    ) -> Hypothesis:
        lang = p.lang or "en"
        if lang == "zh":
            words = to_simplified(strip_prompt_echo(words, SIMPLIFIED_CHINESE_PROMPT))
        return Hypothesis(
            words=words,
            text=join_words(words, lang),
            lang=lang,
            no_speech_prob=float(no_speech_prob),
            avg_logprob=float(avg_logprob),
            window_frames=window,
            decode_s=seconds,
        )

    def _detect(self, encoded: Any) -> str:
        ranked = self._model.model.detect_language(encoded)[0]
        token, _prob = ranked[0]
        return str(token[2:-2])

    def _generate(self, encoded: Any, p: _Prepared) -> tuple[Any, float, list[int], str]:
        result, avg_logprob, _temperature, _ratio = self._model.generate_with_fallback(
            encoded, p.prompt, p.tokenizer, p.options
        )
        # the result starts with the forced prefix: CTranslate2 returns everything after <|startoftranscript|>
        tokens = [t for t in result.sequences_ids[0] if t < p.tokenizer.eot]
        return result, float(avg_logprob), tokens, p.tokenizer.decode(tokens).strip()

    def _align(
        self, tokenizer: Tokenizer, tokens: list[list[int]], encoded: Any, frames: list[int]
    ) -> list[tuple[Word, ...]]:
        """Words with times for each row of ``encoded`` (one alignment run for the batch)."""
        # CTranslate2 takes a frame count per row; faster-whisper passes it through untouched
        alignments = self._model.find_alignment(tokenizer, tokens, encoded, frames)
        out = []
        for alignment in alignments:
            merge_punctuations(alignment, _PREPEND, _APPEND)
            words = tuple(
                Word(
                    text=str(a["word"]).strip(),
                    t_start=float(a["start"]),
                    t_end=float(a["end"]),
                    probability=float(a["probability"]),
                )
                for a in alignment
                if any(ch.isalnum() for ch in str(a["word"]))  # a lone "." is not a word
            )
            out.append(collapse_repeats(words))
        return out


def _rows(encoded: Any, rows: list[int]) -> Any:
    """Some rows of an encoder output (through host memory: CTranslate2 cannot slice in place)."""
    host = np.asarray(encoded.to_device(ctranslate2.Device.cpu))
    return ctranslate2.StorageView.from_array(np.ascontiguousarray(host[rows]))
