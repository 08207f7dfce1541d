"""A small, strict DICOM Part 10 structure walker (no value decoding).

pydicom is lenient on purpose: it reads a file cut inside its last element
(MR_truncated.dcm) or an implicit-VR body under an explicit transfer syntax
without an error. The e2e suite needs the opposite: to know exactly where the
file meta group ends (DIMSE sends only the bytes after it) and whether every
declared length fits, every undefined-length sequence/item/fragment list is
closed, and nothing trails. `split_part10` and `check_structure` do that.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
EXPLICIT_BE = "1.2.840.10008.1.2.2"

# Explicit VRs with a 2-byte reserved field and a 4-byte length.
LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
SHORT_VRS = {
    b"AE",
    b"AS",
    b"AT",
    b"CS",
    b"DA",
    b"DS",
    b"DT",
    b"FL",
    b"FD",
    b"IS",
    b"LO",
    b"LT",
    b"PN",
    b"SH",
    b"SL",
    b"SS",
    b"ST",
    b"TM",
    b"UI",
    b"UL",
    b"US",
}
UNDEFINED = 0xFFFFFFFF
ITEM, ITEM_END, SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
PIXEL_DATA = 0x7FE00010


class Part10Error(ValueError):
    """The bytes are not a well-formed Part 10 file / dataset."""


@dataclass
class Part10:
    meta: dict[int, bytes]  # tag -> raw value of each file meta element
    meta_end: int  # offset of the first dataset byte
    transfer_syntax: str | None

    def meta_str(self, tag: int) -> str | None:
        v = self.meta.get(tag)
        return None if v is None else v.rstrip(b"\x00 ").decode("ascii", "replace")


def split_part10(data: bytes) -> Part10:
    """Parse preamble, DICM and the group-0002 elements (always explicit VR LE).

    Walks the elements rather than trusting (0002,0000), so a file without a
    group length still splits correctly.
    """
    if len(data) < 132 or data[128:132] != b"DICM":
        raise Part10Error("no DICM prefix at offset 128")
    pos, meta = 132, {}
    while pos + 8 <= len(data):
        group, elem = struct.unpack_from("<HH", data, pos)
        if group != 0x0002:
            break
        vr = data[pos + 4 : pos + 6]
        if vr in LONG_VRS:
            if pos + 12 > len(data):
                raise Part10Error("meta element header cut")
            (length,) = struct.unpack_from("<I", data, pos + 8)
            hdr = 12
        elif vr in SHORT_VRS:
            (length,) = struct.unpack_from("<H", data, pos + 6)
            hdr = 8
        else:
            raise Part10Error(f"bad VR {vr!r} in file meta at {pos}")
        if length == UNDEFINED or pos + hdr + length > len(data):
            raise Part10Error(f"meta element ({group:04X},{elem:04X}) overruns the file")
        meta[(group << 16) | elem] = data[pos + hdr : pos + hdr + length]
        pos += hdr + length
    ts = meta.get(0x00020010)
    return Part10(meta, pos, None if ts is None else ts.rstrip(b"\x00 ").decode("ascii", "replace"))


def dataset_bytes(data: bytes) -> bytes:
    """The bytes after the file meta group: what DIMSE carries on the wire."""
    return data[split_part10(data).meta_end :]


class _Walker:
    def __init__(self, buf: bytes, implicit: bool, little: bool):
        self.buf, self.implicit = buf, implicit
        self.e = "<" if little else ">"
        self.top_tags: list[int] = []

    def _tag(self, pos: int) -> int:
        if pos + 4 > len(self.buf):
            raise Part10Error(f"tag cut at {pos}")
        g, e = struct.unpack_from(self.e + "HH", self.buf, pos)
        return (g << 16) | e

    def _header(self, pos: int, implicit: bool) -> tuple[int, bytes | None, int, int]:
        """-> (tag, vr or None, length, header size)."""
        tag = self._tag(pos)
        if tag in (ITEM, ITEM_END, SEQ_END) or implicit:
            if pos + 8 > len(self.buf):
                raise Part10Error(f"element header cut at {pos}")
            (length,) = struct.unpack_from(self.e + "I", self.buf, pos + 4)
            return tag, None, length, 8
        vr = self.buf[pos + 4 : pos + 6]
        if vr in LONG_VRS:
            if pos + 12 > len(self.buf):
                raise Part10Error(f"element header cut at {pos}")
            (length,) = struct.unpack_from(self.e + "I", self.buf, pos + 8)
            return tag, vr, length, 12
        if vr in SHORT_VRS:
            if pos + 8 > len(self.buf):
                raise Part10Error(f"element header cut at {pos}")
            (length,) = struct.unpack_from(self.e + "H", self.buf, pos + 6)
            return tag, vr, length, 8
        raise Part10Error(f"bad VR {vr!r} for ({tag >> 16:04X},{tag & 0xFFFF:04X}) at {pos}")

    def elements(self, pos: int, end: int | None, implicit: bool, top: bool) -> int:
        """Walk elements from pos to `end` (None: to an item delimiter). -> new pos."""
        while True:
            if end is not None and pos >= end:
                if pos > end:
                    raise Part10Error(f"element overruns its container (ends {pos}, container {end})")
                return pos
            if end is None and pos >= len(self.buf):
                raise Part10Error("end of data inside an undefined-length item")
            tag, vr, length, hdr = self._header(pos, implicit)
            if tag == ITEM_END:
                if end is not None:
                    raise Part10Error(f"stray item delimiter at {pos}")
                return pos + hdr
            if tag in (ITEM, SEQ_END):
                raise Part10Error(f"stray item tag at {pos}")
            if top:
                self.top_tags.append(tag)
            pos += hdr
            if length == UNDEFINED:
                if tag == PIXEL_DATA and vr != b"SQ" and vr != b"UN":
                    pos = self.fragments(pos)
                elif vr in (b"SQ", None):
                    pos = self.sequence(pos, None, implicit)
                elif vr == b"UN":
                    pos = self.sequence(pos, None, True)  # PS3.5 6.2.2: implicit VR LE inside
                else:
                    raise Part10Error(f"undefined length with VR {vr!r} at {pos}")
            else:
                if pos + length > len(self.buf):
                    raise Part10Error(
                        f"({tag >> 16:04X},{tag & 0xFFFF:04X}) declares {length} bytes, {len(self.buf) - pos} left"
                    )
                if vr == b"SQ":
                    self.sequence(pos, pos + length, implicit)
                pos += length

    def sequence(self, pos: int, end: int | None, implicit: bool) -> int:
        while True:
            if end is not None and pos >= end:
                if pos > end:
                    raise Part10Error("item overruns its sequence")
                return pos
            tag, _, length, hdr = self._header(pos, True)
            pos += hdr
            if tag == SEQ_END:
                if end is not None:
                    raise Part10Error("sequence delimiter in a defined-length sequence")
                return pos
            if tag != ITEM:
                raise Part10Error(f"expected an item at {pos - hdr}, found {tag:08X}")
            if length == UNDEFINED:
                pos = self.elements(pos, None, implicit, False)
            else:
                if pos + length > len(self.buf):
                    raise Part10Error("item overruns the data")
                pos = self.elements(pos, pos + length, implicit, False)

    def fragments(self, pos: int) -> int:
        n = 0
        while True:
            tag, _, length, hdr = self._header(pos, True)
            pos += hdr
            if tag == SEQ_END:
                if n == 0:
                    raise Part10Error("encapsulated pixel data without a basic offset table item")
                return pos
            if tag != ITEM or length == UNDEFINED or pos + length > len(self.buf):
                raise Part10Error(f"bad or cut pixel data fragment at {pos - hdr}")
            pos += length
            n += 1


def check_structure(data: bytes) -> tuple[Part10, list[int]]:
    """Walk a whole Part 10 file; raise Part10Error at the first defect.

    Returns the meta and the list of top-level dataset tags (in file order).
    A single trailing NUL byte after the dataset (seen in deflated files) is
    tolerated; anything more is an error.
    """
    p10 = split_part10(data)
    ts = p10.transfer_syntax
    if not ts:
        raise Part10Error("file meta has no Transfer Syntax UID")
    body = data[p10.meta_end :]
    if ts == DEFLATED_LE:
        d = zlib.decompressobj(-15)
        try:
            body = d.decompress(body) + d.flush()
        except zlib.error as e:
            raise Part10Error(f"deflate stream is damaged: {e}") from None
        if not d.eof:
            raise Part10Error("deflate stream is cut")
    implicit = ts == IMPLICIT_LE
    little = ts != EXPLICIT_BE
    w = _Walker(body, implicit, little)
    end = w.elements(0, len(body), implicit, True)
    if end != len(body):
        raise Part10Error("trailing bytes after the dataset")
    tags = w.top_tags
    if tags != sorted(tags):
        raise Part10Error("top-level elements are not in ascending tag order")
    return p10, tags
