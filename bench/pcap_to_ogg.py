#!/usr/bin/env python3
"""Extract each RTP stream (by SSRC) of a classic pcap and write it as an Ogg Opus file.

The Ogg files carry exactly the Opus packets of the capture (RTP payloads, in sequence order),
so an `ffmpeg -c:a libopus` decode of them is the same decoder work the worker does on the pcap.

    pcap_to_ogg.py CAPTURE.pcap OUTDIR SSRC[=NAME] ...

Writes OUTDIR/NAME.opus (NAME defaults to the SSRC in hex) and prints one line per file.
Only what the fixture needs: classic pcap (either byte order, us or ns), Ethernet or Linux cooked
v1 or raw IPv4, IPv4 / UDP / RTP v2. Anything else is reported and skipped, never guessed.
"""
import os
import struct
import sys

# --- Ogg page CRC: CRC-32, polynomial 0x04C11DB7, not reflected, initial value 0, no final xor.
_CRC_TABLE = []
for _i in range(256):
    _r = _i << 24
    for _ in range(8):
        _r = ((_r << 1) ^ 0x04C11DB7) if (_r & 0x80000000) else (_r << 1)
    _CRC_TABLE.append(_r & 0xFFFFFFFF)


def ogg_crc(data):
    crc = 0
    for b in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC_TABLE[((crc >> 24) ^ b) & 0xFF]
    return crc


def ogg_page(serial, seq, granule, packets, bos=False, eos=False):
    """One Ogg page holding whole packets (each < 255*255 bytes; no continuation needed here)."""
    lacing = bytearray()
    for p in packets:
        n = len(p)
        lacing += b"\xff" * (n // 255) + bytes([n % 255])
    if len(lacing) > 255:
        raise ValueError("too many lacing values for one page")
    flags = (0x02 if bos else 0) | (0x04 if eos else 0)
    header = struct.pack("<4sBBqIIIB", b"OggS", 0, flags, granule, serial, seq, 0, len(lacing))
    page = bytearray(header + lacing + b"".join(packets))
    struct.pack_into("<I", page, 22, ogg_crc(page))
    return bytes(page)


# --- Opus TOC (RFC 6716 3.1): samples at 48 kHz in one packet.
def opus_samples(packet):
    if not packet:
        raise ValueError("empty Opus packet")
    toc = packet[0]
    config = toc >> 3
    if config < 12:          # SILK: 10, 20, 40, 60 ms
        per_frame = [480, 960, 1920, 2880][config & 3]
    elif config < 16:        # Hybrid: 10, 20 ms
        per_frame = [480, 960][config & 1]
    else:                    # CELT: 2.5, 5, 10, 20 ms
        per_frame = [120, 240, 480, 960][config & 3]
    code = toc & 3
    if code == 0:
        frames = 1
    elif code in (1, 2):
        frames = 2
    else:
        if len(packet) < 2:
            raise ValueError("code-3 Opus packet without a frame count byte")
        frames = packet[1] & 0x3F
    return per_frame * frames


def opus_channels(packet):
    return 2 if packet[0] & 0x04 else 1


# --- pcap reading
def read_pcap(path):
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        raise ValueError(f"{path}: shorter than a pcap header")
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise ValueError(f"{path}: not a classic pcap (magic {magic.hex()}); pcapng is not handled here")
    linktype = struct.unpack(endian + "I", data[20:24])[0] & 0x0FFFFFFF
    off = 24
    while off + 16 <= len(data):
        _, _, incl, _ = struct.unpack(endian + "IIII", data[off:off + 16])
        off += 16
        if off + incl > len(data):
            raise ValueError(f"{path}: truncated record at byte {off}")
        yield linktype, data[off:off + incl]
        off += incl


def udp_payload(linktype, frame):
    if linktype == 1:            # Ethernet (with optional 802.1Q tags)
        off = 12
        ethertype = struct.unpack(">H", frame[off:off + 2])[0]
        off += 2
        while ethertype == 0x8100 and off + 4 <= len(frame):
            ethertype = struct.unpack(">H", frame[off + 2:off + 4])[0]
            off += 4
        if ethertype != 0x0800:
            return None
    elif linktype == 113:        # Linux cooked v1
        if struct.unpack(">H", frame[14:16])[0] != 0x0800:
            return None
        off = 16
    elif linktype in (101, 228):  # raw IP / raw IPv4
        off = 0
    else:
        raise ValueError(f"link type {linktype} is not handled by this helper")
    ip = frame[off:]
    if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 17:
        return None
    ihl = (ip[0] & 0x0F) * 4
    total = struct.unpack(">H", ip[2:4])[0]
    udp = ip[ihl:total]
    if len(udp) < 8:
        return None
    return udp[8:struct.unpack(">H", udp[4:6])[0]]


def rtp_streams(path):
    """{ssrc: [(ext_seq, payload)]} for every RTP v2 packet in the capture."""
    streams = {}
    last_seq = {}
    for linktype, frame in read_pcap(path):
        p = udp_payload(linktype, frame)
        if p is None or len(p) < 12 or p[0] >> 6 != 2:
            continue
        cc = p[0] & 0x0F
        pt = p[1] & 0x7F
        if 72 <= pt <= 76:       # RTCP sharing the port
            continue
        seq, _, ssrc = struct.unpack(">HII", p[2:12])
        off = 12 + 4 * cc
        if p[0] & 0x10:          # header extension
            if off + 4 > len(p):
                continue
            off += 4 + 4 * struct.unpack(">H", p[off + 2:off + 4])[0]
        end = len(p)
        if p[0] & 0x20:          # padding
            end -= p[-1]
        if off >= end:
            continue
        # Unwrap the 16-bit sequence number so ordering survives a wrap.
        if ssrc in last_seq:
            prev = last_seq[ssrc]
            delta = (seq - (prev & 0xFFFF) + 0x8000) % 0x10000 - 0x8000
            ext = prev + delta
        else:
            ext = seq
        last_seq[ssrc] = ext
        streams.setdefault(ssrc, []).append((ext, bytes(p[off:end])))
    return streams


def write_ogg_opus(path, packets, serial, channels, preskip):
    """Ogg Opus per RFC 7845: OpusHead page, OpusTags page, then audio pages of up to ~1 s."""
    head = struct.pack("<8sBBHIhB", b"OpusHead", 1, channels, preskip, 48000, 0, 0)
    vendor = b"shelcaster bench pcap_to_ogg"
    tags = struct.pack("<8sI", b"OpusTags", len(vendor)) + vendor + struct.pack("<I", 0)
    seq = 0
    out = [ogg_page(serial, seq, 0, [head], bos=True)]
    seq += 1
    out.append(ogg_page(serial, seq, 0, [tags]))
    seq += 1
    granule = preskip
    page = []
    lacing = 0
    for i, pkt in enumerate(packets):
        granule_before = granule
        granule += opus_samples(pkt)
        need = len(pkt) // 255 + 1
        if page and (lacing + need > 255 or len(page) >= 50):
            out.append(ogg_page(serial, seq, granule_before, page))
            seq += 1
            page, lacing = [], 0
        page.append(pkt)
        lacing += need
    out.append(ogg_page(serial, seq, granule, page, eos=True))
    with open(path, "wb") as f:
        f.write(b"".join(out))
    return granule - preskip


def main(argv):
    if len(argv) < 4:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    pcap, outdir = argv[1], argv[2]
    wanted = []
    for spec in argv[3:]:
        ssrc, _, name = spec.partition("=")
        ssrc = int(ssrc, 0)
        wanted.append((ssrc, name or f"{ssrc:08x}"))
    streams = rtp_streams(pcap)
    os.makedirs(outdir, exist_ok=True)
    status = 0
    for ssrc, name in wanted:
        pkts = streams.get(ssrc)
        if not pkts:
            print(f"error: SSRC {ssrc} ({name}) not found in {pcap}", file=sys.stderr)
            status = 1
            continue
        pkts.sort(key=lambda t: t[0])
        payloads = []
        seen = set()
        for ext, payload in pkts:     # drop duplicates, keep the capture's packets otherwise as they are
            if ext not in seen:
                seen.add(ext)
                payloads.append(payload)
        gaps = (pkts[-1][0] - pkts[0][0] + 1) - len(payloads)
        # Output channel count 2: libopus then decodes the mono-coded packets into both channels
        # at full level, which is exactly what the worker's decoder (created with 2 channels) does.
        # Pre-skip 0: RTP has no pre-skip and the worker plays every decoded sample, codec delay
        # included; with 0 the Ogg file's timeline matches the worker's.
        path = os.path.join(outdir, name + ".opus")
        samples = write_ogg_opus(path, payloads, serial=ssrc & 0xFFFFFFFF, channels=2, preskip=0)
        coded = {opus_channels(p) for p in payloads}
        print(f"{path}: SSRC {ssrc:#010x}, {len(payloads)} packets, {samples} samples "
              f"({samples / 48000:.3f} s), coded channels {sorted(coded)}, sequence gaps {gaps}")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv))
