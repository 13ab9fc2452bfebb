"""The local-agreement commit policy, as a pure core, on word lists."""

import pytest

from sidecar.commit import LocalAgreement, common_prefix_len, join_words, normalize
from sidecar.kernel.events import Word

pytestmark = pytest.mark.unit


def words(text: str, start: float = 0.0, step: float = 0.3) -> list[Word]:
    return [Word(w, start + i * step, start + (i + 1) * step) for i, w in enumerate(text.split())]


def texts(ws) -> str:
    return " ".join(w.text for w in ws)


def test_first_hypothesis_commits_nothing():
    la = LocalAgreement()
    a = la.insert(words("thanks for calling"))
    assert a.stable == ()
    assert texts(a.tentative) == "thanks for calling"


@pytest.mark.parametrize(
    ("hypotheses", "stable"),
    [
        (["thanks for", "thanks for calling"], "thanks for"),
        (["thanks four", "thanks for calling"], "thanks"),
        (["hello", "goodbye"], ""),
        (["a b c", "a b c d", "a b c d e"], "a b c d"),
        # committed words never retract; the next word commits when two hypotheses agree on it
        (["the order", "the order is", "the border is late"], "the order is"),
        # case and punctuation do not matter; the newest spelling is kept
        (["Monday.", "monday, and"], "monday,"),
    ],
)
def test_commits_the_longest_common_prefix_of_the_last_two(hypotheses, stable):
    la = LocalAgreement()
    result = None
    for h in hypotheses:
        result = la.insert(words(h))
    assert result is not None
    assert texts(result.stable) == stable


def test_tentative_is_the_newest_hypothesis_after_the_committed_words():
    la = LocalAgreement()
    la.insert(words("i can see the"))
    result = la.insert(words("i can see the chair has"))
    assert texts(result.stable) == "i can see the"
    assert texts(result.tentative) == "chair has"
    assert result.newly_committed == 4


def test_rephrased_committed_words_fall_back_to_time():
    la = LocalAgreement()
    la.insert(words("your zip code"))
    la.insert(words("your zip code please"))  # commits "your zip code" (ends at 0.9 s)
    rephrased = [
        Word("you're", 0.0, 0.3),
        Word("zipcode", 0.3, 0.9),
        Word("please", 0.9, 1.2),
        Word("now", 1.2, 1.5),
    ]
    result = la.insert(rephrased)
    assert texts(result.stable) == "your zip code please"
    assert texts(result.tentative) == "now"


def test_reset_starts_a_new_segment():
    la = LocalAgreement()
    la.insert(words("one two"))
    la.insert(words("one two three"))
    la.reset()
    assert la.committed == ()
    assert la.insert(words("four")).stable == ()


def test_helpers():
    assert normalize("Don't!") == "dont"
    assert normalize("。") == ""
    assert common_prefix_len(words("a b c"), words("A b. d")) == 2
    assert join_words(words("hi there"), "en") == "hi there"
    assert join_words([Word("你", 0, 1), Word("好", 1, 2)], "zh") == "你好"


@pytest.mark.parametrize(
    ("said", "kept"),
    [
        ("can i have your order please can i have your order please", "can i have your order please"),
        ("how can i help how can i help how can i help", "how can i help"),
        ("no no no that is fine", "no no no that is fine"),  # single words repeat in real speech
        ("i know i know", "i know i know"),  # so do short phrases
        ("the card the card ending in four", "the card the card ending in four"),
        ("please hold please hold the line please hold the line", "please hold please hold the line"),
    ],
)
def test_collapse_repeats_cuts_decoding_loops_only(said, kept):
    from sidecar.asr import collapse_repeats

    assert texts(collapse_repeats(tuple(words(said)))) == kept


def test_final_context_keeps_the_newest_speech_that_fits():
    import numpy as np

    from sidecar.transcriber import _Context

    ctx = _Context(max_s=5.0)
    for i, seconds in enumerate((2.0, 2.0, 2.0)):
        ctx.add(np.full(int(seconds * 16000), i, dtype=np.float32), tuple(words(f"piece{i}")))
    assert len(ctx.pieces) == 2  # 6 s of speech does not fit in 5 s: the oldest went
    audio, ws = ctx.select(budget_s=3.0)  # only the newest piece and its gap fit
    assert texts(ws) == "piece2"
    assert audio.size == int(2.3 * 16000)
    assert audio[0] == 2
    audio, ws = ctx.select(budget_s=10.0)
    assert texts(ws) == "piece1 piece2"
    ctx.add(np.zeros(16000 * 6, dtype=np.float32), tuple(words("long")))  # longer than max_s alone
    assert ctx.select(10.0)[1] == ()


def test_an_echo_of_the_prompt_is_dropped():
    from sidecar.asr import strip_prompt_echo

    def chars(text: str) -> tuple[Word, ...]:
        return tuple(Word(ch, i * 0.1, (i + 1) * 0.1) for i, ch in enumerate(text))

    prompt = "以下是普通话的句子。"
    assert strip_prompt_echo(chars("以下是普通话的句子。"), prompt) == ()
    assert (
        "".join(w.text for w in strip_prompt_echo(chars("以下是普通话的句子。我想退款"), prompt))
        == "我想退款"
    )
    assert "".join(w.text for w in strip_prompt_echo(chars("我想退款"), prompt)) == "我想退款"
    assert "".join(w.text for w in strip_prompt_echo(chars("以下"), prompt)) == ""


def test_traditional_characters_come_out_simplified_with_their_times():
    from sidecar.asr import to_simplified

    words = (
        Word("請", 0.0, 0.2),
        Word("幫我", 0.2, 0.5),
        Word("查", 0.5, 0.6),
        Word("頭髮", 0.6, 1.0),
        Word("OK", 1.0, 1.2),
    )
    out = to_simplified(words)
    assert [w.text for w in out] == ["请", "帮我", "查", "头发", "OK"]
    assert [(w.t_start, w.t_end) for w in out] == [(w.t_start, w.t_end) for w in words]
    assert to_simplified(()) == ()
    simplified = (Word("我想", 0.0, 0.4), Word("退款", 0.4, 0.8))
    assert to_simplified(simplified) == simplified
