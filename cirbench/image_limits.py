"""Limits every image read obeys: one pixel budget for every decode path, and the cheap end-marker check.

Pixel budget: an image whose header declares more than ``PIXEL_BUDGET`` pixels is refused before any pixel is
decoded, by the CPU workers (PIL) and by ``--decode device`` alike (``decoding`` hands such a JPEG to the workers'
path, so the refusal is the same line). Why one budget of our own: PIL only warns between its limit and twice it,
and ``torchvision``'s ``decode_jpeg`` has none, so a 20000x20000 header would allocate 1.2 GB per image.

End marker: a JPEG ends with ``FF D9`` and a PNG with its ``IEND`` chunk; a file cut short lacks them. Reading the
last bytes finds a truncated file without decoding it (``data check``'s default), where ``--deep`` decodes.
Rule: trailing padding (zero bytes, ASCII whitespace) that some cameras write is skipped; then the PNG must end
with ``IEND`` and its CRC, and the JPEG must hold ``FF D9`` in its last 32 bytes (a few bytes of trailer after it
are tolerated; scan data never holds ``FF D9``, so a JPEG cut in its pixels never passes).
"""

from __future__ import annotations

import os
import re
import warnings

from PIL import Image

from cirbench.errors import LimitError

PIXEL_BUDGET = 89_478_485  # PIL's default MAX_IMAGE_PIXELS (about 9459 x 9459)
TRUNCATED = "truncated: no end marker"
_JPEG_START, _PNG_START = b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"
_JPEG_END, _PNG_END = b"\xff\xd9", b"IEND\xaeB`\x82"
_PADDING = b"\x00 \t\r\n"
_TAIL = 4096  # bytes read from the end: padding beyond this is not skipped
_JPEG_WINDOW = 32


class OverBudget(Exception):
    """An image header declaring more pixels than the budget (turned into a ``LimitError`` naming the file)."""

    def __init__(self, pixels: int | None, size: tuple[int, int] | None = None):
        self.pixels, self.size = pixels, size
        dims = f"{size[0]}x{size[1]} = " if size else ""
        count = f"{pixels:,}" if pixels is not None else f"more than {2 * PIXEL_BUDGET:,}"
        super().__init__(f"{dims}{count} pixels, over the pixel budget of {PIXEL_BUDGET:,}")


def over_budget(width: int, height: int) -> OverBudget | None:
    """The refusal of a ``width`` x ``height`` image, or None within the budget (for decoders that read headers
    themselves, such as the device path's JPEG frame header)."""
    return OverBudget(width * height, (width, height)) if width * height > PIXEL_BUDGET else None


def open_within_budget(path: os.PathLike | str) -> Image.Image:
    """PIL's lazy open (header only), refused with ``OverBudget`` when the declared size is over the budget."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            handle = Image.open(path)
        except Image.DecompressionBombError as error:  # over twice PIL's limit: PIL names only the pixel count
            found = re.search(r"\((\d+) pixels\)", str(error))
            raise OverBudget(int(found.group(1)) if found else None) from None
    refused = over_budget(*handle.size)
    if refused is not None:
        handle.close()
        raise refused
    return handle


def open_image(path: os.PathLike | str) -> Image.Image:
    """``open_within_budget`` with the refusal as the one-line ``LimitError`` naming the file."""
    try:
        return open_within_budget(path)
    except OverBudget as over:
        raise LimitError(f"{path}: {over}; not decoded: shrink the image or remove it") from None


def end_marker_problem(path: os.PathLike | str, size: int | None = None) -> str | None:
    """``TRUNCATED`` (with the marker) for a JPEG or PNG whose end marker is missing; None otherwise (other
    formats are not checked here). Reads the first 8 and at most the last 4096 bytes."""
    with open(path, "rb") as handle:
        head = handle.read(8)
        jpeg, png = head.startswith(_JPEG_START), head == _PNG_START
        if not (jpeg or png):
            return None
        size = os.fstat(handle.fileno()).st_size if size is None else size
        handle.seek(max(0, size - _TAIL))
        tail = handle.read(_TAIL)
    if not _ends_well(tail, jpeg):
        return f"{TRUNCATED} (a JPEG ends with FF D9)" if jpeg else f"{TRUNCATED} (a PNG ends with its IEND chunk)"
    return None


def _ends_well(tail: bytes, jpeg: bool) -> bool:
    tail = tail.rstrip(_PADDING)
    return _JPEG_END in tail[-_JPEG_WINDOW:] if jpeg else tail.endswith(_PNG_END)
