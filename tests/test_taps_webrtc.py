"""The WebRTC tap (``/v1/taps/webrtc``) end to end, with headless Debian Chromium as the peers.

The call's peer is a test page (``tests/fixtures/webrtc/call.html``, served by a test-only HTTP
server on 127.0.0.1): Chromium's fake microphone plays a stereo WAV (left: the agent, right: the
customer), WebAudio splits it into two tracks, and the page sends them as two audio m-lines with
the ``channels`` map by track id. Signalling is this test's Python: the page makes the offer, the
test posts it with the integrator's token and hands the answer back (no CORS involved). A second
Chromium (its fake microphone: a supervisor's voice) listens in and barges in.

Every ICE candidate and selected pair stays on 127.0.0.1: the service runs with
``ASSIST_ICE_ADDRESSES=127.0.0.1`` (set below, before the tap first serves), and the test asserts
the answers' candidates and both ends of each selected pair.
"""

from __future__ import annotations

import functools
import http.server
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aioice.ice
import httpx
import numpy as np
import pytest

from sidecar.audio import resample
from sidecar.kernel.errors import ConfigError
from sidecar.taps.ice import IceSettings, candidate_addresses, filter_candidates, restrict_ice
from sidecar.taps.webrtc import MAX_BUFFER_S, OfferedAudio, OfferError, PacedAudioTrack, map_channels
from tests.conftest import dialogue, espeak, silence, write_wav
from tests.service_helpers import LiveService
from tests.tap_helpers import CallFollower, finals_text, word_overlap, words

# the tap reads this when it first serves (a collected module is imported before any test runs)
os.environ["ASSIST_ICE_ADDRESSES"] = "127.0.0.1"

pytestmark = pytest.mark.model
CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).parent.parent
PAGES = Path(__file__).parent / "fixtures" / "webrtc"
CLIENT = ROOT / "examples" / "taps" / "webrtc_client.py"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
    "--allow-loopback-in-peer-connection", "--autoplay-policy=no-user-gesture-required",
    "--disable-features=WebRtcHideLocalIpsWithMdns",  # real host candidates, never mDNS names
]  # fmt: skip
CUSTOMER_1 = "Hello, I was charged twice for my order last week."
AGENT_ABUSE = "Shut up, you stupid idiot."
CUSTOMER_2 = "That is rude. I want to speak to your manager."
AGENT_ONLY = {"shut", "stupid", "idiot"}
CUSTOMER_ONLY = {"charged", "twice", "order", "manager", "rude"}
SUPERVISOR_LINE = "This is your supervisor speaking, I am joining the call now."
ENDED_S = 120.0  # the call's end after its last audio: ASR drains on a shared 2-core machine
LOUD = 0.01  # RMS (full scale 1.0) a meter must reach for "audio arrived"
QUIET = 0.003  # RMS below which a meter heard silence


def fatal_abuse(m: dict[str, Any]) -> bool:
    payload = m["data"].get("payload") or {}
    return m["event"] == "alert" and payload.get("severity") == "fatal" and payload.get("category") == "abuse"


# -- fixtures ----------------------------------------------------------------------------------


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def pages() -> Iterator[str]:
    """The test pages, from a test-only static server on 127.0.0.1."""
    handler = functools.partial(_QuietHandler, directory=str(PAGES))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="webrtc-pages", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def call_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The call as a stereo 48 kHz WAV (left: agent, right: customer), 1.5 s of silence first
    (the fake microphone starts before the connection does)."""
    agent, customer, _ = dialogue(
        [("customer", CUSTOMER_1), ("agent", AGENT_ABUSE), ("customer", CUSTOMER_2)]
    )
    lead, tail = silence(1.5), silence(1.0)
    left = resample(np.concatenate([lead, agent, tail]), 16_000, 48_000)
    right = resample(np.concatenate([lead, customer, tail]), 16_000, 48_000)
    return write_wav(tmp_path_factory.mktemp("webrtc") / "call.wav", [left, right], 48_000)


@pytest.fixture(scope="module")
def supervisor_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    voice = espeak(SUPERVISOR_LINE, "en-us+m3")
    return write_wav(tmp_path_factory.mktemp("webrtc") / "supervisor.wav", [resample(voice, 16_000, 48_000)],
                     48_000)  # fmt: skip


@pytest.fixture
def playwright() -> Iterator[Any]:
    """Per test: the sync API runs an event loop in this thread while it is open (async tests here)."""
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail("Debian chromium is not installed (apt-get install chromium)")
        pytest.skip("Debian chromium is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@contextmanager
def chromium(playwright: Any, wav: Path, loop: bool = False) -> Iterator[Any]:
    """A Chromium whose fake microphone plays ``wav`` (once, unless ``loop``)."""
    fake = f"--use-file-for-fake-audio-capture={wav}{'' if loop else '%noloop'}"
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=[*FLAGS, fake], headless=True)
    try:
        yield browser
    finally:
        browser.close()


def open_page(browser: Any, url: str) -> Any:
    page = browser.new_context().new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors
    page.goto(url)
    return page


def post(service: LiveService, role: str | None, path: str, body: dict[str, Any]) -> httpx.Response:
    with service.client(role) as c:
        return c.post(f"/v1/taps/webrtc{path}", json=body)


def connect_call(service: LiveService, page: Any, **extra: Any) -> str:
    """The call page's offer → the tap → its answer back to the page; the call's id."""
    offer = page.evaluate("callPeer.offer()")
    assert offer["micChannels"] == 2, "Chromium's fake microphone is not stereo"
    r = post(service, "integrator", "/offer",
             {"sdp": offer["sdp"], "type": "offer", "channels": offer["channels"], **extra})  # fmt: skip
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["type"] == "answer"
    assert_loopback(answer["sdp"], page.evaluate("(s) => callPeer.answer(s)", answer["sdp"]))
    return str(answer["call_id"])


def assert_loopback(answer_sdp: str, pair: dict[str, Any]) -> None:
    addresses = candidate_addresses(answer_sdp)
    assert addresses, "the answer carries no ICE candidate"
    assert set(addresses) == {"127.0.0.1"}, f"answer candidates beyond loopback: {addresses}"
    assert pair["local"] == pair["remote"] == "127.0.0.1", f"selected ICE pair {pair}"


def wait_until(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s} s"
        time.sleep(0.1)


# -- tests -------------------------------------------------------------------------------------


@pytest.mark.browser
def test_a_browser_call_is_transcribed_per_channel_with_an_abuse_alert(
    service: LiveService, playwright: Any, pages: str, call_wav: Path
) -> None:
    with chromium(playwright, call_wav) as browser:
        page = open_page(browser, f"{pages}/call.html")
        started = time.monotonic()
        call_id = connect_call(service, page, agent_id="alice", queue="tests")
        follower = CallFollower(service.base, service.token("supervisor"), call_id)
        follower.wait_for(fatal_abuse, 60)
        last = set(words(CUSTOMER_2)) - {"i", "to", "your", "is", "that", "want"}
        follower.wait_for(lambda m: m["event"] == "transcript.final" and m["data"]["channel"] == "customer"
                          and len(last & set(words(m["data"]["payload"]["text"]))) >= 2, 60)  # fmt: skip
        page.evaluate("callPeer.hangUp()")  # the softphone hangs up: the call ends
        messages = follower.wait_ended(ENDED_S)
        elapsed = time.monotonic() - started
        assert not page.errors, page.errors
    assert messages[0]["event"] == "call.started"
    assert messages[0]["data"]["payload"]["source"] == "webrtc"
    assert messages[-1]["event"] == "call.ended"
    assert messages[-1]["data"]["payload"]["reason"] == "completed"
    agent, customer = finals_text(messages, "agent"), finals_text(messages, "customer")
    assert word_overlap(AGENT_ABUSE, agent) >= 0.6, f"agent finals {agent!r}"
    assert word_overlap(CUSTOMER_1 + " " + CUSTOMER_2, customer) >= 0.6, f"customer finals {customer!r}"
    assert not AGENT_ONLY & set(words(customer)), f"agent words on the customer channel: {customer!r}"
    assert not CUSTOMER_ONLY & set(words(agent)), f"customer words on the agent channel: {agent!r}"
    alert = next(m for m in messages if fatal_abuse(m))
    assert alert["data"]["channel"] == "agent"
    print(f"webrtc call {call_id}: {elapsed:.1f} s from offer to call.ended")


@pytest.mark.browser
def test_a_supervisor_listens_in_then_barges_in_and_the_agent_hears_them(
    service: LiveService, playwright: Any, pages: str, call_wav: Path, supervisor_wav: Path
) -> None:
    with (
        chromium(playwright, call_wav, loop=True) as call_browser,
        chromium(playwright, supervisor_wav, loop=True) as supervisor_browser,
    ):
        call = open_page(call_browser, f"{pages}/call.html")
        call_id = connect_call(service, call, agent_id="alice", queue="tests")
        follower = CallFollower(service.base, service.token("supervisor"), call_id)
        supervisor = open_page(supervisor_browser, f"{pages}/supervisor.html")

        # listen-in: a receive-only offer; the call's audio arrives on the supervisor's side
        offer = supervisor.evaluate("supervisorPeer.offer('listen')")
        r = post(service, "supervisor", f"/{call_id}/listen", {"sdp": offer, "type": "offer"})
        assert r.status_code == 200, r.text
        assert "a=sendonly" in r.json()["sdp"]  # we send, we take nothing
        assert_loopback(r.json()["sdp"], supervisor.evaluate("(s) => supervisorPeer.answer('listen', s)",
                                                             r.json()["sdp"]))  # fmt: skip
        wait_until(lambda: supervisor.evaluate("rtcTest.peak(supervisorPeer.listenMeter)") > LOUD, 10,
                   "the call's audio at the listening supervisor")  # fmt: skip

        # before the barge, the agent hears silence from the tap
        heard_before = call.evaluate("rtcTest.peak(callPeer.agentMeter)")
        levels_before = call.evaluate("callPeer.agentMeter.levels.length")
        assert levels_before >= 20, "the agent's meter ran for less than a second"
        assert heard_before < QUIET, f"the agent heard {heard_before:.4f} RMS before any barge"

        # barge-in: the supervisor's microphone reaches the agent's peer
        offer = supervisor.evaluate("supervisorPeer.offer('barge')")
        r = post(service, "supervisor", f"/{call_id}/barge",
                 {"sdp": offer, "type": "offer", "reason": "test barge"})  # fmt: skip
        assert r.status_code == 200, r.text
        assert_loopback(r.json()["sdp"], supervisor.evaluate("(s) => supervisorPeer.answer('barge', s)",
                                                             r.json()["sdp"]))  # fmt: skip
        wait_until(lambda: call.evaluate(f"rtcTest.peak(callPeer.agentMeter, {levels_before})") > LOUD, 10,
                   "the supervisor's voice at the agent")  # fmt: skip
        barge = follower.wait_for(lambda m: m["event"] == "barge", 10)
        assert barge["data"]["payload"]["author"] == "sam"
        assert barge["data"]["payload"]["reason"] == "test barge"

        heard_during = call.evaluate(f"rtcTest.peak(callPeer.agentMeter, {levels_before})")

        # a second barge while one is on: refused
        again = post(service, "supervisor", f"/{call_id}/barge", {"sdp": offer, "type": "offer"})
        assert again.status_code == 409, again.text

        # the barge ends: the agent hears silence from the tap again
        with service.client("supervisor") as c:
            assert c.delete(f"/v1/taps/webrtc/{call_id}/barge").status_code == 204
        time.sleep(1.0)  # what was on its way when the barge ended
        levels_after = call.evaluate("callPeer.agentMeter.levels.length")
        time.sleep(1.5)
        heard_after = call.evaluate(f"rtcTest.peak(callPeer.agentMeter, {levels_after})")
        assert heard_after < QUIET, f"the agent still hears {heard_after:.4f} RMS after the barge ended"
        listen_peak = supervisor.evaluate("rtcTest.peak(supervisorPeer.listenMeter)")
        print(f"RMS: listen-in {listen_peak:.4f}; agent before the barge {heard_before:.5f}, "
              f"during {heard_during:.4f}, after {heard_after:.5f}")  # fmt: skip

        # the integrator ends the call: every peer connection of the call closes with it
        with service.client("integrator") as c:
            assert c.delete(f"/v1/taps/webrtc/{call_id}").status_code == 204
        messages = follower.wait_ended(ENDED_S)
        assert messages[-1]["data"]["payload"]["reason"] == "completed"
        wait_until(lambda: supervisor.evaluate("supervisorPeer.pcs.listen.connectionState") != "connected", 10,
                   "the listen-in's end")  # fmt: skip
        assert not call.errors, call.errors
        assert not supervisor.errors, supervisor.errors
    heard = " ".join(m["data"]["payload"]["text"] for m in messages if m["event"] == "transcript.final")
    assert "supervisor" not in words(heard), "the barging supervisor's voice went to the call's ASR"


def run_client(service: LiveService, wav: Path, *extra: str) -> subprocess.Popen[str]:
    """``examples/taps/webrtc_client.py`` on ``wav``, its ICE on loopback; prints the call id."""
    cmd = [sys.executable, str(CLIENT), "--url", service.base, "--token", service.token("integrator"),
           "--ice-address", "127.0.0.1", "--agent-id", "alice", *extra, str(wav)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def call_id_of(client: subprocess.Popen[str]) -> str:
    assert client.stdout is not None
    line = client.stdout.readline().strip()
    assert line, f"the example client printed no call id: {client.stderr.read() if client.stderr else ''}"
    return line


@pytest.fixture(scope="module")
def call_wav_16k(tmp_path_factory: pytest.TempPathFactory) -> Path:
    agent, customer, _ = dialogue(
        [("customer", CUSTOMER_1), ("agent", AGENT_ABUSE), ("customer", CUSTOMER_2)]
    )
    return write_wav(tmp_path_factory.mktemp("webrtc") / "call-16k.wav", [agent, customer], 16_000)


def test_the_example_client_streams_a_stereo_wav_as_a_call(service: LiveService, call_wav_16k: Path) -> None:
    client = run_client(service, call_wav_16k, "--timeout", "60")
    try:
        call_id = call_id_of(client)
        follower = CallFollower(service.base, service.token("supervisor"), call_id)
        assert client.wait(timeout=60) == 0, client.stderr.read() if client.stderr else ""
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    messages = follower.wait_ended(ENDED_S)
    assert messages[-1]["data"]["payload"]["reason"] == "completed"
    agent, customer = finals_text(messages, "agent"), finals_text(messages, "customer")
    assert word_overlap(AGENT_ABUSE, agent) >= 0.6, f"agent finals {agent!r}"
    assert word_overlap(CUSTOMER_1 + " " + CUSTOMER_2, customer) >= 0.6, f"customer finals {customer!r}"
    assert not AGENT_ONLY & set(words(customer)), f"agent words on the customer channel: {customer!r}"
    assert any(fatal_abuse(m) for m in messages)


def test_a_client_that_vanishes_mid_call_is_dropped(service: LiveService, call_wav_16k: Path) -> None:
    """SIGKILL: no DTLS close, no RTCP BYE. ICE consent expires (about 30 s), the call is dropped."""
    client = run_client(service, call_wav_16k, "--timeout", "120")
    try:
        call_id = call_id_of(client)
        follower = CallFollower(service.base, service.token("supervisor"), call_id)
        follower.wait_for(lambda m: m["event"] == "transcript.final", 60)
        client.send_signal(signal.SIGKILL)
        client.wait(timeout=10)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    killed = time.monotonic()
    messages = follower.wait_ended(ENDED_S)
    assert messages[-1]["data"]["payload"]["reason"] == "dropped"
    print(f"a vanished client's call ended {time.monotonic() - killed:.1f} s after the kill")


MINIMAL_AUDIO_SDP = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendrecv\r\n"
    "a=rtpmap:111 opus/48000/2\r\n"
)  # no ICE credentials, no DTLS fingerprint: aiortc refuses it
DATA_ONLY_SDP = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\n"
    "a=sctp-port:5000\r\n"
)
VIDEO_SDP = MINIMAL_AUDIO_SDP.replace("m=audio 9 UDP/TLS/RTP/SAVPF 111", "m=video 9 UDP/TLS/RTP/SAVPF 96")


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        ({"sdp": "hello", "type": "offer"}, 400, "not an SDP offer"),
        ({"sdp": DATA_ONLY_SDP, "type": "offer"}, 400, "no audio m-line"),
        ({"sdp": VIDEO_SDP, "type": "offer"}, 400, "audio only"),
        ({"sdp": MINIMAL_AUDIO_SDP, "type": "offer"}, 400, "refused"),
        ({"sdp": MINIMAL_AUDIO_SDP, "type": "offer", "channels": {"nope": "agent"}}, 400, "nope"),
        ({"sdp": MINIMAL_AUDIO_SDP, "type": "answer"}, 422, None),
        ({"sdp": MINIMAL_AUDIO_SDP, "type": "offer", "channels": {"0": "caller"}}, 422, None),
    ],
)
def test_a_bad_offer_is_a_clear_4xx(
    service: LiveService, body: dict[str, Any], status: int, detail: str | None
) -> None:
    r = post(service, "integrator", "/offer", body)
    assert r.status_code == status, r.text
    if detail is not None:
        assert detail in r.json()["detail"]


def test_the_tap_needs_an_integrator_and_supervision_needs_a_supervisor(service: LiveService) -> None:
    offer = {"sdp": MINIMAL_AUDIO_SDP, "type": "offer"}
    assert post(service, None, "/offer", offer).status_code == 401
    with httpx.Client(base_url=service.base, headers={"Authorization": "Bearer nope"}) as c:
        assert c.post("/v1/taps/webrtc/offer", json=offer).status_code == 401
    assert post(service, "agent", "/offer", offer).status_code == 403
    assert post(service, "supervisor", "/offer", offer).status_code == 403
    assert post(service, "integrator", "/no-such-call/listen", offer).status_code == 403
    assert post(service, "agent", "/no-such-call/barge", offer).status_code == 403
    assert post(service, "supervisor", "/no-such-call/listen", offer).status_code == 404
    assert post(service, "admin", "/no-such-call/barge", offer).status_code == 404
    with service.client("integrator") as c:
        assert c.delete("/v1/taps/webrtc/no-such-call").status_code == 404
    with service.client("agent") as c:
        assert c.delete("/v1/taps/webrtc/no-such-call").status_code == 403
    # a recorded call has no live audio to listen to, and no WebRTC leg to barge into
    recorded = service.start_call("polite-refund.jsonl", realtime=False)
    for path in (f"/{recorded}/listen", f"/{recorded}/barge"):
        r = post(service, "supervisor", path, offer)
        assert r.status_code == 409, r.text


# -- the pieces, without a network -------------------------------------------------------------


def test_ice_settings_from_the_environment() -> None:
    assert IceSettings.from_env({}) == IceSettings()
    assert IceSettings.from_env({"ASSIST_ICE_ADDRESSES": "all"}).addresses is None
    settings = IceSettings.from_env({"ASSIST_ICE_ADDRESSES": "127.0.0.1, lo",
                                     "ASSIST_ICE_SERVERS": '[{"urls": "stun:stun.example.com:3478"}]'})  # fmt: skip
    assert settings.addresses == ("127.0.0.1", "lo")
    assert "127.0.0.1" in (settings.local_addresses() or [])
    assert set(settings.local_addresses() or []) <= {"127.0.0.1", "::1"}  # lo's addresses, nothing else
    assert [s.urls for s in settings.servers] == ["stun:stun.example.com:3478"]
    for bad in ({"ASSIST_ICE_SERVERS": "stun:x"}, {"ASSIST_ICE_SERVERS": '[{"url": "x"}]'},
                {"ASSIST_ICE_ADDRESSES": "eth0; rm -rf"}):  # fmt: skip
        with pytest.raises(ConfigError):
            IceSettings.from_env(bad)


def test_loopback_only_keeps_only_loopback_candidates() -> None:
    # what the tap applies at its start (the same setting as this module's service: no change)
    restrict_ice(IceSettings(addresses=("127.0.0.1",)))
    assert aioice.ice.get_host_addresses(True, True) == ["127.0.0.1"]
    offer = "\r\n".join([
        "v=0", "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        "a=candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host",
        "a=candidate:2 1 udp 2122260223 192.0.2.2 50001 typ host",
        "a=candidate:3 1 udp 2122260223 fd00::2 50002 typ host",
        "a=candidate:4 1 udp 2122260223 3f6e0b1c-7c1e-4b55-9b7d-2c3a1d0e9f00.local 50003 typ host",
        "a=candidate:5 1 udp 1686052607 203.0.113.9 50004 typ srflx raddr 192.0.2.2 rport 50001",
    ]) + "\r\n"  # fmt: skip
    kept, dropped = filter_candidates(offer, IceSettings(addresses=("127.0.0.1",)))
    assert candidate_addresses(kept) == ["127.0.0.1"]
    assert dropped == 4
    assert filter_candidates(offer, IceSettings()) == (offer, 0)  # no restriction: untouched


def test_channel_mapping_rules() -> None:
    two = [OfferedAudio("0", "t-left", "sendrecv"), OfferedAudio("1", "t-right", "sendonly")]
    assert map_channels(two, None) == {"0": "agent", "1": "customer"}
    assert map_channels(two, {"t-right": "agent", "0": "customer"}) == {"1": "agent", "0": "customer"}
    assert map_channels(two[:1], None) == {"0": "agent"}
    assert map_channels(two[:1], {"t-left": "customer"}) == {"0": "customer"}
    for declared, problem in [({"t-left": "agent"}, "not mapped"), ({"0": "agent", "1": "agent"}, "same channel"),
                              ({"x": "agent", "1": "customer"}, "'x'")]:  # fmt: skip
        with pytest.raises(OfferError, match=problem):
            map_channels(two, declared)  # type: ignore[arg-type]
    with pytest.raises(OfferError, match="sends no audio"):
        map_channels([OfferedAudio("0", None, "recvonly")], None)
    with pytest.raises(OfferError, match="declare"):
        map_channels([*two, OfferedAudio("2", None, "sendrecv")], None)


async def test_an_outgoing_track_keeps_at_most_half_a_second_per_source_and_paces_itself() -> None:
    track = PacedAudioTrack(16_000)
    track.feed("agent", np.full(16_000, 1000, dtype=np.int16))  # 1 s at once: the oldest half goes
    track.feed("customer", np.full(320, 500, dtype=np.int16))  # 20 ms: less than a source's prime
    track.feed("customer", np.full(320, 500, dtype=np.int16))  # 40 ms: it plays
    assert track.dropped_samples == 16_000 - round(16_000 * MAX_BUFFER_S)
    start = time.monotonic()
    frames = [await track.recv() for _ in range(10)]
    assert 0.16 < time.monotonic() - start < 0.5  # 10 frames of 20 ms: the first at once
    assert [f.pts for f in frames] == [i * 320 for i in range(10)]
    assert all(f.sample_rate == 16_000 and f.samples == 320 and f.layout.name == "mono" for f in frames)
    first = frames[0].to_ndarray().reshape(-1)
    assert first.min() == first.max() == 1500  # both sources, mixed
    assert frames[1].to_ndarray().max() == 1500
    assert frames[2].to_ndarray().max() == 1000  # the customer's 40 ms are played out: silence
    track.stop()
