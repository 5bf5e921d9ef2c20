"""Tests of the local IVS stage stand-in: a subprocess stage, and an aiortc client that acts as
the worker does (events WebSocket with the token subprotocol, POST offer, follow 307 by hand,
set the answer, receive and measure the audio).

Run: python3 -m pytest -q -p no:cacheprovider stage/test_localstage.py   (~31 s; every wait bounded)
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import ssl
import subprocess
import sys
import time
import wave
from pathlib import Path

import aiohttp
import aioice.ice
import jwt
import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

HERE = Path(__file__).resolve().parent
LOCALSTAGE = HERE / "localstage.py"

# The client side lives on loopback too (aioice skips 127.0.0.1 by default), and checks
# consent every ~0.5 s instead of 5 s so a dead peer is noticed within a few seconds.
aioice.ice.get_host_addresses = lambda use_ipv4=True, use_ipv6=False: ["127.0.0.1"]
aioice.ice.CONSENT_INTERVAL = 0.5


# --------------------------------------------------------------------------------------------
# Stage process
# --------------------------------------------------------------------------------------------

class StageProc:
    def __init__(self, tmp: Path, *args: str, config: dict | None = None, name: str = "stage"):
        self.tmp = tmp
        cmd = [sys.executable, str(LOCALSTAGE), "serve", "--port", "0", "-v"]
        if config is not None:
            cfg = tmp / f"{name}.json"
            cfg.write_text(json.dumps(config))
            cmd += ["--config", str(cfg)]
        cmd += list(args)
        self.stderr_path = tmp / f"{name}.stderr"
        self.stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.stderr,
                                     stdin=subprocess.DEVNULL)
        line = self._readline(20)
        assert line.startswith("READY "), f"no READY line: {line!r}\n{self.stderr_path.read_text()}"
        self.port = int(line.split()[1])
        self.scheme = "https" if "--tls-cert" in args else "http"
        self.base = f"{self.scheme}://127.0.0.1:{self.port}"
        self.ws_base = self.base.replace("http", "ws", 1)

    def _readline(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        buf = b""
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.proc.stdout], [], [], 0.1)
            if r:
                ch = os.read(self.proc.stdout.fileno(), 1)
                if not ch:
                    break
                if ch == b"\n":
                    return buf.decode()
                buf += ch
            elif self.proc.poll() is not None:
                break
        return buf.decode()

    def stop(self) -> tuple[int | None, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        rest = self.proc.stdout.read().decode()
        self.stderr.close()
        return self.proc.returncode, rest


def run(coro, timeout: float = 30):
    """Run one async test body with a hard time limit."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def get_json(session: aiohttp.ClientSession, url: str, **kw):
    async with session.get(url, **kw) as r:
        assert r.status == 200
        return await r.json()


async def admin_token(session, stage: StageProc, pid: str, **extra) -> str:
    async with session.post(f"{stage.base}/_admin/token",
                            json={"participantId": pid, **extra}) as r:
        assert r.status == 200
        return (await r.json())["token"]


# --------------------------------------------------------------------------------------------
# Worker-like client
# --------------------------------------------------------------------------------------------

def dtls_handshake_type(data: bytes) -> int | None:
    """Handshake message type of a plaintext DTLS handshake record (epoch 0), else None."""
    if len(data) > 13 and data[0] == 22 and data[3:5] == b"\x00\x00":
        return data[13]
    return None


class Subscriber:
    """One recvonly audio+video peer connection, as the worker opens per participant.
    Sniffs its own ICE transport: DTLS handshake records each way, STUN requests received,
    and the decrypted RTP headers."""

    def __init__(self):
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.audio = self.pc.addTransceiver("audio", direction="recvonly")
        self.pc.addTransceiver("video", direction="recvonly")
        self.dtls_sent: list[int] = []
        self.dtls_received: list[int] = []
        self.dtls_alerts_received = 0  # DTLS alert records, e.g. close_notify
        self.stun_requests_received = 0
        # (pt, marker, seq, ts, ssrc, first two payload bytes)
        self.rtp: list[tuple[int, int, int, int, int, bytes]] = []
        self.answer = ""
        self.location = ""
        self.history: list[tuple[int, str]] = []

    def _sniff(self) -> None:
        ice = self.audio.receiver.transport.transport
        dtls = self.audio.receiver.transport
        orig_send, orig_recv = ice._send, ice._recv

        async def send(data: bytes):
            t = dtls_handshake_type(data)
            if t is not None:
                self.dtls_sent.append(t)
            return await orig_send(data)

        async def recv():
            data = await orig_recv()
            t = dtls_handshake_type(data)
            if t is not None:
                self.dtls_received.append(t)
            if data and data[0] == 21:
                self.dtls_alerts_received += 1
            return data

        ice._send, ice._recv = send, recv
        conn = ice._connection
        orig_req = conn.request_received

        def request_received(message, addr, protocol):
            self.stun_requests_received += 1
            return orig_req(message, addr, protocol)

        conn.request_received = request_received
        orig_rtp = dtls._handle_rtp_data

        async def handle_rtp(data: bytes, arrival_time_ms: int):
            if len(data) >= 13:
                self.rtp.append((data[1] & 0x7F, data[1] >> 7, int.from_bytes(data[2:4], "big"),
                                 int.from_bytes(data[4:8], "big"),
                                 int.from_bytes(data[8:12], "big"), rtp_payload(data)[:2]))
            return await orig_rtp(data, arrival_time_ms)

        dtls._handle_rtp_data = handle_rtp

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        self._sniff()
        return self.pc.localDescription.sdp

    async def post(self, session, url: str, token: str, follow: bool = True,
                   ssl_ctx=None) -> aiohttp.ClientResponse:
        """POST the offer; a 307 is followed by hand with Authorization sent again."""
        sdp = self.pc.localDescription.sdp if self.pc.localDescription else await self.offer()
        for _ in range(3):
            async with session.post(url, data=sdp, allow_redirects=False, ssl=ssl_ctx,
                                    headers={"Authorization": f"Bearer {token}",
                                             "Content-Type": "application/sdp"}) as r:
                self.history.append((r.status, url))
                if r.status == 307 and follow:
                    url = str(r.url.join(aiohttp.helpers.URL(r.headers["Location"])))
                    continue
                if r.status == 201:
                    self.answer = await r.text()
                    self.location = str(r.url.join(aiohttp.helpers.URL(r.headers["Location"])))
                    await self.pc.setRemoteDescription(
                        RTCSessionDescription(sdp=self.answer, type="answer"))
                return r
        raise AssertionError(f"redirect loop: {self.history}")

    async def wait_state(self, states: set[str], timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pc.connectionState in states:
                return self.pc.connectionState
            await asyncio.sleep(0.05)
        return self.pc.connectionState

    async def audio_samples(self, seconds: float, timeout: float) -> np.ndarray:
        """Decoded audio (left channel, float) of `seconds`, from the receiver track."""
        track = self.audio.receiver.track
        chunks, n = [], 0
        deadline = time.monotonic() + timeout
        while n < seconds * 48000:
            left = deadline - time.monotonic()
            assert left > 0, f"only {n} samples in {timeout} s"
            frame = await asyncio.wait_for(track.recv(), left)
            assert frame.sample_rate == 48000
            x = frame.to_ndarray().reshape(-1, len(frame.layout.channels))[:, 0]
            chunks.append(x.astype(np.float64) / 32768.0)
            n += x.size
        return np.concatenate(chunks)

    async def close(self) -> None:
        await self.pc.close()


def rtp_payload(data: bytes) -> bytes:
    cc = data[0] & 0x0F
    off = 12 + 4 * cc
    if data[0] & 0x10 and len(data) >= off + 4:
        off += 4 + 4 * int.from_bytes(data[off + 2:off + 4], "big")
    return data[off:] + b"\x00\x00"


def tone_level(x: np.ndarray, hz: float) -> tuple[float, float]:
    """Median amplitude of `hz` over 20 ms windows (each holds whole cycles of a multiple of
    50 Hz) and the share of the signal's power that tone carries."""
    w = x[: x.size // 960 * 960].reshape(-1, 960)
    spec = np.abs(np.fft.rfft(w, axis=1)) * 2 / 960
    k = int(round(hz / 50))
    amp = float(np.median(spec[:, k]))
    share = float(np.median((spec[:, k] ** 2 / 2) / np.maximum((w ** 2).mean(axis=1), 1e-12)))
    return amp, share


def db(a: float, ref: float) -> float:
    return 20 * np.log10(max(a, 1e-9) / ref)


def answer_sections(sdp: str) -> list[list[str]]:
    out: list[list[str]] = []
    for ln in sdp.splitlines():
        if ln.startswith("m="):
            out.append([ln])
        elif out:
            out[-1].append(ln)
    return out


def setup_of(sdp: str) -> set[str]:
    return {ln.split(":", 1)[1] for ln in sdp.splitlines() if ln.startswith("a=setup:")}


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------

MAIN_CONFIG = {
    "stageId": "st-test",
    "participants": [
        {"id": "host", "userId": "host-1", "role": "HOST"},
        {"id": "caller-1", "userId": "caller-1-user", "role": "CALLER"},
        {"id": "caller-3", "userId": "caller-3-user", "role": "CALLER", "publishing": False},
        {"id": "vp", "userId": "worker-vp", "role": "VIRTUAL_PARTICIPANT"},
        {"id": "wavey", "userId": "wavey-user", "role": "CALLER", "wav": "tone1000.wav"},
        {"id": "quiet", "userId": "quiet-user", "role": "CALLER", "tone": 650},
        {"id": "doomed", "userId": "doomed-user", "role": "CALLER", "tone": 850,
         "frameMs": 40, "deadAfterSubscribeS": 2.0},
    ],
}


def write_wav(path: Path, hz: float, amp: float, rate: int = 44100, seconds: float = 2.0):
    n = np.arange(int(rate * seconds))
    x = np.round(amp * 32768 * np.sin(2 * np.pi * hz * n / rate)).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(x.tobytes())


@pytest.fixture(scope="module")
def tmp_mod(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("stage")


@pytest.fixture(scope="module")
def keyfile(tmp_mod) -> Path:
    return tmp_mod / "stage-key.pem"


@pytest.fixture(scope="module")
def main_stage(tmp_mod, keyfile):
    # A 44.1 kHz WAV: the stage resamples it to 48 kHz; 1 s long, loops seamlessly at 1000 Hz.
    write_wav(tmp_mod / "tone1000.wav", 1000, 0.25, seconds=1.0)
    st = StageProc(tmp_mod, "--dtls-role", "passive", "--key-file", str(keyfile),
                   "--send-unknown", config=MAIN_CONFIG, name="main")
    yield st
    code, rest = st.stop()
    assert code == 0 and "STOPPED" in rest, (code, rest)


def cli_token(keyfile: Path, stage: StageProc, pid: str, *extra: str) -> str:
    out = subprocess.run(
        [sys.executable, str(LOCALSTAGE), "token", "--key-file", str(keyfile), "--stage",
         "st-test", "--participant", pid, "--events-url", stage.ws_base, "--whip-url", stage.base,
         *extra], capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.fixture(scope="module")
def worker_token(keyfile, main_stage) -> str:
    return cli_token(keyfile, main_stage, "worker-1", "--user", "worker", "--subscribe",
                     "--attr", "role=VIRTUAL_PARTICIPANT")


# --------------------------------------------------------------------------------------------
# Tokens
# --------------------------------------------------------------------------------------------

def test_token_claims(worker_token, keyfile, main_stage):
    from cryptography.hazmat.primitives import serialization
    key = serialization.load_pem_private_key(keyfile.read_bytes(), None)
    assert jwt.get_unverified_header(worker_token)["alg"] == "ES384"
    c = jwt.decode(worker_token, key.public_key(), algorithms=["ES384"])
    assert c["jti"] == "worker-1" and c["topic"] == "st-test"
    assert c["resource"].startswith("arn:aws:ivs:") and c["resource"].endswith(":stage/st-test")
    assert c["events_url"] == main_stage.ws_base and c["whip_url"] == main_stage.base
    assert c["capabilities"] == {"allow_publish": False, "allow_subscribe": True}
    assert c["attributes"] == {"role": "VIRTUAL_PARTICIPANT"}
    assert c["version"] == "1.0" and c["exp"] > time.time() + 3600


def test_token_cli_errors(tmp_mod):
    out = subprocess.run([sys.executable, str(LOCALSTAGE), "token", "--key-file",
                          str(tmp_mod / "missing.pem"), "--participant", "x", "--port", "1"],
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 2 and "missing.pem" in out.stderr


def test_bad_config_exits_2(tmp_mod):
    cfg = tmp_mod / "bad.json"
    cfg.write_text(json.dumps({"participants": [{"id": "host", "joinAtS": "soon"}]}))
    out = subprocess.run([sys.executable, str(LOCALSTAGE), "--config", str(cfg)],
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 2 and "participants[0].joinAtS" in out.stderr


# --------------------------------------------------------------------------------------------
# Events WebSocket
# --------------------------------------------------------------------------------------------

def test_websocket_auth(main_stage, worker_token):
    async def body():
        async with aiohttp.ClientSession() as s:
            url = f"{main_stage.ws_base}/st-test"
            for protocols, expect in [((), 401), (("not-a-jwt",), 401)]:
                with pytest.raises(aiohttp.WSServerHandshakeError) as ei:
                    await s.ws_connect(url, protocols=protocols)
                assert ei.value.status == expect
            # A token of another stage, signed by the right key, is refused too.
            other = await admin_token(s, main_stage, "x", stageId="st-other")
            with pytest.raises(aiohttp.WSServerHandshakeError) as ei:
                await s.ws_connect(url, protocols=(other,))
            assert ei.value.status == 401
            # Right token, wrong topic in the path.
            with pytest.raises(aiohttp.WSServerHandshakeError) as ei:
                await s.ws_connect(f"{main_stage.ws_base}/st-nope", protocols=(worker_token,))
            assert ei.value.status == 401
            # Expired token.
            expired = await admin_token(s, main_stage, "x", ttlS=-60)
            with pytest.raises(aiohttp.WSServerHandshakeError) as ei:
                await s.ws_connect(url, protocols=(expired,))
            assert ei.value.status == 401
    run(body())


def test_websocket_stage_state_and_ping(main_stage, worker_token):
    async def body():
        async with aiohttp.ClientSession() as s:
            ws = await s.ws_connect(f"{main_stage.ws_base}/st-test", protocols=(worker_token,))
            assert ws.protocol == worker_token  # the server echoes the token subprotocol
            msg = json.loads((await ws.receive(timeout=5)).data)
            assert msg["type"] == "STAGE_STATE"
            payload = msg["payload"]
            assert payload["stageId"] == "st-test"
            by_id = {p["id"]: p for p in payload["participants"]}
            assert set(by_id) == {"host", "caller-1", "caller-3", "vp", "wavey", "quiet", "doomed",
                                  "worker-1"}
            assert by_id["host"] == {"id": "host", "userId": "host-1",
                                     "attributes": {"role": "HOST"}, "isPublishing": True}
            assert by_id["caller-3"]["isPublishing"] is False
            assert by_id["vp"]["attributes"]["role"] == "VIRTUAL_PARTICIPANT"
            # The connected worker sees itself, not publishing, with its token's attributes.
            assert by_id["worker-1"] == {"id": "worker-1", "userId": "worker",
                                         "attributes": {"role": "VIRTUAL_PARTICIPANT"},
                                         "isPublishing": False}
            # --send-unknown: a message of an unknown type follows; clients ignore it.
            unknown = json.loads((await ws.receive(timeout=5)).data)
            assert unknown["type"] not in ("STAGE_STATE", "PONG")
            await ws.send_str(json.dumps({"type": "SOMETHING_ELSE"}))
            await ws.send_str(json.dumps({"type": "PING"}))
            pong = json.loads((await ws.receive(timeout=5)).data)
            assert pong == {"type": "PONG"}
            await ws.close()
            logs = await get_json(s, f"{main_stage.base}/_admin/log")
            kinds = [e["event"] for e in logs]
            assert "ws_connect" in kinds and "ping" in kinds
            assert any(e["event"] == "ws_message" and e["type"] == "SOMETHING_ELSE" for e in logs)
    run(body())


def test_websocket_dropped_by_admin(main_stage, worker_token):
    async def body():
        async with aiohttp.ClientSession() as s:
            ws = await s.ws_connect(f"{main_stage.ws_base}/st-test", protocols=(worker_token,))
            assert json.loads((await ws.receive(timeout=5)).data)["type"] == "STAGE_STATE"
            async with s.post(f"{main_stage.base}/_admin/drop-websockets") as r:
                assert (await r.json())["closed"] == 1
            while True:
                msg = await ws.receive(timeout=5)
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                    break
            assert ws.close_code == 1011
            state = await get_json(s, f"{main_stage.base}/_admin/state")
            assert state["websockets"] == []
            assert "worker-1" not in [p["id"] for p in state["stageState"]["participants"]]
    run(body())


# --------------------------------------------------------------------------------------------
# Subscribe: errors
# --------------------------------------------------------------------------------------------

def test_subscribe_errors(main_stage, worker_token):
    async def body():
        async with aiohttp.ClientSession() as s:
            sub = Subscriber()
            offer = await sub.offer()
            url = f"{main_stage.base}/subscribe"
            hdr = {"Authorization": f"Bearer {worker_token}", "Content-Type": "application/sdp"}

            async def post(pid, data=offer, headers=hdr):
                async with s.post(f"{url}/{pid}", data=data, headers=headers,
                                  allow_redirects=False) as r:
                    return r.status, await r.text()

            assert (await post("host", headers={"Content-Type": "application/sdp"}))[0] == 401
            bad = {**hdr, "Authorization": "Bearer " + worker_token[:-4] + "AAAA"}
            assert (await post("host", headers=bad))[0] == 401
            assert (await post("nobody"))[0] == 404
            assert (await post("caller-3"))[0] == 409
            status, text = await post("host", data="v=0\r\nbroken")
            assert status == 400
            no_bundle = "\r\n".join(ln for ln in offer.splitlines()
                                    if not ln.startswith("a=group:BUNDLE")) + "\r\n"
            status, text = await post("host", data=no_bundle)
            assert status == 400 and "BUNDLE" in text
            passive = offer.replace("a=setup:actpass", "a=setup:passive")
            assert (await post("host", data=passive))[0] == 400
            assert (await post("host", headers={**hdr, "Content-Type": "text/plain"}))[0] == 415
            pub_only = await admin_token(s, main_stage, "pub", subscribe=False, publish=True)
            assert (await post("host", headers={**hdr, "Authorization": f"Bearer {pub_only}"})
                    )[0] == 403
            async with s.delete(f"{url}/host/nope", headers=hdr) as r:
                assert r.status == 404
            await sub.close()
            state = await get_json(s, f"{main_stage.base}/_admin/state")
            assert state["subscriptions"] == []
    run(body())


# --------------------------------------------------------------------------------------------
# Subscribe: media, DTLS role, DELETE
# --------------------------------------------------------------------------------------------

async def subscribe_and_measure(stage: StageProc, token: str, pid: str, hz: float,
                                expect_setup: str, ssl_ctx=None) -> Subscriber:
    async with aiohttp.ClientSession() as s:
        sub = Subscriber()
        r = await sub.post(s, f"{stage.base}/subscribe/{pid}", token, ssl_ctx=ssl_ctx)
        assert r.status == 201, sub.history
        assert r.headers["Content-Type"].startswith("application/sdp")
        # Answer shape: IVS-style candidates in the first m-section only, UDP host 127.0.0.1.
        secs = answer_sections(sub.answer)
        assert secs[0][0].startswith("m=audio")
        cands = [ln for ln in secs[0] if ln.startswith("a=candidate:")]
        assert cands and all(c.split()[2].lower() == "udp" and c.split()[4] == "127.0.0.1"
                             and c.split()[7] == "host" for c in cands)
        assert not any(ln.startswith("a=candidate:") for sec in secs[1:] for ln in sec)
        assert "a=sendonly" in secs[0] and "a=rtcp-mux" in secs[0]
        assert [ln for ln in secs[0] if ln.startswith("a=rtpmap:")][0].endswith("opus/48000/2")
        assert len([ln for ln in secs[0] if ln.startswith("a=rtpmap:")]) == 1
        assert setup_of(sub.answer) == {expect_setup}
        assert await sub.wait_state({"connected", "failed"}, 10) == "connected"
        x = await sub.audio_samples(1.6, timeout=10)
        amp, share = tone_level(x[48000 // 2:], hz)  # skip the first 0.5 s (codec start)
        assert abs(db(amp, 0.25)) < 1.0, f"{pid}: {hz} Hz at {db(amp, 0.25):+.2f} dB re 0.25"
        assert share > 0.95, f"{pid}: {hz} Hz carries only {share:.3f} of the power"
        # Who really sent the ClientHello (1): the DTLS client is the side with a=setup:active.
        if expect_setup == "active":
            assert 1 in sub.dtls_received and 1 not in sub.dtls_sent
            assert sub.audio.receiver.transport._role == "server"
        else:
            assert 1 in sub.dtls_sent and 1 not in sub.dtls_received
            assert 2 in sub.dtls_received  # the stage answered with ServerHello
            assert sub.audio.receiver.transport._role == "client"
        state = await get_json(s, f"{stage.base}/_admin/state", ssl=ssl_ctx)
        mine = [x for x in state["subscriptions"] if x["participantId"] == pid]
        assert mine and mine[-1]["dtlsRole"] == ("client" if expect_setup == "active" else "server")
        return sub


def check_rtp(sub: Subscriber, frame_samples: int) -> None:
    """Opus mono RTP as IVS sends it: one PT, one SSRC, +frame timestamps, marker only first."""
    rtp = sub.rtp
    assert len(rtp) > 20
    assert len({p[0] for p in rtp}) == 1 and len({p[4] for p in rtp}) == 1
    seqs = [p[2] for p in rtp]
    assert all(((b - a) & 0xFFFF) == 1 for a, b in zip(seqs, seqs[1:]))
    ts = [p[3] for p in rtp]
    assert all(((b - a) & 0xFFFFFFFF) == frame_samples for a, b in zip(ts, ts[1:]))
    assert rtp[0][1] == 1 and all(p[1] == 0 for p in rtp[1:])
    for p in rtp[1:]:
        assert p[5][0] & 0x04 == 0, "stereo flag set: expected mono Opus"
        assert opus_packet_ms(p[5]) * 48 == frame_samples


def opus_packet_ms(head: bytes) -> float:
    """Duration of an Opus packet from its TOC byte (and frame count byte), RFC 6716 3.1."""
    config, code = head[0] >> 3, head[0] & 3
    if config < 12:
        frame = (10, 20, 40, 60)[config % 4]
    elif config < 16:
        frame = (10, 20)[config % 2]
    else:
        frame = (2.5, 5, 10, 20)[config % 4]
    count = 1 if code == 0 else 2 if code in (1, 2) else head[1] & 0x3F
    return frame * count


def test_subscribe_host_passive_then_delete(main_stage, worker_token):
    async def body():
        sub = await subscribe_and_measure(main_stage, worker_token, "host", 350, "passive")
        check_rtp(sub, 960)
        async with aiohttp.ClientSession() as s:
            assert sub.location.startswith(f"{main_stage.base}/subscribe/host/")
            async with s.delete(sub.location) as r:
                assert r.status == 401  # DELETE needs the token too
            async with s.delete(sub.location,
                                headers={"Authorization": f"Bearer {worker_token}"}) as r:
                assert r.status == 204
            async with s.delete(sub.location,
                                headers={"Authorization": f"Bearer {worker_token}"}) as r:
                assert r.status == 404
            # The stage closed its side: the client sees the DTLS close and goes to closed/failed.
            st = await sub.wait_state({"closed", "failed"}, 10)
            assert st in ("closed", "failed")
            assert sub.dtls_alerts_received >= 1  # a clean close: close_notify
            state = await get_json(s, f"{main_stage.base}/_admin/state")
            assert not [x for x in state["subscriptions"] if x["participantId"] == "host"]
            ended = [x for x in state["endedSubscriptions"] if x["participantId"] == "host"]
            assert ended and ended[-1]["endReason"] == "DELETE"
            logs = await get_json(s, f"{main_stage.base}/_admin/log")
            assert [e["status"] for e in logs if e["event"] == "delete"][-3:] == [401, 204, 404]
            assert any(e["event"] == "subscribe" and e["status"] == 201
                       and e["participantId"] == "host" for e in logs)
        await sub.close()
    run(body(), 40)


def test_subscribe_wav_participant(main_stage, worker_token):
    async def body():
        sub = await subscribe_and_measure(main_stage, worker_token, "wavey", 1000, "passive")
        await sub.close()
    run(body(), 40)


def test_silent_keeps_ice(main_stage, worker_token):
    async def body():
        sub = await subscribe_and_measure(main_stage, worker_token, "quiet", 650, "passive")
        async with aiohttp.ClientSession() as s:
            async def set_silent(v: bool):
                async with s.post(f"{main_stage.base}/_admin/participant",
                                  json={"id": "quiet", "set": {"silent": v}}) as r:
                    assert r.status == 200
            await set_silent(True)
            await asyncio.sleep(0.3)
            n0 = len(sub.rtp)
            await asyncio.sleep(2.0)  # > 3 consent intervals of the client
            assert len(sub.rtp) - n0 <= 1, "RTP still flowing while silent"
            assert sub.pc.connectionState == "connected"
            assert sub.stun_requests_received > 0  # the full-ICE stage keeps checking consent
            await set_silent(False)
            x = await sub.audio_samples(0.6, timeout=5)
            amp, _ = tone_level(x[-24000:], 650)
            assert abs(db(amp, 0.25)) < 1.0
            # The pause shows as an RTP timestamp jump; the marker flags the new talkspurt.
            jumps = [(a, b) for a, b in zip(sub.rtp, sub.rtp[1:])
                     if ((b[3] - a[3]) & 0xFFFFFFFF) != 960]
            assert len(jumps) == 1 and jumps[0][1][1] == 1
            assert ((jumps[0][1][3] - jumps[0][0][3]) & 0xFFFFFFFF) >= 48000 * 2
        await sub.close()
    run(body(), 40)


def test_dead_peer(main_stage, worker_token):
    async def body():
        sub = await subscribe_and_measure(main_stage, worker_token, "doomed", 850, "passive")
        check_rtp(sub, 1920)
        # deadAfterSubscribeS = 2: RTP stops and consent requests go unanswered, so the client
        # (consent every ~0.5 s here) declares the connection failed; nothing was closed cleanly.
        t0 = time.monotonic()
        assert await sub.wait_state({"failed", "closed"}, 15) in ("failed", "closed")
        assert sub.dtls_alerts_received == 0, "a dead peer sends no close_notify"
        n = len(sub.rtp)
        await asyncio.sleep(0.5)
        assert len(sub.rtp) == n
        async with aiohttp.ClientSession() as s:
            logs = await get_json(s, f"{main_stage.base}/_admin/log")
            dead = [e for e in logs if e["event"] == "subscription_dead"]
            assert dead and dead[-1]["participantId"] == "doomed"
        assert time.monotonic() - t0 < 15
        await sub.close()
    run(body(), 40)


def test_virtual_participant_never_subscribed(main_stage):
    # Checked after the other tests of the module stage: no POST ever named the VP.
    async def body():
        async with aiohttp.ClientSession() as s:
            logs = await get_json(s, f"{main_stage.base}/_admin/log")
            assert not [e for e in logs if e.get("participantId") == "vp"
                        and e["event"] in ("subscribe", "redirect")]
            assert [e for e in logs if e["event"] == "subscribe" and e["status"] == 201]
    run(body())


# --------------------------------------------------------------------------------------------
# Other stage options
# --------------------------------------------------------------------------------------------

def test_active_role_and_redirect(tmp_path):
    st = StageProc(tmp_path, "--dtls-role", "active", "--redirect", "once", "--redirect-relative",
                   "--location-relative", "--srtp-profiles", "AES128_CM_SHA1_80", name="active")
    try:
        async def body():
            async with aiohttp.ClientSession() as s:
                token = await admin_token(s, st, "worker-2")
                # The redirected path wants the Authorization header again.
                first = Subscriber()
                r = await first.post(s, f"{st.base}/subscribe/caller-2", token, follow=False)
                assert r.status == 307
                loc = r.headers["Location"]
                assert loc == "/r/subscribe/caller-2"
                async with s.post(f"{st.base}{loc}", data=first.pc.localDescription.sdp,
                                  headers={"Content-Type": "application/sdp"}) as r2:
                    assert r2.status == 401
                await first.close()
                # --redirect once: the next POST is redirected no more, but the redirected
                # path keeps working; a fresh subscriber follows the 307 path by hand.
                sub = await subscribe_and_measure(st, token, "caller-2", 750, "active")
                check_rtp(sub, 960)
                assert [h[0] for h in sub.history] == [201]
                assert sub.location.startswith(f"{st.base}/subscribe/caller-2/")
                logs = await get_json(s, f"{st.base}/_admin/log")
                assert [e["status"] for e in logs if e["event"] == "redirect"] == [307]
                state = await get_json(s, f"{st.base}/_admin/state")
                assert state["subscriptions"][0]["srtpProfile"] == "SRTP_AES128_CM_SHA1_80"
                await sub.close()
        run(body(), 40)
    finally:
        code, rest = st.stop()
        assert code == 0 and "STOPPED" in rest


def test_redirect_always_followed(tmp_path):
    st = StageProc(tmp_path, "--redirect", "--ice-lite", name="always")
    try:
        async def body():
            async with aiohttp.ClientSession() as s:
                token = await admin_token(s, st, "worker-3")
                sub = await subscribe_and_measure(st, token, "caller-1", 550, "active")
                assert [h[0] for h in sub.history] == [307, 201]
                assert sub.history[1][1] == f"{st.base}/r/subscribe/caller-1"
                assert sub.location.startswith(f"{st.base}/r/subscribe/caller-1/")
                # ICE-lite: announced, and the stage sent no connectivity/consent checks.
                assert "a=ice-lite" in sub.answer.splitlines()
                await asyncio.sleep(1.5)
                assert sub.stun_requests_received == 0
                assert sub.pc.connectionState == "connected"
                async with s.delete(sub.location, headers={"Authorization": f"Bearer {token}"}) as r:
                    assert r.status == 204
                await sub.close()
        run(body(), 40)
    finally:
        code, _ = st.stop()
        assert code == 0


def test_schedule_join_leave_publish(tmp_path):
    cfg = {"stageId": "st-sched", "participants": [
        {"id": "host", "role": "HOST"},
        {"id": "caller-1", "role": "CALLER", "leaveAtS": 3.0},
        {"id": "caller-2", "role": "CALLER", "joinAtS": 1.5},
        {"id": "caller-3", "role": "CALLER", "publishing": False, "publishAtS": 2.0,
         "unpublishAtS": 4.0},
    ]}
    st = StageProc(tmp_path, "--no-self-in-state", config=cfg, name="sched")
    try:
        async def body():
            async with aiohttp.ClientSession() as s:
                token = await admin_token(s, st, "worker-4")
                ws = await s.ws_connect(f"{st.ws_base}/st-sched", protocols=(token,))
                # A subscription to caller-1 is ended by the stage when caller-1 leaves.
                sub = Subscriber()
                r = await sub.post(s, f"{st.base}/subscribe/caller-1", token)
                assert r.status == 201
                snapshots = []
                deadline = time.monotonic() + 8
                while time.monotonic() < deadline:
                    msg = await ws.receive(timeout=max(0.1, deadline - time.monotonic()))
                    data = json.loads(msg.data)
                    if data["type"] != "STAGE_STATE":
                        continue
                    state = await get_json(s, f"{st.base}/_admin/state")
                    snapshots.append((state["t"], {p["id"]: p["isPublishing"]
                                                   for p in data["payload"]["participants"]}))
                    if len(snapshots) >= 5:
                        break
                await ws.close()
                seq = [sn for _, sn in snapshots]
                assert seq == [
                    {"host": True, "caller-1": True, "caller-3": False},
                    {"host": True, "caller-1": True, "caller-3": False, "caller-2": True},
                    {"host": True, "caller-1": True, "caller-3": True, "caller-2": True},
                    {"host": True, "caller-3": True, "caller-2": True},
                    {"host": True, "caller-3": False, "caller-2": True},
                ], seq
                times = [t for t, _ in snapshots[1:]]
                for t, want in zip(times, [1.5, 2.0, 3.0, 4.0]):
                    assert want - 0.05 <= t <= want + 1.0, (times, want)
                st_ = await sub.wait_state({"closed", "failed"}, 5)
                assert st_ in ("closed", "failed")
                state = await get_json(s, f"{st.base}/_admin/state")
                assert state["endedSubscriptions"][0]["endReason"] == "participant left"
                # Gone participants are 404, unpublished ones 409.
                again = Subscriber()
                assert (await again.post(s, f"{st.base}/subscribe/caller-1", token)).status == 404
                assert (await again.post(s, f"{st.base}/subscribe/caller-3", token)).status == 409
                await again.close()
                await sub.close()
        run(body(), 30)
    finally:
        code, _ = st.stop()
        assert code == 0


def test_tls_and_bad_fingerprint(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    out = subprocess.run([sys.executable, str(LOCALSTAGE), "cert", "--cert", str(cert),
                          "--key", str(key)], capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    st = StageProc(tmp_path, "--tls-cert", str(cert), "--tls-key", str(key),
                   "--bad-fingerprint", name="tls")
    ctx = ssl.create_default_context(cafile=str(cert))
    try:
        assert st.base.startswith("https://")

        async def body():
            async with aiohttp.ClientSession() as s:
                async with s.post(f"{st.base}/_admin/token", json={"participantId": "w5"},
                                  ssl=ctx) as r:
                    token = (await r.json())["token"]
                assert jwt.decode(token, options={"verify_signature": False})["events_url"] \
                    .startswith("wss://127.0.0.1:")
                ws = await s.ws_connect(f"{st.ws_base}/st-local", protocols=(token,), ssl=ctx)
                msg = json.loads((await ws.receive(timeout=5)).data)
                assert msg["type"] == "STAGE_STATE"
                await ws.close()
                sub = Subscriber()
                r = await sub.post(s, f"{st.base}/subscribe/host", token, ssl_ctx=ctx)
                assert r.status == 201
                # The answer's fingerprint does not match the stage's certificate: a correct
                # client completes the handshake but refuses the peer, and no media flows.
                assert await sub.wait_state({"connected", "failed"}, 15) == "failed"
                assert sub.rtp == []
                await sub.close()
        run(body(), 30)
    finally:
        code, _ = st.stop()
        assert code == 0
