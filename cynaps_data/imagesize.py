"""The pixel size of a PNG, JPEG, GIF or WebP image, read from its header (standard library only).

Used where an image's bytes pass through the package: the client's upload of image columns
(the task data's image reference carries ``width``/``height``) and the platform's asset store
(the ``assets`` row records them). :func:`image_size` never decodes pixels: it reads the fixed
header fields (PNG ``IHDR``; GIF logical screen; WebP ``VP8 ``/``VP8L``/``VP8X``) or walks the
JPEG segments to the first start-of-frame marker. EXIF orientation is not applied (the size is
the stored one, as browsers without ``image-orientation`` and ``datasets.Image`` report it).
"""

from __future__ import annotations

import struct

#: JPEG start-of-frame markers (SOF0-SOF15 but DHT C4, JPG C8 and DAC CC)
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def image_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` in pixels of a PNG, JPEG, GIF or WebP image, or ``None`` when the
    bytes are none of these or their header is cut short or malformed."""
    try:
        if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
            width, height = struct.unpack(">II", data[16:24])
        elif data[:6] in (b"GIF87a", b"GIF89a"):
            width, height = struct.unpack("<HH", data[6:10])
        elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _webp(data)
        elif data[:3] == b"\xff\xd8\xff":
            return _jpeg(data)
        else:
            return None
    except struct.error:
        return None
    return (width, height) if width > 0 and height > 0 else None


def _webp(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", data[26:30])
        size = (width & 0x3FFF, height & 0x3FFF)
    elif chunk == b"VP8L" and data[20:21] == b"\x2f":
        bits = int.from_bytes(data[21:25], "little")
        size = ((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    elif chunk == b"VP8X" and len(data) >= 30:
        size = (
            int.from_bytes(data[24:27], "little") + 1,
            int.from_bytes(data[27:30], "little") + 1,
        )
    else:
        return None
    return size if size[0] > 0 and size[1] > 0 else None


def _jpeg(data: bytes) -> tuple[int, int] | None:
    i = 2
    n = len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # stand-alone markers
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if marker in _SOF:
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return (width, height) if width > 0 and height > 0 else None
        if length < 2:
            return None
        i += 2 + length
    return None
