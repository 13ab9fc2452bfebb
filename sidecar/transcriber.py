"""One channel's streaming recogniser: frames in, ``transcript.*`` events out.

The thin async shell around pure cores: ``SpeechSegmenter`` (VAD state machine) decides where
speech starts and ends; ``LocalAgreement`` decides which words are stable; the decodes run
in the engine's worker threads. Partials are decoded every ``partial_interval_s`` of speech
(skipped, and counted, while the channel's input backlog says we are behind: the next one
catches up); finals are never skipped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import TypeVar

import numpy as np

from sidecar.asr import DecodeRequest, Hypothesis
from sidecar.audio import PIPELINE_RATE, Float32, to_float
from sidecar.commit import LocalAgreement, join_words
from sidecar.frames import AudioFrame
from sidecar.kernel.events import Channel, Event, Prosody, TranscriptFinal, TranscriptPartial, Word
from sidecar.kernel.settings import StreamSettings
from sidecar.prosody import measure_prosody
from sidecar.vad import FRAME_S, FRAME_SAMPLES, SpeechEnd, SpeechSegmenter, SpeechStart, VadChannel, VadConfig

T = TypeVar("T")
RunBlocking = Callable[[Callable[[], T]], Awaitable[T]]
Emit = Callable[[Event], Awaitable[object]]
Decode = Callable[[DecodeRequest], Awaitable[Hypothesis]]

_MAX_BACKLOG_S = 0.5  # skip a partial decode while more input than this waits
_MAX_GAP_S = 60.0  # a longer hole in a live stream is not filled with silence
_MIN_SPLIT_S = 3.0  # a long segment is split at a committed word at least this far in
_CONTEXT_GAP_S = 0.3  # silence put between context segments when they are joined
_MAX_DECODE_S = 28.0  # context + segment, inside Whisper's 30 s window
_SPECULATE_AFTER_S = 0.15  # a pause this long starts decoding the final while the hangover runs


@dataclass(slots=True)
class _Context:
    """The channel's last finalised speech, audio and words, decoded again in front of the next
    final with its words forced as the prefix: each final is heard with the context a batch
    decoder would give it, and only the new words cost decoding."""

    max_s: float
    pieces: list[tuple[Float32, tuple[Word, ...]]] = field(default_factory=list)  # word times local

    def add(self, audio: Float32, words: tuple[Word, ...]) -> None:
        if self.max_s <= 0 or not words:
            return
        self.pieces.append((audio, words))
        while sum(a.size for a, _ in self.pieces) > self.max_s * PIPELINE_RATE and len(self.pieces) > 1:
            self.pieces.pop(0)
        if self.pieces[0][0].size > self.max_s * PIPELINE_RATE:  # one long segment: too much context
            self.pieces.clear()

    def select(self, budget_s: float) -> tuple[Float32, tuple[Word, ...]]:
        """The newest pieces that fit in ``budget_s``, joined: (audio, words with local times)."""
        gap = np.zeros(round(_CONTEXT_GAP_S * PIPELINE_RATE), dtype=np.float32)
        chosen: list[tuple[Float32, tuple[Word, ...]]] = []
        total = 0
        for audio, words in reversed(self.pieces):
            total += audio.size + gap.size
            if total > budget_s * PIPELINE_RATE:
                break
            chosen.insert(0, (audio, words))
        joined = np.concatenate([part for a, _ in chosen for part in (a, gap)] or [gap[:0]])
        return joined, tuple(w for _, ws in chosen for w in ws)


@dataclass(frozen=True, slots=True)
class _Decoded:
    segment: Float32  # the segment's own audio (what becomes context for the next final)
    hyp: Hypothesis
    prosody: Prosody | None
    offset: float  # where the segment starts in the decoded audio (after the context)


@dataclass(slots=True)
class _Draft:
    """A final decoded as soon as the speaker paused, used if the pause becomes the segment's end:
    the decode overlaps the VAD hangover instead of following it."""

    start: float
    task: asyncio.Task[_Decoded | None]

    def discard(self) -> None:
        # the worker thread cannot be interrupted; the result is simply not used
        self.task.add_done_callback(lambda t: t.cancelled() or t.exception())


class CallLanguage:
    """The language a call is decoded in: fixed (``en``, ``zh``) or detected once (``auto``)."""

    def __init__(self, requested: str) -> None:
        self.requested = requested
        self.detected: str | None = None

    @property
    def decode_as(self) -> str | None:
        return self.requested if self.requested != "auto" else self.detected

    @property
    def label(self) -> str:
        return self.decode_as or "und"


@dataclass(slots=True)
class ChannelStats:
    audio_s: float = 0.0
    segments: int = 0
    partials: int = 0
    finals: int = 0
    skipped_partials: int = 0
    decode_s: list[float] = field(default_factory=list)


class ChannelTranscriber:
    def __init__(
        self,
        *,
        call_id: str,
        channel: Channel,
        vad: VadChannel,
        decode: Decode,
        run_blocking: RunBlocking[Prosody],
        emit: Emit,
        language: CallLanguage,
        settings: StreamSettings,
    ) -> None:
        self.call_id = call_id
        self.channel = channel
        self.stats = ChannelStats()
        self._vad = vad
        self._decode_request = decode
        self._run = run_blocking
        self._emit = emit
        self._language = language
        self._settings = settings
        self._segmenter = SpeechSegmenter(VadConfig(min_silence_s=settings.vad_min_silence_s))
        self._agreement = LocalAgreement()
        self._origin: float | None = None  # call time of this channel's first sample
        self._pending = np.zeros(0, dtype=np.int16)  # samples short of a VAD frame
        self._frames_seen = 0
        self._buffer: list[Float32] = []  # VAD frames kept: the open segment, or pre-roll
        self._buffer_t0 = 0.0
        self._segment = 0
        self._seg_start = 0.0
        self._since_decode = 0.0
        self._decoded_in_segment = False
        self._last_partial = ""
        self._context = _Context(settings.context_s)  # its length set by language as finals come
        self._draft: _Draft | None = None

    # ---- input -------------------------------------------------------------------------

    @property
    def now(self) -> float:
        """Call time at the end of the audio this channel has analysed."""
        return (self._origin or 0.0) + self._frames_seen * FRAME_S

    async def feed(self, frame: AudioFrame, backlog_s: float = 0.0) -> None:
        if self._origin is None:
            self._origin = frame.t0
            self._buffer_t0 = frame.t0
        expected = self.now + self._pending.size / PIPELINE_RATE
        gap = frame.t0 - expected
        parts = [self._pending]
        if 0.005 < gap <= _MAX_GAP_S:  # frames lost upstream: keep call time right
            parts.append(np.zeros(round(gap * PIPELINE_RATE), dtype=np.int16))
        parts.append(frame.pcm)
        samples = np.concatenate(parts)
        self.stats.audio_s += frame.pcm.size / PIPELINE_RATE
        usable = samples.size - samples.size % FRAME_SAMPLES
        self._pending = samples[usable:]
        chunk = [to_float(samples[i : i + FRAME_SAMPLES]) for i in range(0, usable, FRAME_SAMPLES)]
        if not chunk:
            return
        # the VAD state depends on the audio alone: every frame's probability first (batched with
        # the other channels' frames, off the loop), then the frames in order
        for vad_frame, prob in zip(chunk, await self._vad.probabilities(chunk), strict=True):
            await self._on_frame(vad_frame, prob, backlog_s)

    async def finish(self) -> None:
        """End of input: finalise an open segment."""
        end = self._segmenter.flush()
        if end is not None:
            await self._close_segment(self._at(end.t_end), end.keep)

    # ---- per VAD frame -----------------------------------------------------------------

    def _at(self, segmenter_t: float) -> float:
        return (self._origin or 0.0) + segmenter_t

    async def _on_frame(self, frame: Float32, prob: float, backlog_s: float) -> None:
        self._buffer.append(frame)
        self._frames_seen += 1
        transition = self._segmenter.feed(prob)
        if isinstance(transition, SpeechStart):
            self._open_segment(self._at(transition.t))
        elif isinstance(transition, SpeechEnd):
            await self._close_segment(self._at(transition.t_end), transition.keep)
        elif self._segmenter.in_speech:
            self._since_decode += FRAME_S
            pause = self._segmenter.silence_s
            if pause == 0.0:  # speech (resumed): a draft final is stale
                self._discard_draft()
            if self.now - self._seg_start >= self._settings.max_segment_s:
                await self._split_segment()
            elif pause >= _SPECULATE_AFTER_S:
                if self._draft is None:
                    start = self._seg_start
                    self._draft = _Draft(start, asyncio.create_task(self._decode_final(start, self.now)))
            elif pause == 0.0 and self._partial_due():
                if backlog_s > _MAX_BACKLOG_S:
                    self.stats.skipped_partials += 1
                else:
                    await self._partial()
        else:
            self._drop_before(self.now - 0.5)  # keep a little pre-roll

    def _context_s(self) -> float:
        s = self._settings
        return s.context_zh_s if self._language.label == "zh" else s.context_s

    def _partial_due(self) -> bool:
        s = self._settings
        interval = s.partial_interval_zh_s if self._language.label == "zh" else s.partial_interval_s
        wait = interval if self._decoded_in_segment else s.first_partial_s
        return self._since_decode >= wait

    # ---- segments ----------------------------------------------------------------------

    def _open_segment(self, t: float) -> None:
        self._segment += 1
        self.stats.segments += 1
        self._seg_start = max(t, self._buffer_t0)
        self._drop_before(self._seg_start)
        self._since_decode = 0.0
        self._decoded_in_segment = False
        self._last_partial = ""
        self._agreement.reset()

    async def _partial(self) -> None:
        end = self.now
        # the committed words are forced, not decoded again: only the unstable tail costs decoding
        prefix = join_words(self._agreement.committed, self._language.label)
        hyp, _ = await self._decode(self._audio(self._seg_start, end), with_prosody=False, prefix=prefix)
        self._since_decode = 0.0
        self._decoded_in_segment = True
        agreement = self._agreement.insert(self._shift(hyp.words, self._seg_start))
        words = agreement.stable + agreement.tentative
        text = join_words(words, hyp.lang)
        if not text or text == self._last_partial:
            return
        self._last_partial = text
        self.stats.partials += 1
        payload = TranscriptPartial(
            text=text,
            stable_text=join_words(agreement.stable, hyp.lang),
            words=words,
            lang=hyp.lang,
            segment=self._segment,
        )
        await self._emit(
            Event("transcript.partial", self.call_id, self.channel, self._seg_start, end, payload)
        )

    async def _close_segment(self, t_end: float, keep: bool) -> None:
        t_end = max(t_end, self._seg_start)
        if keep:
            await self._final(self._seg_start, t_end)
        else:
            self._discard_draft()
            if self._last_partial:  # a partial was shown: close it, empty
                await self._emit_final(self._seg_start, t_end, (), self._language.label, None)
        self._drop_before(t_end)

    async def _split_segment(self) -> None:
        """Speech longer than ``max_segment_s``: finalise up to the last committed word."""
        committed = self._agreement.committed
        cut = self.now
        if committed and committed[-1].t_end - self._seg_start >= _MIN_SPLIT_S:
            cut = committed[-1].t_end
        self._discard_draft()
        await self._final(self._seg_start, cut)
        self._segmenter.cut(cut - (self._origin or 0.0))
        self._open_segment(cut)
        self._since_decode = self.now - cut

    def _discard_draft(self) -> None:
        if self._draft is not None:
            self._draft.discard()
            self._draft = None

    async def _decode_final(self, start: float, end: float) -> _Decoded | None:
        """The segment decoded after the channel's context; None when it is too short to decode."""
        segment = self._audio(start, end)
        if segment.size < FRAME_SAMPLES:
            return None
        # Whisper sees at most 30 s: the context gets what the segment leaves
        context, context_words = self._context.select(_MAX_DECODE_S - segment.size / PIPELINE_RATE)
        prefix = join_words(context_words, self._language.label) or None
        offset = context.size / PIPELINE_RATE
        audio = np.concatenate([context, segment])
        hyp, prosody = await self._decode(audio, with_prosody=True, prefix=prefix, segment_start=offset)
        return _Decoded(segment, hyp, prosody, offset)

    async def _final(self, start: float, end: float) -> None:
        draft, self._draft = self._draft, None
        if draft is not None and draft.start == start:
            decoded = await draft.task
        else:
            if draft is not None:
                draft.discard()
            decoded = await self._decode_final(start, end)
        if decoded is None:
            return
        hyp, prosody, offset = decoded.hyp, decoded.prosody, decoded.offset
        if self._language.requested == "auto" and self._language.detected is None and hyp.words:
            self._language.detected = hyp.lang
        local = tuple(w for w in hyp.words if (w.t_start + w.t_end) / 2 >= offset)
        local = self._shift(local, -offset)
        if local:
            self._context.max_s = self._context_s()  # the call's language may have been detected since
            self._context.add(decoded.segment, local)
        words = self._shift(local, start)
        if not words and not self._last_partial:
            return  # noise the VAD took for speech, and nothing was shown for it
        if prosody is not None and words:
            prosody = replace(prosody, words_per_s=len(words) / max(prosody.duration_s, 1e-3))
        await self._emit_final(start, end, words, hyp.lang, prosody)

    async def _emit_final(
        self, start: float, end: float, words: tuple[Word, ...], lang: str, prosody: Prosody | None
    ) -> None:
        self.stats.finals += 1
        payload = TranscriptFinal(join_words(words, lang), words, lang, self._segment, prosody)
        await self._emit(Event("transcript.final", self.call_id, self.channel, start, end, payload))
        self._last_partial = ""

    async def _decode(
        self, audio: Float32, with_prosody: bool, prefix: str | None = None, segment_start: float = 0.0
    ) -> tuple[Hypothesis, Prosody | None]:
        """Decode off the loop (batched with other calls' decodes when the engine batches);
        prosody (for finals) covers the audio from ``segment_start``, in a worker thread too."""
        hyp = await self._decode_request(DecodeRequest(audio, self._language.decode_as, None, prefix))
        self.stats.decode_s.append(hyp.decode_s)
        if not with_prosody:
            return hyp, None
        segment = audio[round(segment_start * PIPELINE_RATE) :]
        return hyp, await self._run(lambda: measure_prosody(segment))

    # ---- audio buffer ------------------------------------------------------------------

    @staticmethod
    def _shift(words: tuple[Word, ...], offset: float) -> tuple[Word, ...]:
        return tuple(replace(w, t_start=w.t_start + offset, t_end=w.t_end + offset) for w in words)

    def _drop_before(self, t: float) -> None:
        drop = int((t - self._buffer_t0) / FRAME_S)
        if drop > 0:
            del self._buffer[:drop]
            self._buffer_t0 += drop * FRAME_S

    def _audio(self, start: float, end: float) -> Float32:
        if not self._buffer:
            return np.zeros(0, dtype=np.float32)
        joined = np.concatenate(self._buffer)
        lo = max(0, round((start - self._buffer_t0) * PIPELINE_RATE))
        hi = max(lo, round((end - self._buffer_t0) * PIPELINE_RATE))
        return joined[lo:hi]
