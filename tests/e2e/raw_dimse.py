"""Hand-made PS3.8 PDUs, for what DIMSE toolkits never send: a command and
its data set in one P-DATA PDU, deflated requests nested thousands of
levels deep, deflate bombs."""

from __future__ import annotations

import socket
import struct
import zlib

COMMIT = "1.2.840.10008.1.20.1"
COMMIT_INSTANCE = "1.2.840.10008.1.20.1.1"
VERIFY = "1.2.840.10008.1.1"
IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
DEFLATED = "1.2.840.10008.1.2.1.99"


def _item(kind: int, body: bytes) -> bytes:
    return struct.pack(">BBH", kind, 0, len(body)) + body


def _pdu(kind: int, body: bytes) -> bytes:
    return struct.pack(">BBI", kind, 0, len(body)) + body


def associate(port: int, contexts, called: str = "FULCRUM") -> socket.socket:
    """An accepted association; `contexts` are (id, abstract syntax, [transfer syntaxes])."""
    return associate_answered(port, contexts, called)[0]


def request(port: int, contexts, called: str = "FULCRUM") -> tuple[socket.socket, int, bytes]:
    """An A-ASSOCIATE-RQ proposing `contexts`; the socket, and the type and body of the PDU answering it."""
    body = struct.pack(">HH", 1, 0) + called.encode().ljust(16) + b"RAWSCU".ljust(16) + bytes(32)
    body += _item(0x10, b"1.2.840.10008.3.1.1.1")
    for cid, abstract, syntaxes in contexts:
        pc = struct.pack(">BBBB", cid, 0, 0, 0) + _item(0x30, abstract.encode())
        pc += b"".join(_item(0x40, ts.encode()) for ts in syntaxes)
        body += _item(0x20, pc)
    body += _item(0x50, _item(0x51, struct.pack(">I", 1 << 20)) + _item(0x52, b"1.2.3.4.5.6"))
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(_pdu(1, body))
    return (s, *read_pdu(s))


def associate_answered(port: int, contexts, called: str = "FULCRUM") -> tuple[socket.socket, list[tuple[int, int]]]:
    """`associate`, with the A-ASSOCIATE-AC's (context id, result) items in order (0: accepted)."""
    s, kind, ac = request(port, contexts, called)
    assert kind == 2, f"association not accepted (PDU type {kind:#x})"
    results, i = [], 68
    while i + 4 <= len(ac):
        item, _, length = struct.unpack(">BBH", ac[i : i + 4])
        if item == 0x21:
            results.append((ac[i + 4], ac[i + 6]))
        i += 4 + length
    return s, results


def pdata(pdvs) -> bytes:
    """`pdvs`: (context id, flags, bytes); flags: 1 command, 2 last fragment."""
    return _pdu(4, b"".join(struct.pack(">IBB", len(d) + 2, pc, fl) + d for pc, fl, d in pdvs))


def release(s: socket.socket) -> None:
    s.sendall(_pdu(5, bytes(4)))
    read_pdu(s)
    s.close()


def _recv(s: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        got = s.recv(n - len(out))
        if not got:
            raise EOFError(f"connection closed after {len(out)} of {n} bytes")
        out += got
    return out


def read_pdu(s: socket.socket) -> tuple[int, bytes]:
    kind, _, length = struct.unpack(">BBI", _recv(s, 6))
    return kind, _recv(s, length)


def _elem(tag: int, value) -> bytes:
    if isinstance(value, int):
        v = struct.pack("<H", value)
    else:
        v = value if isinstance(value, bytes) else value.encode()
        v += b"\0" * (len(v) % 2)
    return struct.pack("<HHI", 0, tag, len(v)) + v


def command(fields: dict[int, int | str]) -> bytes:
    """A command set (group 0000, Implicit VR Little Endian) with its group length."""
    body = b"".join(_elem(t, v) for t, v in sorted(fields.items()))
    return _elem(0, struct.pack("<I", len(body))) + body


def read_command(s: socket.socket) -> dict[int, int | str]:
    """The next whole command set (data sets after it are skipped)."""
    buf = b""
    while True:
        kind, body = read_pdu(s)
        assert kind == 4, f"PDU type {kind:#x} instead of P-DATA"
        i = 0
        while i < len(body):
            length, _, flags = struct.unpack(">IBB", body[i : i + 6])
            if flags & 1:
                buf += body[i + 6 : i + 4 + length]
                if flags & 2:
                    return _parse_command(buf)
            i += 4 + length


def _parse_command(b: bytes) -> dict[int, int | str]:
    out, i = {}, 0
    while i + 8 <= len(b):
        _, tag, length = struct.unpack("<HHI", b[i : i + 8])
        v = b[i + 8 : i + 8 + length]
        out[tag] = struct.unpack("<H", v)[0] if length == 2 else v.rstrip(b"\0 ").decode("latin-1")
        i += 8 + length
    return out


def n_action(message_id: int) -> bytes:
    return command({0x0003: COMMIT, 0x0100: 0x0130, 0x0110: message_id, 0x0800: 0,
                    0x1001: COMMIT_INSTANCE, 0x1008: 1})


def n_event_report_rsp(rq: dict) -> bytes:
    return command({0x0002: COMMIT, 0x0100: 0x8100, 0x0120: rq[0x0110], 0x0800: 0x0101, 0x0900: 0})


def explicit(tag: tuple[int, int], vr: bytes, value: bytes) -> bytes:
    """An Explicit VR Little Endian element with a 16-bit length."""
    value += b"\0" * (len(value) % 2)
    return struct.pack("<HH", *tag) + vr + struct.pack("<H", len(value)) + value


def commit_request(transaction: str, refs: list[tuple[str, str]]) -> bytes:
    """A Storage Commitment request data set, Explicit VR Little Endian."""
    items = b"".join(
        struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
        + explicit((0x0008, 0x1150), b"UI", c.encode())
        + explicit((0x0008, 0x1155), b"UI", i.encode())
        + struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
        for c, i in refs
    )
    seq = struct.pack("<HH", 0x0008, 0x1199) + b"SQ\0\0" + struct.pack("<I", 0xFFFFFFFF)
    seq += items + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    return explicit((0x0008, 0x1195), b"UI", transaction.encode()) + seq


def nested(depth: int, tag=(0x0008, 0x1199)) -> bytes:
    """A sequence nested `depth` levels deep, every length undefined."""
    opening = struct.pack("<HH", *tag) + b"SQ\0\0" + struct.pack("<I", 0xFFFFFFFF)
    opening += struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
    closing = struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    return opening * depth + explicit((0x0008, 0x0100), b"SH", b"XX") + closing * depth


def deflate(raw: bytes) -> bytes:
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    return z.compress(raw) + z.flush()
