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
from dataclasses import dataclass, replace
from typing import Any, Protocol

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
        model = self._model
        features = model.feature_extractor(audio)
        content = features.shape[-1] - 1
        window = self.options.window_frames(content)
        encoded = model.encode(pad_or_trim(features, window))
        if not self.multilingual:
            lang = "en"
        elif lang is None:
            lang = self._detect(encoded)
        if lang == "zh":
            prompt = SIMPLIFIED_CHINESE_PROMPT + (prompt or "")
        tokenizer = self._tokenizer(lang)
        # nobody says more than ~8 tokens a second: a budget that stops runaway decoding loops
        budget = int(_MAX_TOKENS_PER_S * audio.size / 16_000) + 8
        options = self._transcription_options(prompt, budget, prefix)
        result, avg_logprob, tokens, text = self._generate(encoded, tokenizer, options)
        if window < FULL_WINDOW and get_compression_ratio(text) > self.options.compression_ratio_threshold:
            window = FULL_WINDOW  # a repetition loop: decode again with Whisper's own padding
            encoded = model.encode(pad_or_trim(features, window))
            result, avg_logprob, tokens, text = self._generate(encoded, tokenizer, options)
        silent = result.no_speech_prob > self.options.no_speech_threshold and avg_logprob < (
            self.options.log_prob_threshold
        )
        words = (
            () if silent or not tokens else collapse_repeats(self._align(tokenizer, tokens, encoded, content))
        )
        if lang == "zh":
            words = to_simplified(strip_prompt_echo(words, SIMPLIFIED_CHINESE_PROMPT))
        return Hypothesis(
            words=words,
            text=join_words(words, lang),
            lang=lang,
            no_speech_prob=float(result.no_speech_prob),
            avg_logprob=float(avg_logprob),
            window_frames=window,
            decode_s=time.perf_counter() - started,
        )

    def _detect(self, encoded: Any) -> str:
        ranked = self._model.model.detect_language(encoded)[0]
        token, _prob = ranked[0]
        return str(token[2:-2])

    def _generate(
        self, encoded: Any, tokenizer: Tokenizer, options: TranscriptionOptions
    ) -> tuple[Any, float, list[int], str]:
        previous: list[int] = []
        if options.initial_prompt:
            previous = tokenizer.encode(" " + str(options.initial_prompt).strip())
        prompt = self._model.get_prompt(
            tokenizer, previous, without_timestamps=options.without_timestamps, prefix=options.prefix
        )
        result, avg_logprob, _temperature, _ratio = self._model.generate_with_fallback(
            encoded, prompt, tokenizer, options
        )
        # the result starts with the forced prefix: CTranslate2 returns everything after <|startoftranscript|>
        tokens = [t for t in result.sequences_ids[0] if t < tokenizer.eot]
        return result, float(avg_logprob), tokens, tokenizer.decode(tokens).strip()

    def _align(self, tokenizer: Tokenizer, tokens: list[int], encoded: Any, frames: int) -> tuple[Word, ...]:
        alignment = self._model.find_alignment(tokenizer, [tokens], encoded, frames)[0]
        merge_punctuations(alignment, _PREPEND, _APPEND)
        return tuple(
            Word(
                text=str(a["word"]).strip(),
                t_start=float(a["start"]),
                t_end=float(a["end"]),
                probability=float(a["probability"]),
            )
            for a in alignment
            if any(ch.isalnum() for ch in str(a["word"]))  # a lone "." is not a word
        )
