"""What an image part costs: its tiles, from its size, read from the head of an inline image."""

from __future__ import annotations

import base64
import math
import re

# A picture whose size we cannot read is assumed to be this big (4 tiles at `high`).
DEFAULT_IMAGE_SIZE = (1024, 1024)


def image_tiles(width: int, height: int) -> int:
    """512 px tiles after fitting into 2048x2048 and shrinking the short side to 768."""
    if width <= 0 or height <= 0:
        width, height = DEFAULT_IMAGE_SIZE
    scale = min(1.0, 2048 / max(width, height))
    w, h = width * scale, height * scale
    scale = min(1.0, 768 / min(w, h))
    w, h = w * scale, h * scale
    return math.ceil(w / 512) * math.ceil(h / 512)


_DATA_URL = re.compile(r"^data:image/[\w.+-]+;base64,")
# Enough base64 for the header of PNG, GIF and WebP, and of most JPEGs' frame marker.
_SNIFF_CHARS = 87384


def image_size(url: str) -> tuple[int, int] | None:
    """Width and height of an inline (data: URL) PNG, GIF, WebP or JPEG; None otherwise."""
    match = _DATA_URL.match(url)
    if match is None:
        return None
    chunk = url[match.end() : match.end() + _SNIFF_CHARS]
    chunk = chunk[: len(chunk) - len(chunk) % 4]
    try:
        head = base64.b64decode(chunk)
    except ValueError:
        return None
    return _sniff_size(head)


def _sniff_size(head: bytes) -> tuple[int, int] | None:
    if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) >= 24:
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
        return int.from_bytes(head[6:8], "little"), int.from_bytes(head[8:10], "little")
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP" and len(head) >= 30:
        kind = head[12:16]
        if kind == b"VP8X":
            return 1 + int.from_bytes(head[24:27], "little"), 1 + int.from_bytes(
                head[27:30], "little"
            )
        if kind == b"VP8 ":
            return (
                int.from_bytes(head[26:28], "little") & 0x3FFF,
                int.from_bytes(head[28:30], "little") & 0x3FFF,
            )
        if kind == b"VP8L":
            bits = int.from_bytes(head[21:25], "little")
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if head[:2] == b"\xff\xd8":
        return _jpeg_size(head)
    return None


def _jpeg_size(head: bytes) -> tuple[int, int] | None:
    at = 2
    while at + 9 < len(head):
        if head[at] != 0xFF:
            return None
        marker = head[at + 1]
        length = int.from_bytes(head[at + 2 : at + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height = int.from_bytes(head[at + 5 : at + 7], "big")
            width = int.from_bytes(head[at + 7 : at + 9], "big")
            return width, height
        at += 2 + length
    return None
