"""HTTP/2 frames and HPACK fields written byte by byte (RFC 9113, RFC 7541), for peers that need
the exact bytes, malformed ones included: the raw attacker (Tests/Peers/h2_attack.py) and the
fuzz seed writer (Fuzz/make_corpus.py, which puts this folder on its path).
"""
import struct

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20


def frame(ftype, flags, stream, payload=b""):
    """A frame: 9-byte header (length, type, flags, stream id with the reserved bit clear), then
    the payload as given."""
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", stream & 0x7FFFFFFF) + payload


def window_update(stream, increment):
    return frame(WINDOW_UPDATE, 0, stream, struct.pack(">I", increment & 0x7FFFFFFF))


def base128(value):
    """`value` (not negative) in groups of 7 bits, least significant first, the high bit set on all
    but the last: HPACK's integer continuation, and protobuf's varint."""
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack_int(value, prefix_bits, first=0):
    """An HPACK integer in a `prefix_bits`-bit prefix; `first` holds the bits above the prefix."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    return bytes([first | limit]) + base128(value - limit)


def hpack_str(s):
    """A string literal, without Huffman coding."""
    b = s.encode() if isinstance(s, str) else s
    return hpack_int(len(b), 7) + b


def literal(name, value, indexing=False):
    """A literal field with a new name: with incremental indexing (0x40, it goes into the
    dynamic table) or without (0x00)."""
    return (b"\x40" if indexing else b"\x00") + hpack_str(name) + hpack_str(value)


def literal_name(index, value):
    """A literal field without indexing whose name is static-table entry `index`."""
    return hpack_int(index, 4) + hpack_str(value)
