import io

import pytest

from sidecar.console import print_readable, render
from sidecar.kernel.events import CallEnded, CallStarted, Event, TranscriptFinal, TranscriptPartial, Word

pytestmark = pytest.mark.unit


def test_every_event_type_renders_readably():
    started = Event(
        "call.started", "c1", None, 0, 0, CallStarted("sample.wav", "en", ("agent", "customer"), True)
    )
    partial = Event(
        "transcript.partial", "c1", "agent", 0, 1.5, TranscriptPartial("how can", "how", (), "en", 1)
    )
    final = Event(
        "transcript.final",
        "c1",
        "customer",
        2,
        3.25,
        TranscriptFinal("A refund, please.", (Word("A", 2, 2.1),), "en", 1),
    )
    ended = Event("call.ended", "c1", None, 0, 20, CallEnded("completed", 20.0, {"frames_dropped": 0.0}))
    lines = [render(e) for e in (started, partial, final, ended)]
    assert lines[0] == "[   0.00s] call c1 started: sample.wav (lang en)"
    assert lines[1] == "[   1.50s] AGENT    … how can"
    assert lines[2] == "[   3.25s] CUSTOMER A refund, please."
    assert lines[3] == "[  20.00s] call ended (completed) after 20.0 s, 0 frames dropped"
    out = io.StringIO()
    print_readable(final, out)
    assert out.getvalue() == lines[2] + "\n"
