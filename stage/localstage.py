#!/usr/bin/env python3
"""Local stand-in for an Amazon IVS Real-Time stage (see shared/STAGE-PROTOCOL.md).

A real WebRTC peer (aiortc) that serves, on 127.0.0.1 only:
  GET  /{stageId}                      events WebSocket, token as the subprotocol
  POST /subscribe/{participantId}      SDP offer -> 201 + SDP answer + Location
  DELETE <Location>                    ends the subscription (204)
  GET  /_admin/log, /_admin/state      introspection for tests
  POST /_admin/token, /_admin/participant, /_admin/drop-websockets

Subcommands:
  serve  (default)  run the stage; prints "READY <port>" on stdout once listening
  token             print an ES384 participant token signed with --key-file
  cert              write a self-signed TLS certificate for 127.0.0.1/localhost

Run `localstage.py serve --help` for the options; README.md beside this file has examples.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import fractions
import json
import logging
import os
import re
import signal
import socket
import ssl
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import aioice.ice
import av
import jwt
import numpy as np
from aiohttp import WSMsgType, web
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

log = logging.getLogger("localstage")

SAMPLE_RATE = 48000
TIME_BASE = fractions.Fraction(1, SAMPLE_RATE)
# Same conventions as fixtures/tones: participant id -> tone frequency.
DEFAULT_TONES = {"host": 350, "caller-1": 550, "caller-2": 750, "caller-3": 950, "caller-4": 1150}
DEFAULT_AMPLITUDE = 0.25
DEFAULT_STAGE_ID = "st-local"
ACCOUNT = "123456789012"


def loopback_only_addresses(use_ipv4: bool = True, use_ipv6: bool = False) -> list[str]:
    """aioice skips 127.0.0.1 by default; this stage lives on loopback only."""
    return ["127.0.0.1"] if use_ipv4 else []


# Every ICE agent in this process (server side) gathers one UDP host candidate on 127.0.0.1.
aioice.ice.get_host_addresses = loopback_only_addresses


class UsageError(Exception):
    """Bad command line or config: exit code 2, message names the field."""


# --------------------------------------------------------------------------------------------
# Keys and tokens
# --------------------------------------------------------------------------------------------

def load_or_create_key(path: Optional[str]) -> ec.EllipticCurvePrivateKey:
    """P-384 key for ES384. With a path: read it, or create it (0600) when missing."""
    if path and os.path.exists(path):
        data = Path(path).read_bytes()
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except ValueError as exc:
            raise UsageError(f"--key-file {path}: not a PEM private key ({exc})") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp384r1":
            raise UsageError(f"--key-file {path}: need an EC P-384 private key for ES384")
        return key
    key = ec.generate_private_key(ec.SECP384R1())
    if path:
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
    return key


def stage_arn(stage_id: str) -> str:
    return f"arn:aws:ivs:us-east-1:{ACCOUNT}:stage/{stage_id}"


def mint_token(
    key: ec.EllipticCurvePrivateKey,
    *,
    stage_id: str,
    participant_id: str,
    user_id: Optional[str],
    publish: bool,
    subscribe: bool,
    events_url: str,
    whip_url: str,
    attributes: Optional[dict[str, str]] = None,
    ttl_s: float = 12 * 3600,
    version: str = "1.0",
) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "jti": participant_id,
        "topic": stage_id,
        "resource": stage_arn(stage_id),
        "events_url": events_url,
        "whip_url": whip_url,
        "capabilities": {"allow_publish": publish, "allow_subscribe": subscribe},
        "attributes": dict(attributes or {}),
        "version": version,
        "iat": now,
        "exp": int(now + ttl_s),
    }
    if user_id is not None:
        claims["user_id"] = user_id
    return jwt.encode(claims, key, algorithm="ES384", headers={"kid": "localstage"})


class AuthError(Exception):
    pass


def verify_token(key: ec.EllipticCurvePrivateKey, token: str, stage_id: str) -> dict:
    try:
        claims = jwt.decode(
            token,
            key.public_key(),
            algorithms=["ES384"],
            options={"require": ["exp", "jti", "topic"]},
        )
    except jwt.PyJWTError as exc:
        raise AuthError(f"token rejected: {exc}") from exc
    if claims.get("topic") != stage_id:
        raise AuthError(f"token topic {claims.get('topic')!r} is not stage {stage_id!r}")
    return claims


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------

_PARTICIPANT_FIELDS = {
    "id": str, "userId": str, "role": str, "attributes": dict,
    "tone": (int, float), "amplitude": (int, float), "wav": str, "loop": bool,
    "joinAtS": (int, float), "leaveAtS": (int, float),
    "publishing": bool, "publishAtS": (int, float), "unpublishAtS": (int, float),
    "silentAtS": (int, float), "silentForS": (int, float), "silentMode": str,
    "deadAtS": (int, float), "deadForS": (int, float), "deadAfterSubscribeS": (int, float),
    "frameMs": int, "bitrate": int, "video": bool,
}


@dataclass
class ParticipantSpec:
    id: str
    user_id: str
    role: Optional[str]
    attributes: dict[str, str]
    tone_hz: Optional[float]
    amplitude: float
    wav: Optional[str]
    loop: bool
    join_at: float
    leave_at: Optional[float]
    publishing: bool
    publish_at: Optional[float]
    unpublish_at: Optional[float]
    silent_at: Optional[float]
    silent_for: Optional[float]
    silent_mode: str
    dead_at: Optional[float]
    dead_for: Optional[float]
    dead_after_subscribe: Optional[float]
    frame_ms: int
    bitrate: int
    video: bool


def parse_participant(obj: Any, where: str, base_dir: Path) -> ParticipantSpec:
    if not isinstance(obj, dict):
        raise UsageError(f"{where}: must be an object")
    for k, v in obj.items():
        if k not in _PARTICIPANT_FIELDS:
            raise UsageError(f"{where}.{k}: unknown field")
        want = _PARTICIPANT_FIELDS[k]
        if v is None and k.endswith("S"):
            continue
        if isinstance(v, bool) and want is not bool:
            raise UsageError(f"{where}.{k}: wrong type (bool)")
        if not isinstance(v, want):
            raise UsageError(f"{where}.{k}: wrong type ({type(v).__name__})")
    pid = obj.get("id")
    if not pid or not re.fullmatch(r"[A-Za-z0-9_.:-]{1,128}", pid):
        raise UsageError(f"{where}.id: required, [A-Za-z0-9_.:-]{{1,128}}")
    attrs = obj.get("attributes", {})
    for k, v in attrs.items():
        if not isinstance(v, str):
            raise UsageError(f"{where}.attributes.{k}: must be a string")
    for k in ("joinAtS", "leaveAtS", "publishAtS", "unpublishAtS", "silentAtS", "silentForS",
              "deadAtS", "deadForS", "deadAfterSubscribeS"):
        v = obj.get(k)
        if v is not None and v < 0:
            raise UsageError(f"{where}.{k}: must be >= 0")
    if "tone" in obj and "wav" in obj:
        raise UsageError(f"{where}: give tone or wav, not both")
    amp = float(obj.get("amplitude", DEFAULT_AMPLITUDE))
    if not 0 <= amp <= 1:
        raise UsageError(f"{where}.amplitude: must be in [0, 1]")
    tone = obj.get("tone")
    if tone is not None and not 20 <= tone <= 20000:
        raise UsageError(f"{where}.tone: must be 20..20000 Hz")
    wav = obj.get("wav")
    if wav is not None:
        p = (base_dir / wav) if not os.path.isabs(wav) else Path(wav)
        if not p.exists():
            raise UsageError(f"{where}.wav: file not found: {p}")
        wav = str(p)
    elif tone is None:
        tone = DEFAULT_TONES.get(pid, 450)
    frame_ms = obj.get("frameMs", 20)
    if frame_ms not in (10, 20, 40, 60):
        raise UsageError(f"{where}.frameMs: must be 10, 20, 40 or 60")
    bitrate = obj.get("bitrate", 64000)
    if not 6000 <= bitrate <= 510000:
        raise UsageError(f"{where}.bitrate: must be 6000..510000")
    mode = obj.get("silentMode", "stop")
    if mode not in ("stop", "zeros"):
        raise UsageError(f"{where}.silentMode: must be 'stop' or 'zeros'")
    join_at = float(obj.get("joinAtS") or 0.0)
    leave_at = obj.get("leaveAtS")
    if leave_at is not None and leave_at <= join_at:
        raise UsageError(f"{where}.leaveAtS: must be after joinAtS")
    return ParticipantSpec(
        id=pid,
        user_id=obj.get("userId", f"{pid}-user" if pid != "host" else "host-1"),
        role=obj.get("role"),
        attributes=dict(attrs),
        tone_hz=float(tone) if tone is not None else None,
        amplitude=amp,
        wav=wav,
        loop=obj.get("loop", True),
        join_at=join_at,
        leave_at=leave_at,
        publishing=obj.get("publishing", True),
        publish_at=obj.get("publishAtS"),
        unpublish_at=obj.get("unpublishAtS"),
        silent_at=obj.get("silentAtS"),
        silent_for=obj.get("silentForS"),
        silent_mode=mode,
        dead_at=obj.get("deadAtS"),
        dead_for=obj.get("deadForS"),
        dead_after_subscribe=obj.get("deadAfterSubscribeS"),
        frame_ms=frame_ms,
        bitrate=bitrate,
        video=obj.get("video", False),
    )


def default_config() -> dict:
    return {
        "stageId": DEFAULT_STAGE_ID,
        "participants": [
            {"id": "host", "userId": "host-1", "role": "HOST"},
            {"id": "caller-1", "userId": "caller-1-user", "role": "CALLER"},
            {"id": "caller-2", "userId": "caller-2-user", "role": "CALLER"},
            {"id": "caller-3", "userId": "caller-3-user", "role": "CALLER"},
        ],
    }


def load_config(path: Optional[str]) -> tuple[Optional[str], list[ParticipantSpec]]:
    if path is None:
        cfg, base = default_config(), Path.cwd()
    else:
        try:
            cfg = json.loads(Path(path).read_text())
        except OSError as exc:
            raise UsageError(f"--config {path}: {exc.strerror}") from exc
        except json.JSONDecodeError as exc:
            raise UsageError(f"--config {path}: invalid JSON ({exc})") from exc
        base = Path(path).resolve().parent
    if not isinstance(cfg, dict):
        raise UsageError(f"{path}: top level must be an object")
    for k in cfg:
        if k not in ("stageId", "participants"):
            raise UsageError(f"{path}: unknown field {k!r}")
    stage_id = cfg.get("stageId")
    if stage_id is not None and (not isinstance(stage_id, str) or not stage_id
                                 or not re.fullmatch(r"[A-Za-z0-9_.-]+", stage_id)):
        raise UsageError(f"{path}.stageId: must be a non-empty [A-Za-z0-9_.-] string")
    plist = cfg.get("participants", [])
    if not isinstance(plist, list):
        raise UsageError(f"{path}.participants: must be a list")
    specs = [parse_participant(p, f"{path}.participants[{i}]", base) for i, p in enumerate(plist)]
    seen = set()
    for s in specs:
        if s.id in seen or s.id.startswith("_") or s.id == "r":
            raise UsageError(f"{path}.participants: duplicate or reserved id {s.id!r}")
        seen.add(s.id)
    return stage_id, specs


# --------------------------------------------------------------------------------------------
# Media
# --------------------------------------------------------------------------------------------

class ToneSource:
    def __init__(self, hz: float, amplitude: float):
        self.hz, self.amplitude = hz, amplitude

    def samples(self, start: int, count: int) -> np.ndarray:
        # Phase follows the absolute sample index, so pauses keep the tone coherent.
        n = np.arange(start, start + count, dtype=np.float64)
        x = self.amplitude * np.sin(2 * np.pi * self.hz * n / SAMPLE_RATE) * 32768.0
        return np.clip(np.round(x), -32768, 32767).astype(np.int16)


class FileSource:
    """Any file FFmpeg decodes (WAV, ...), as 48 kHz mono s16, looped or then silent."""

    _cache: dict[str, np.ndarray] = {}

    def __init__(self, path: str, loop: bool):
        if path not in self._cache:
            self._cache[path] = self._decode(path)
        self.pcm, self.loop = self._cache[path], loop

    @staticmethod
    def _decode(path: str) -> np.ndarray:
        chunks = []
        try:
            with av.open(path) as container:
                stream = next(s for s in container.streams if s.type == "audio")
                res = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
                for frame in container.decode(stream):
                    for f in res.resample(frame):
                        chunks.append(f.to_ndarray().reshape(-1))
                for f in res.resample(None):
                    chunks.append(f.to_ndarray().reshape(-1))
        except (av.FFmpegError, StopIteration) as exc:
            raise UsageError(f"wav {path}: cannot decode audio ({exc})") from exc
        pcm = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
        if pcm.size == 0:
            raise UsageError(f"wav {path}: no audio samples")
        return pcm.astype(np.int16)

    def samples(self, start: int, count: int) -> np.ndarray:
        n = self.pcm.size
        if self.loop:
            idx = np.arange(start, start + count) % n
            return self.pcm[idx]
        out = np.zeros(count, np.int16)
        if start < n:
            part = self.pcm[start:start + count]
            out[:part.size] = part
        return out


class OpusTrack(MediaStreamTrack):
    """Audio track that paces and Opus-encodes itself (mono, like the IVS SDK default).

    recv() returns encoded av.Packets, which aiortc's sender packs unchanged, so frame size,
    bitrate and the RTP timestamp (frame index x frame size, jumping over pauses) are ours.
    """

    kind = "audio"

    def __init__(self, stage: "Stage", participant: "Participant"):
        super().__init__()
        self.stage, self.participant = stage, participant
        spec = participant.spec
        self.frame = SAMPLE_RATE * spec.frame_ms // 1000
        self.source = (FileSource(spec.wav, spec.loop) if spec.wav
                       else ToneSource(spec.tone_hz or 0.0, spec.amplitude))
        self.encoder = av.CodecContext.create("libopus", "w")
        self.encoder.sample_rate = SAMPLE_RATE
        self.encoder.layout = "mono"
        self.encoder.format = "s16"
        self.encoder.bit_rate = spec.bitrate
        self.encoder.time_base = TIME_BASE
        self.encoder.options = {
            "application": "audio",
            "frame_duration": str(spec.frame_ms),
            "fec": "1",
            "packet_loss": "1",
        }
        self.start: Optional[float] = None
        self.n = 0  # sample index of the next frame
        self.frames_sent = 0
        self.frames_skipped = 0

    async def recv(self) -> av.Packet:
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            now = time.monotonic()
            if self.start is None:
                self.start = now
            due = self.start + self.n / SAMPLE_RATE
            if due > now:
                await asyncio.sleep(due - now)
            elif now - due > 1.0:
                # The loop stalled for a long time: resynchronise instead of bursting.
                self.n = int((now - self.start) * SAMPLE_RATE) // self.frame * self.frame
            pts = self.n
            self.n += self.frame
            p = self.participant
            if p.silent and p.spec.silent_mode == "stop":
                self.frames_skipped += 1
                continue
            pcm = (np.zeros(self.frame, np.int16) if p.silent
                   else self.source.samples(pts, self.frame))
            frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = SAMPLE_RATE
            frame.pts = pts
            frame.time_base = TIME_BASE
            packets = self.encoder.encode(frame)
            if not packets:
                continue
            out = av.Packet(bytes(packets[0]))
            out.pts = pts
            out.time_base = TIME_BASE
            self.frames_sent += 1
            return out


class StillVideoTrack(MediaStreamTrack):
    """Optional low-rate video (a flat colour card) for participants with "video": true."""

    kind = "video"

    def __init__(self, fps: int = 5):
        super().__init__()
        self.fps, self.start, self.k = fps, None, 0
        img = np.zeros((180, 320, 3), np.uint8)
        img[:, :, 1] = 128
        self.img = img

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self.start is None:
            self.start = now
        due = self.start + self.k / self.fps
        if due > now:
            await asyncio.sleep(due - now)
        frame = av.VideoFrame.from_ndarray(self.img, format="rgb24")
        frame.pts = self.k * (90000 // self.fps)
        frame.time_base = fractions.Fraction(1, 90000)
        self.k += 1
        return frame


# --------------------------------------------------------------------------------------------
# Offer checks and answer rewriting
# --------------------------------------------------------------------------------------------

class OfferError(Exception):
    pass


def split_sdp(sdp: str) -> tuple[list[str], list[list[str]]]:
    lines = [ln for ln in re.split(r"\r?\n", sdp) if ln]
    session: list[str] = []
    media: list[list[str]] = []
    for ln in lines:
        if ln.startswith("m="):
            media.append([ln])
        elif media:
            media[-1].append(ln)
        else:
            session.append(ln)
    return session, media


def join_sdp(session: list[str], media: list[list[str]]) -> str:
    return "\r\n".join(session + [ln for m in media for ln in m]) + "\r\n"


def check_offer(sdp: str) -> None:
    """What IVS expects of a subscriber: BUNDLE, rtcp-mux, actpass, recv-capable audio."""
    if not sdp.startswith("v=0"):
        raise OfferError("offer does not start with v=0")
    session, media = split_sdp(sdp)
    if not media:
        raise OfferError("offer has no m= section")
    if not any(ln.startswith("a=group:BUNDLE") for ln in session):
        raise OfferError("offer lacks a=group:BUNDLE")
    has_audio = False
    for i, m in enumerate(media):
        kind = m[0][2:].split(" ", 1)[0]
        attrs = session + m
        if "a=rtcp-mux" not in m:
            raise OfferError(f"m-section {i} ({kind}) lacks a=rtcp-mux")
        setup = [ln for ln in attrs if ln.startswith("a=setup:")]
        if not setup or setup[-1] != "a=setup:actpass":
            raise OfferError(f"m-section {i} ({kind}) must offer a=setup:actpass")
        for need in ("a=ice-ufrag:", "a=ice-pwd:", "a=fingerprint:"):
            if not any(ln.startswith(need) for ln in attrs):
                raise OfferError(f"m-section {i} ({kind}) lacks {need[:-1]}")
        if kind == "audio":
            if any(ln in ("a=sendonly", "a=inactive") for ln in m):
                raise OfferError(f"m-section {i} (audio) must be recvonly or sendrecv")
            if "opus/48000" not in " ".join(m).lower():
                raise OfferError(f"m-section {i} (audio) does not offer opus/48000")
            has_audio = True
    if not has_audio:
        raise OfferError("offer has no audio m-section")


def rewrite_answer(sdp: str, *, bad_fingerprint: bool, ice_lite: bool) -> str:
    session, media = split_sdp(sdp)
    for i, m in enumerate(media):
        kept = []
        for ln in m:
            if ln.startswith("a=candidate:") or ln == "a=end-of-candidates":
                # IVS style: candidates only in the first (bundle-tag) m-section.
                if i > 0:
                    continue
                if ln.startswith("a=candidate:"):
                    parts = ln.split()
                    if parts[2].lower() != "udp" or parts[4] != "127.0.0.1" or "host" not in parts:
                        continue
            if bad_fingerprint and ln.startswith("a=fingerprint:"):
                algo, value = ln[len("a=fingerprint:"):].split(" ", 1)
                last = int(value[-2:], 16) ^ 0xFF
                ln = f"a=fingerprint:{algo} {value[:-2]}{last:02X}"
            kept.append(ln)
        media[i] = kept
    if ice_lite and "a=ice-lite" not in session:
        t_idx = next((k for k, ln in enumerate(session) if ln.startswith("t=")), len(session) - 1)
        session.insert(t_idx + 1, "a=ice-lite")
    return join_sdp(session, media)


# --------------------------------------------------------------------------------------------
# ICE behaviour patches (per connection)
# --------------------------------------------------------------------------------------------

def make_ice_lite(conn: aioice.ice.Connection) -> None:
    """Make an aioice agent behave as ICE-lite: it never sends checks or consent requests,
    it only answers; a pair is valid once the remote checked it (RFC 8445 sec. 2.5)."""
    checked: set[tuple[Any, tuple]] = set()
    orig_incoming = conn.check_incoming
    State = aioice.ice.CandidatePair.State

    def check_incoming(message, addr, protocol):
        checked.add((id(protocol), tuple(addr[:2])))
        orig_incoming(message, addr, protocol)

    async def check_start(pair):
        conn.check_state(pair, State.IN_PROGRESS)
        while (id(pair.protocol), tuple(pair.remote_addr[:2])) not in checked:
            await asyncio.sleep(0.02)
        if pair.remote_nominated:
            pair.nominated = True
        conn.check_state(pair, State.SUCCEEDED)
        conn.check_complete(pair)

    async def query_consent():
        return None

    conn.check_incoming = check_incoming
    conn.check_start = check_start
    conn.query_consent = query_consent


def make_ice_dead(conn: aioice.ice.Connection) -> None:
    """A dead peer: every datagram in or out on this agent's sockets is dropped, so STUN
    consent requests go unanswered and no media flows; nothing tells the remote."""
    def drop_in(data, addr):
        return None

    def drop_stun(message, addr):
        return None

    async def drop_data(data, addr):
        return None

    for proto in list(conn._protocols):
        proto.datagram_received = drop_in
        proto.send_stun = drop_stun
        proto.send_data = drop_data


# --------------------------------------------------------------------------------------------
# Stage
# --------------------------------------------------------------------------------------------

@dataclass
class Participant:
    spec: ParticipantSpec
    present: bool = False
    publishing: bool = False
    silent: bool = False
    dead: bool = False

    def snapshot(self) -> dict:
        attrs = dict(self.spec.attributes)
        if self.spec.role is not None:
            attrs.setdefault("role", self.spec.role)
        return {"id": self.spec.id, "userId": self.spec.user_id, "attributes": attrs,
                "isPublishing": self.publishing}


@dataclass
class Subscription:
    sid: str
    participant: Participant
    pc: RTCPeerConnection
    track: OpusTrack
    subscriber: str
    created_t: float
    location: str
    state: str = "new"
    ended_t: Optional[float] = None
    end_reason: Optional[str] = None
    dead: bool = False
    dtls_role: Optional[str] = None
    srtp_profile: Optional[str] = None
    tasks: list = field(default_factory=list)

    def ice_connection(self) -> Optional[aioice.ice.Connection]:
        for t in self.pc.getTransceivers():
            dtls = t.receiver.transport
            if dtls is not None:
                return dtls.transport._connection
        return None

    def describe(self) -> dict:
        return {
            "id": self.sid, "participantId": self.participant.spec.id,
            "subscriber": self.subscriber, "location": self.location,
            "createdAtS": round(self.created_t, 3), "state": self.state,
            "connectionState": self.pc.connectionState,
            "iceConnectionState": self.pc.iceConnectionState,
            "dtlsRole": self.dtls_role, "srtpProfile": self.srtp_profile,
            "dead": self.dead, "framesSent": self.track.frames_sent,
            "framesSkipped": self.track.frames_skipped,
            "endedAtS": None if self.ended_t is None else round(self.ended_t, 3),
            "endReason": self.end_reason,
        }


class Stage:
    def __init__(self, args: argparse.Namespace, key: ec.EllipticCurvePrivateKey,
                 stage_id: str, specs: list[ParticipantSpec]):
        self.args, self.key, self.stage_id = args, key, stage_id
        self.participants: dict[str, Participant] = {s.id: Participant(s) for s in specs}
        self.events: list[tuple[float, int, str, str, bool]] = []  # (t, seq, pid, field, value)
        self.seq = 0
        self.t0 = time.monotonic()
        self.wall0 = time.time()
        self.log: list[dict] = []
        self.ws_clients: dict[web.WebSocketResponse, dict] = {}
        self.subs: dict[str, Subscription] = {}
        self.ended_subs: list[Subscription] = []
        self.redirects = 0
        self.last_state: Optional[dict] = None
        self.state_changed = asyncio.Event()
        self.base_url: str = ""
        self.background: set[asyncio.Task] = set()
        for s in specs:
            self.schedule_spec(s, 0.0)

    # -- time and log ---------------------------------------------------------------------
    def now(self) -> float:
        return time.monotonic() - self.t0

    def record(self, event: str, **data) -> None:
        entry = {"t": round(self.now(), 3), "wall": round(time.time(), 3), "event": event}
        entry.update(data)
        self.log.append(entry)
        log.info("%s", json.dumps(entry))

    def spawn(self, coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return task

    # -- schedule -------------------------------------------------------------------------
    def schedule_spec(self, s: ParticipantSpec, offset: float) -> None:
        def at(t: Optional[float], fld: str, value: bool):
            if t is not None:
                self.seq += 1
                self.events.append((offset + t, self.seq, s.id, fld, value))
        p = self.participants[s.id]
        p.publishing = s.publishing
        at(s.join_at, "present", True)
        at(s.leave_at, "present", False)
        at(s.publish_at, "publishing", True)
        at(s.unpublish_at, "publishing", False)
        at(s.silent_at, "silent", True)
        if s.silent_at is not None and s.silent_for is not None:
            at(s.silent_at + s.silent_for, "silent", False)
        at(s.dead_at, "dead", True)
        if s.dead_at is not None and s.dead_for is not None:
            at(s.dead_at + s.dead_for, "dead", False)
        self.events.sort()

    def apply(self, p: Participant, fld: str, value: bool, why: str) -> bool:
        if getattr(p, fld) == value:
            return False
        setattr(p, fld, value)
        self.record("participant", id=p.spec.id, field=fld, value=value, why=why)
        if fld == "present" and not value:
            self.end_subscriptions(p, "participant left")
        elif fld == "publishing" and not value:
            self.end_subscriptions(p, "participant unpublished")
        elif fld == "dead" and value:
            for sub in list(self.subs.values()):
                if sub.participant is p:
                    self.kill(sub, "participant dead")
        return fld in ("present", "publishing")

    def tick(self) -> None:
        now = self.now()
        changed = False
        while self.events and self.events[0][0] <= now:
            _, _, pid, fld, value = self.events.pop(0)
            p = self.participants.get(pid)
            if p is not None:
                changed |= self.apply(p, fld, value, "schedule")
        if changed:
            self.state_changed.set()

    async def run_schedule(self) -> None:
        self.tick()
        await self.broadcast()
        while True:
            await asyncio.sleep(0.02)
            self.tick()
            if self.state_changed.is_set():
                self.state_changed.clear()
                await self.broadcast()

    # -- stage state ----------------------------------------------------------------------
    def stage_state(self) -> dict:
        plist = [p.snapshot() for p in self.participants.values() if p.present]
        if self.args.self_in_state:
            seen = {x["id"] for x in plist}
            for info in self.ws_clients.values():
                c = info["claims"]
                if c["jti"] in seen:
                    continue
                seen.add(c["jti"])
                plist.append({"id": c["jti"], "userId": c.get("user_id", ""),
                              "attributes": dict(c.get("attributes") or {}),
                              "isPublishing": False})
        return {"type": "STAGE_STATE", "payload": {"stageId": self.stage_id, "participants": plist}}

    async def broadcast(self, force: bool = False) -> None:
        state = self.stage_state()
        if state == self.last_state and not force:
            return
        self.last_state = state
        text = json.dumps(state)
        ids = [p["id"] for p in state["payload"]["participants"]]
        self.record("stage_state", participants=ids, clients=len(self.ws_clients))
        for ws in list(self.ws_clients):
            try:
                await ws.send_str(text)
            except (ConnectionError, RuntimeError):
                pass

    # -- auth -----------------------------------------------------------------------------
    def bearer(self, request: web.Request) -> dict:
        h = request.headers.get("Authorization", "")
        if not h.startswith("Bearer ") or not h[7:].strip():
            raise AuthError("missing Authorization: Bearer")
        return verify_token(self.key, h[7:].strip(), self.stage_id)

    # -- events websocket -----------------------------------------------------------------
    async def ws_handler(self, request: web.Request) -> web.StreamResponse:
        topic = request.match_info["topic"]
        offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")
                   if p.strip()]
        peer = request.remote
        if not web.WebSocketResponse().can_prepare(request).ok:
            self.record("ws_reject", status=400, reason="not a websocket upgrade", topic=topic)
            return web.Response(status=400, text="expected a WebSocket upgrade\n")
        if not offered:
            self.record("ws_reject", status=401, reason="no subprotocol token", topic=topic)
            return web.Response(status=401, text="token required as WebSocket subprotocol\n")
        claims, token, reason = None, None, ""
        for cand in offered:
            try:
                claims, token = verify_token(self.key, cand, self.stage_id), cand
                break
            except AuthError as exc:
                reason = str(exc)
        if claims is None:
            self.record("ws_reject", status=401, reason=reason, topic=topic)
            return web.Response(status=401, text=reason + "\n")
        if topic != self.stage_id:
            self.record("ws_reject", status=401, reason=f"topic {topic!r} is not this stage", topic=topic)
            return web.Response(status=401, text="token is not for this topic\n")
        ws = web.WebSocketResponse(protocols=(token,), autoping=True)
        await ws.prepare(request)
        info = {"claims": claims, "since": self.now(), "peer": peer, "pings": 0}
        self.ws_clients[ws] = info
        self.record("ws_connect", participantId=claims["jti"], subprotocol=ws.ws_protocol,
                    peer=peer)
        try:
            # The snapshot goes to every client when the set changes (self in state), and in
            # any case at least once to this newcomer.
            before = self.last_state
            await self.broadcast()
            if self.last_state == before:
                await ws.send_str(json.dumps(self.last_state or self.stage_state()))
            if self.args.send_unknown:
                await ws.send_str(json.dumps({"type": "LOCALSTAGE_UNKNOWN_TYPE",
                                              "payload": {"note": "clients must ignore me"}}))
            idle = self.args.ws_idle_timeout or None
            while True:
                try:
                    msg = await ws.receive(timeout=idle)
                except asyncio.TimeoutError:
                    self.record("ws_idle_close", participantId=claims["jti"])
                    await ws.close(code=4000, message=b"no PING")
                    break
                if msg.type == WSMsgType.TEXT:
                    try:
                        body = json.loads(msg.data)
                        mtype = body.get("type") if isinstance(body, dict) else None
                    except json.JSONDecodeError:
                        mtype = None
                    if mtype == "PING":
                        info["pings"] += 1
                        self.record("ping", participantId=claims["jti"])
                        await ws.send_str(json.dumps({"type": "PONG"}))
                    else:
                        self.record("ws_message", participantId=claims["jti"], type=mtype)
                elif msg.type == WSMsgType.BINARY:
                    self.record("ws_message", participantId=claims["jti"], type="<binary>")
                else:
                    break
        finally:
            self.ws_clients.pop(ws, None)
            self.record("ws_close", participantId=claims["jti"], code=ws.close_code)
            self.state_changed.set()
        return ws

    # -- subscribe ------------------------------------------------------------------------
    async def subscribe_handler(self, request: web.Request) -> web.StreamResponse:
        pid = request.match_info["pid"]
        redirected = request.path.startswith("/r/")
        base = {"participantId": pid, "path": request.path}
        try:
            claims = self.bearer(request)
        except AuthError as exc:
            self.record("subscribe", status=401, reason=str(exc), **base)
            return web.Response(status=401, text=str(exc) + "\n")
        base["subscriber"] = claims["jti"]
        if not (claims.get("capabilities") or {}).get("allow_subscribe"):
            self.record("subscribe", status=403, reason="token lacks allow_subscribe", **base)
            return web.Response(status=403, text="token lacks allow_subscribe\n")
        mode = self.args.redirect
        if not redirected and (mode == "always" or (mode == "once" and self.redirects == 0)):
            self.redirects += 1
            target = f"/r/subscribe/{pid}"
            if not self.args.redirect_relative:
                target = f"{request.scheme}://{request.host}{target}"
            self.record("redirect", status=307, location=target, **base)
            return web.Response(status=307, headers={"Location": target})
        p = self.participants.get(pid)
        if p is None or not p.present:
            self.record("subscribe", status=404, reason="unknown participant", **base)
            return web.Response(status=404, text=f"participant {pid} is not in the stage\n")
        if not p.publishing:
            self.record("subscribe", status=409, reason="not publishing", **base)
            return web.Response(status=409, text=f"participant {pid} is not publishing\n")
        ctype = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype != "application/sdp":
            self.record("subscribe", status=415, reason=f"content-type {ctype!r}", **base)
            return web.Response(status=415, text="Content-Type must be application/sdp\n")
        offer = await request.text()
        try:
            check_offer(offer)
        except OfferError as exc:
            self.record("subscribe", status=400, reason=str(exc), **base)
            return web.Response(status=400, text=f"bad offer: {exc}\n")

        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        track = OpusTrack(self, p)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
            audio_sender = None
            for t in pc.getTransceivers():
                if t.kind == "audio":
                    # IVS answers Opus only; aiortc would also accept G.722/PCMU/PCMA and
                    # send with whichever the offer listed first.
                    t._codecs = [c for c in t._codecs if c.mimeType.lower() == "audio/opus"]
                    for c in t._codecs:
                        c.parameters = {"minptime": 10, "useinbandfec": 1}
                    if not t._codecs:
                        raise OfferError("audio m-section has no usable opus/48000/2")
                if t.kind == "audio" and audio_sender is None:
                    audio_sender = pc.addTrack(track)
                elif t.kind == "video" and p.spec.video:
                    pc.addTrack(StillVideoTrack())
                    break
            for t in pc.getTransceivers():
                dtls = t.receiver.transport
                dtls._set_role("server" if self.args.dtls_role == "passive" else "client")
                if self.args.srtp_profiles:
                    from aiortc import rtcdtlstransport as rdt
                    names = {f"SRTP_{n}" for n in self.args.srtp_profiles}
                    dtls._srtp_profiles = [x for x in rdt.SRTP_PROFILES
                                           if x.openssl_profile.decode() in names]
            conn = None
            for t in pc.getTransceivers():
                conn = t.receiver.transport.transport._connection
                break
            if self.args.ice_lite and conn is not None:
                make_ice_lite(conn)
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)
        except Exception as exc:  # aiortc raises ValueError/InternalError/... on bad SDP
            await pc.close()
            self.record("subscribe", status=400, reason=f"offer rejected: {exc!r}", **base)
            return web.Response(status=400, text=f"bad offer: {exc}\n")

        sdp = rewrite_answer(pc.localDescription.sdp, bad_fingerprint=self.args.bad_fingerprint,
                             ice_lite=self.args.ice_lite)
        sid = uuid.uuid4().hex[:16]
        prefix = "/r/subscribe" if redirected else "/subscribe"
        location = f"{prefix}/{pid}/{sid}"
        if not self.args.location_relative:
            location = f"{request.scheme}://{request.host}{location}"
        sub = Subscription(sid=sid, participant=p, pc=pc, track=track, subscriber=claims["jti"],
                           created_t=self.now(), location=location)
        self.subs[sid] = sub
        self.fix_markers(sub, audio_sender)

        @pc.on("connectionstatechange")
        async def on_state():
            sub.state = pc.connectionState
            self.record("subscription_state", id=sid, participantId=pid, state=pc.connectionState)
            if pc.connectionState == "connected":
                for t in pc.getTransceivers():
                    d = t.receiver.transport
                    sub.dtls_role = d._role
                    prof = d._ssl.get_selected_srtp_profile() if d._ssl else None
                    sub.srtp_profile = prof.decode() if prof else None
                    break
            if pc.connectionState in ("failed", "closed"):
                self.spawn(self.end(sub, f"connection {pc.connectionState}"))

        sub.tasks.append(self.spawn(self.watch(sub)))
        if p.dead:
            self.kill(sub, "participant dead at subscribe")
        self.record("subscribe", status=201, id=sid, location=location,
                    dtlsSetup=("passive" if self.args.dtls_role == "passive" else "active"), **base)
        return web.Response(status=201, body=sdp.encode(),
                            headers={"Location": location, "Content-Type": "application/sdp",
                                     "ETag": f'"{sid}"'})

    def fix_markers(self, sub: Subscription, sender) -> None:
        """aiortc sets the RTP marker on every audio packet; RFC 3551 wants it only on the
        first packet of a talkspurt. Rewrite it on the way out (before SRTP protection)."""
        if sender is None:
            return
        dtls = sender.transport
        orig = dtls._send_rtp
        audio_ssrc = sender._ssrc
        frame = sub.track.frame
        last_ts: list[Optional[int]] = [None]

        async def send_rtp(data: bytes) -> None:
            if len(data) >= 12 and not (192 <= data[1] <= 223):
                ssrc = int.from_bytes(data[8:12], "big")
                if ssrc == audio_ssrc:
                    ts = int.from_bytes(data[4:8], "big")
                    prev = last_ts[0]
                    start = prev is None or ((ts - prev) & 0xFFFFFFFF) != frame
                    last_ts[0] = ts
                    b1 = (data[1] & 0x7F) | (0x80 if start else 0)
                    data = data[:1] + bytes([b1]) + data[2:]
            await orig(data)

        dtls._send_rtp = send_rtp

    async def watch(self, sub: Subscription) -> None:
        """Time limits of one subscription: ICE/DTLS must connect within --connect-timeout,
        and deadAfterSubscribeS kills it."""
        try:
            deadline = self.now() + self.args.connect_timeout
            dead_at = (sub.created_t + sub.participant.spec.dead_after_subscribe
                       if sub.participant.spec.dead_after_subscribe is not None else None)
            while sub.sid in self.subs:
                if sub.dtls_role is None and self.now() > deadline:
                    # Never got connected (dead at subscribe, or the client gave up).
                    await self.end(sub, "connect timeout")
                    return
                if dead_at is not None and self.now() >= dead_at and not sub.dead:
                    self.kill(sub, "deadAfterSubscribeS")
                await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            pass

    def kill(self, sub: Subscription, why: str) -> None:
        if sub.dead:
            return
        conn = sub.ice_connection()
        if conn is not None:
            make_ice_dead(conn)
        sub.dead = True
        self.record("subscription_dead", id=sub.sid, participantId=sub.participant.spec.id, why=why)

    def end_subscriptions(self, p: Participant, why: str) -> None:
        for sub in list(self.subs.values()):
            if sub.participant is p:
                self.spawn(self.end(sub, why))

    async def end(self, sub: Subscription, why: str) -> bool:
        if self.subs.pop(sub.sid, None) is None:
            return False
        sub.ended_t = self.now()
        sub.end_reason = why
        self.ended_subs.append(sub)
        self.record("subscription_end", id=sub.sid, participantId=sub.participant.spec.id, why=why)
        await sub.pc.close()
        return True

    async def delete_handler(self, request: web.Request) -> web.StreamResponse:
        pid, sid = request.match_info["pid"], request.match_info["sid"]
        base = {"participantId": pid, "id": sid, "path": request.path}
        try:
            self.bearer(request)
        except AuthError as exc:
            self.record("delete", status=401, reason=str(exc), **base)
            return web.Response(status=401, text=str(exc) + "\n")
        sub = self.subs.get(sid)
        if sub is None or sub.participant.spec.id != pid:
            self.record("delete", status=404, **base)
            return web.Response(status=404, text="no such subscription\n")
        await self.end(sub, "DELETE")
        self.record("delete", status=204, **base)
        return web.Response(status=204)

    # -- admin ----------------------------------------------------------------------------
    async def admin_log(self, request: web.Request) -> web.Response:
        since = int(request.query.get("since", "0") or 0)
        return web.json_response(self.log[since:])

    async def admin_state(self, request: web.Request) -> web.Response:
        return web.json_response({
            "stageId": self.stage_id,
            "t": round(self.now(), 3),
            "startedAt": self.wall0,
            "options": {"dtlsRole": self.args.dtls_role, "redirect": self.args.redirect,
                        "badFingerprint": self.args.bad_fingerprint, "iceLite": self.args.ice_lite,
                        "tls": bool(self.args.tls_cert)},
            "participants": [
                {**p.snapshot(), "present": p.present, "silent": p.silent, "dead": p.dead,
                 "tone": p.spec.tone_hz, "amplitude": p.spec.amplitude, "wav": p.spec.wav,
                 "frameMs": p.spec.frame_ms, "role": p.spec.role}
                for p in self.participants.values()],
            "stageState": self.stage_state()["payload"],
            "websockets": [{"participantId": i["claims"]["jti"], "sinceS": round(i["since"], 3),
                            "pings": i["pings"]} for i in self.ws_clients.values()],
            "subscriptions": [s.describe() for s in self.subs.values()],
            "endedSubscriptions": [s.describe() for s in self.ended_subs],
        })

    async def admin_token(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else {}
        pid = body.get("participantId") or f"p-{uuid.uuid4().hex[:8]}"
        tok = mint_token(
            self.key, stage_id=body.get("stageId", self.stage_id), participant_id=pid,
            user_id=body.get("userId", pid), publish=bool(body.get("publish", False)),
            subscribe=bool(body.get("subscribe", True)),
            events_url=body.get("eventsUrl", self.base_url.replace("http", "ws", 1)),
            whip_url=body.get("whipUrl", self.base_url),
            attributes=body.get("attributes") or {}, ttl_s=float(body.get("ttlS", 43200)),
        )
        return web.json_response({"token": tok, "participantId": pid})

    async def admin_participant(self, request: web.Request) -> web.Response:
        """{"id": ..., "set": {"present"|"publishing"|"silent"|"dead": bool}} changes a
        participant now; {"add": {<config entry>}} adds one, its times relative to now."""
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return web.Response(status=400, text="JSON body required\n")
        if "add" in body:
            try:
                spec = parse_participant(body["add"], "add", Path.cwd())
            except UsageError as exc:
                return web.Response(status=400, text=str(exc) + "\n")
            if spec.id in self.participants:
                return web.Response(status=409, text="participant exists\n")
            self.participants[spec.id] = Participant(spec)
            self.schedule_spec(spec, self.now())
            self.record("admin_add", id=spec.id)
            self.tick()
            return web.json_response({"ok": True})
        p = self.participants.get(body.get("id", ""))
        if p is None:
            return web.Response(status=404, text="unknown participant\n")
        changed = False
        for fld, value in (body.get("set") or {}).items():
            if fld not in ("present", "publishing", "silent", "dead") or not isinstance(value, bool):
                return web.Response(status=400, text=f"bad field {fld}\n")
            changed |= self.apply(p, fld, value, "admin")
        if changed:
            self.state_changed.set()
        return web.json_response({"ok": True})

    async def admin_drop_ws(self, request: web.Request) -> web.Response:
        n = 0
        for ws in list(self.ws_clients):
            await ws.close(code=1011, message=b"dropped by admin")
            n += 1
        self.record("admin_drop_websockets", count=n)
        return web.json_response({"closed": n})

    async def shutdown(self) -> None:
        for ws in list(self.ws_clients):
            try:
                await ws.close(code=1001, message=b"stage shutting down")
            except Exception:
                pass
        ends = [self.end(sub, "shutdown") for sub in list(self.subs.values())]
        if ends:
            # A dead peer's close can wait on timers that never fire: bound it.
            await asyncio.wait([asyncio.ensure_future(e) for e in ends], timeout=5)
        for task in list(self.background):
            task.cancel()


def build_app(stage: Stage) -> web.Application:
    app = web.Application()
    r = app.router
    r.add_get("/_admin/log", stage.admin_log)
    r.add_get("/_admin/state", stage.admin_state)
    r.add_post("/_admin/token", stage.admin_token)
    r.add_post("/_admin/participant", stage.admin_participant)
    r.add_post("/_admin/drop-websockets", stage.admin_drop_ws)
    for prefix in ("/subscribe", "/r/subscribe"):
        r.add_post(prefix + "/{pid}", stage.subscribe_handler)
        r.add_delete(prefix + "/{pid}/{sid}", stage.delete_handler)
    r.add_get("/{topic}", stage.ws_handler)
    return app


async def serve(args: argparse.Namespace) -> int:
    cfg_stage, specs = load_config(args.config)
    stage_id = args.stage_id or cfg_stage or DEFAULT_STAGE_ID
    key = load_or_create_key(args.key_file)
    ssl_ctx = None
    if args.tls_cert:
        ssl_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ssl_ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ssl_ctx.load_cert_chain(args.tls_cert, args.tls_key)

    stage = Stage(args, key, stage_id, specs)
    app = build_app(stage)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", args.port))
    except OSError as exc:
        raise UsageError(f"--port {args.port}: cannot bind 127.0.0.1 ({exc.strerror})") from exc
    sock.listen(64)
    sock.setblocking(False)
    port = sock.getsockname()[1]
    site = web.SockSite(runner, sock, ssl_context=ssl_ctx)
    await site.start()
    scheme = "https" if ssl_ctx else "http"
    stage.base_url = f"{scheme}://127.0.0.1:{port}"
    stage.t0 = time.monotonic()
    stage.wall0 = time.time()
    stage.record("ready", port=port, stageId=stage_id, tls=bool(ssl_ctx))
    sched = stage.spawn(stage.run_schedule())

    print(f"READY {port}", flush=True)
    if args.print_token:
        tok = mint_token(key, stage_id=stage_id, participant_id=args.print_token,
                         user_id=args.print_token, publish=False, subscribe=True,
                         events_url=stage.base_url.replace("http", "ws", 1),
                         whip_url=stage.base_url)
        print(f"TOKEN {tok}", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if args.exit_after:
        loop.call_later(args.exit_after, stop.set)
    await stop.wait()
    stage.record("shutdown")
    sched.cancel()
    await stage.shutdown()
    await runner.cleanup()
    print("STOPPED", flush=True)
    return 0


# --------------------------------------------------------------------------------------------
# token / cert subcommands
# --------------------------------------------------------------------------------------------

def cmd_token(args: argparse.Namespace) -> int:
    if not os.path.exists(args.key_file) and not args.create_key:
        raise UsageError(f"--key-file {args.key_file}: not found (start the server with the "
                         "same --key-file first, or pass --create-key)")
    key = load_or_create_key(args.key_file)
    if args.port:
        events = args.events_url or f"ws://127.0.0.1:{args.port}"
        whip = args.whip_url or f"http://127.0.0.1:{args.port}"
    else:
        events, whip = args.events_url, args.whip_url
    if not events or not whip:
        raise UsageError("give --events-url and --whip-url (or --port)")
    attrs = {}
    for a in args.attr or []:
        if "=" not in a:
            raise UsageError(f"--attr {a!r}: expected KEY=VALUE")
        k, v = a.split("=", 1)
        attrs[k] = v
    print(mint_token(key, stage_id=args.stage, participant_id=args.participant,
                     user_id=args.user if args.user is not None else args.participant,
                     publish=args.publish, subscribe=args.subscribe, events_url=events,
                     whip_url=whip, attributes=attrs, ttl_s=args.ttl, version=args.version))
    return 0


def cmd_cert(args: argparse.Namespace) -> int:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localstage")])
    now = datetime.datetime.now(datetime.timezone.utc)
    import ipaddress
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=args.days))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    Path(args.cert).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(args.key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    print(f"wrote {args.cert} and {args.key}")
    return 0


def make_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="localstage.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sp = ap.add_subparsers(dest="cmd")

    s = sp.add_parser("serve", help="run the local stage")
    s.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0 = any, printed)")
    s.add_argument("--config", help="stage JSON (stageId, participants); default: host+3 callers")
    s.add_argument("--stage-id", help="stage id / topic (overrides the config)")
    s.add_argument("--key-file", help="ES384 (P-384) PEM private key; created when missing")
    s.add_argument("--tls-cert", help="PEM certificate: serve https/wss")
    s.add_argument("--tls-key", help="PEM key for --tls-cert")
    s.add_argument("--dtls-role", choices=["active", "passive"], default="active",
                   help="a=setup in the answer, and the DTLS role the stage really plays")
    s.add_argument("--redirect", nargs="?", const="always", choices=["once", "always"],
                   help="answer POST /subscribe/{id} with 307 to /r/subscribe/{id}")
    s.add_argument("--redirect-relative", action="store_true", help="307 Location as a path")
    s.add_argument("--location-relative", action="store_true",
                   help="201 Location as a path instead of an absolute URL")
    s.add_argument("--bad-fingerprint", action="store_true",
                   help="answer with an a=fingerprint that does not match the DTLS certificate")
    s.add_argument("--ice-lite", action="store_true",
                   help="announce a=ice-lite and behave so (no checks, no consent requests)")
    s.add_argument("--srtp-profiles", nargs="+",
                   choices=["AES128_CM_SHA1_80", "AEAD_AES_128_GCM", "AEAD_AES_256_GCM"],
                   help="SRTP profiles the stage accepts (default: all aiortc has)")
    s.add_argument("--self-in-state", action=argparse.BooleanOptionalAction, default=True,
                   help="list connected WebSocket clients (the worker) in STAGE_STATE")
    s.add_argument("--send-unknown", action="store_true",
                   help="send an unknown message type after the first STAGE_STATE")
    s.add_argument("--ws-idle-timeout", type=float, default=0,
                   help="close a WebSocket that sends nothing for S seconds (0 = never)")
    s.add_argument("--connect-timeout", type=float, default=30,
                   help="end a subscription whose ICE/DTLS is not up after S seconds")
    s.add_argument("--print-token", metavar="PARTICIPANT_ID",
                   help="after READY, print 'TOKEN <jwt>' (subscribe) for this participant")
    s.add_argument("--exit-after", type=float, default=0, help="stop by itself after S seconds")
    s.add_argument("-v", "--verbose", action="count", default=0)

    t = sp.add_parser("token", help="print a participant token")
    t.add_argument("--key-file", required=True, help="the server's --key-file")
    t.add_argument("--create-key", action="store_true", help="create --key-file when missing")
    t.add_argument("--stage", default=DEFAULT_STAGE_ID)
    t.add_argument("--participant", required=True)
    t.add_argument("--user")
    t.add_argument("--publish", action="store_true")
    t.add_argument("--subscribe", action="store_true")
    t.add_argument("--attr", action="append", metavar="KEY=VALUE")
    t.add_argument("--events-url")
    t.add_argument("--whip-url")
    t.add_argument("--port", type=int, help="shortcut: ws:// and http://127.0.0.1:PORT")
    t.add_argument("--ttl", type=float, default=43200, help="seconds until exp (negative: expired)")
    t.add_argument("--version", default="1.0")

    c = sp.add_parser("cert", help="write a self-signed certificate for 127.0.0.1/localhost")
    c.add_argument("--cert", required=True)
    c.add_argument("--key", required=True)
    c.add_argument("--days", type=int, default=30)
    return ap


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("serve", "token", "cert", "-h", "--help"):
        argv.insert(0, "serve")
    ap = make_parser()
    args = ap.parse_args(argv)
    try:
        if args.cmd == "token":
            return cmd_token(args)
        if args.cmd == "cert":
            return cmd_cert(args)
        if bool(args.tls_cert) != bool(args.tls_key):
            raise UsageError("--tls-cert and --tls-key go together")
        level = logging.WARNING - 10 * min(args.verbose, 2)
        logging.basicConfig(level=level, stream=sys.stderr,
                            format="%(asctime)s %(name)s %(levelname)s %(message)s")
        if args.verbose < 2:
            logging.getLogger("aiortc").setLevel(logging.WARNING)
            logging.getLogger("aioice").setLevel(logging.WARNING)
        return asyncio.run(serve(args))
    except UsageError as exc:
        print(f"localstage: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
