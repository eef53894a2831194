"""The card-surface application's images, rendered with Pillow and IPAmj明朝.

The card hands out the holder's name and address, the security code and the My
Number as 1-bit PNG images, and the photo as greyscale JPEG 2000 (soltia48/myna-card
``src/ap/surface.rs``, ``src/data.rs``). Text is drawn with Debian's
``fonts-ipamj-mincho`` (IPAmj明朝, made for the resident register's 文字情報基盤
glyphs), each character centred in a fixed cell, with FreeType's monochrome
rasteriser (no greys to threshold). Sizes (docs/protocol.md, "Card-surface images"):

- the security code and the My Number: 12-pixel cells, 6 pixels wide per digit:
  24×12 and 72×12, the sizes the sources report from a test card;
- name and address (**Chosen**; the sources give no size): 24-pixel cells, twice the
  digit line, so that resident-register variants (髙/高, 𠮷/吉) stay distinct in one
  bit; full-width characters take a square cell, half-width ones half of it; the
  name is one line, the address wraps at 20 full-width cells;
- photo (**Chosen**): 140×180 (the 35×45 mm application photo's 7:9), greyscale
  JPEG 2000 in a JP2 file through Pillow's OpenJPEG codec, at most 4000 bytes.

A character the font has no glyph for is drawn as 〓 (U+3013, the customary
substitute mark) and reported by position (:attr:`Rendered.substituted`).
"""

from __future__ import annotations

import hashlib
import io
import os
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from jpki_sim.errors import UserError

__all__ = [
    "ADDRESS_CELLS",
    "DIGIT_CELL",
    "PHOTO_MAX_BYTES",
    "PHOTO_SIZE",
    "TEXT_CELL",
    "FontMissing",
    "Rendered",
    "address_image",
    "font_path",
    "has_glyph",
    "image_info",
    "my_number_image",
    "name_image",
    "photo_jp2",
    "security_code_image",
    "synthetic_face",
]

#: height of a digit line (security code, My Number); a digit is half as wide
DIGIT_CELL = 12
#: height of a name or address line; a full-width character is a square cell
TEXT_CELL = 24
#: full-width cells per address line
ADDRESS_CELLS = 20
PHOTO_SIZE = (140, 180)
PHOTO_MAX_BYTES = 4000
SUBSTITUTE = "\u3013"  # 〓 GETA MARK

#: where Debian's fonts-ipamj-mincho puts IPAmj明朝 (JPKI_SIM_FONT overrides)
FONT_FILES = (
    "/usr/share/fonts/truetype/ipamj/ipamjm.ttf",
    "/usr/share/fonts/opentype/ipamj/ipamjm.ttf",
    "/usr/share/fonts/truetype/fonts-japanese-mincho.ttf",
)
_VARIATION_SELECTORS = ((0xFE00, 0xFE0F), (0xE0100, 0xE01EF))


class FontMissing(UserError):
    """IPAmj明朝 is not installed."""


@dataclass(frozen=True)
class Rendered:
    """An encoded image and what rendering it had to substitute."""

    data: bytes
    size: tuple[int, int]
    #: positions (in characters of the text) drawn as 〓 for want of a glyph
    substituted: tuple[int, ...] = ()


def font_path() -> Path:
    """IPAmj明朝's file: ``$JPKI_SIM_FONT`` or where fonts-ipamj-mincho installs it."""
    override = os.environ.get("JPKI_SIM_FONT")
    for candidate in ((override,) if override else FONT_FILES):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise FontMissing(
        "IPAmj明朝 not found: install Debian's fonts-ipamj-mincho (tools/setup.sh does), "
        "or point JPKI_SIM_FONT at ipamjm.ttf"
    )


@lru_cache(maxsize=4)
def _font(path: Path, size: int) -> Any:
    from PIL import ImageFont

    engine = ImageFont.Layout.RAQM if _has_raqm() else ImageFont.Layout.BASIC
    return ImageFont.truetype(str(path), size, layout_engine=engine)


@lru_cache(maxsize=1)
def _has_raqm() -> bool:
    from PIL import features

    return bool(features.check("raqm"))


@lru_cache(maxsize=2)
def _cmap(path: Path) -> frozenset[int]:
    from fontTools.ttLib import TTFont

    with TTFont(str(path), lazy=True) as font:
        return frozenset(font.getBestCmap())


def has_glyph(char: str) -> bool:
    """Whether IPAmj明朝 draws ``char`` (one code point)."""
    return ord(char) in _cmap(font_path())


def _is_selector(char: str) -> bool:
    cp = ord(char)
    return any(lo <= cp <= hi for lo, hi in _VARIATION_SELECTORS)


def _clusters(text: str) -> list[str]:
    """Characters with any variation selector kept on the character before it."""
    out: list[str] = []
    for ch in text:
        if out and _is_selector(ch):
            out[-1] += ch
        else:
            out.append(ch)
    return out


def _full_width(char: str) -> bool:
    # Japanese text treats the ambiguous widths (○ △ □ ・) as full width
    return unicodedata.east_asian_width(char[0]) in ("F", "W", "A")


def _png(image: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG", optimize=True)
    return buf.getvalue()


def _draw_cells(lines: list[list[str]], cell: int, *, width_cells: float | None) -> Any:
    """A 1-bit image of ``lines`` of character clusters, each centred in its cell."""
    from PIL import Image, ImageDraw

    half = cell // 2
    widths = [sum(cell if _full_width(c) else half for c in line) for line in lines]
    width = int(width_cells * cell) if width_cells is not None else max(widths, default=0)
    image = Image.new("1", (max(width, half), cell * max(len(lines), 1)), 1)
    draw = ImageDraw.Draw(image)  # monochrome glyphs on a mode "1" image
    font = _font(font_path(), cell - cell // 12)
    for row, line in enumerate(lines):
        x = 0
        for cluster in line:
            w = cell if _full_width(cluster) else half
            draw.text((x + w / 2, row * cell + cell / 2), cluster, font=font, fill=0, anchor="mm")
            x += w
    return image


def _prepare(text: str) -> tuple[list[str], tuple[int, ...]]:
    """Clusters to draw, with 〓 for each character the font lacks, and their positions."""
    clusters = _clusters(text)
    substituted = []
    drawn = []
    for i, cluster in enumerate(clusters):
        if has_glyph(cluster[0]):
            # variation selectors need the complex layout engine to pick the glyph
            drawn.append(cluster if _has_raqm() else cluster[0])
        else:
            drawn.append(SUBSTITUTE)
            substituted.append(i)
    return drawn, tuple(substituted)


def _text_image(text: str, cell: int, *, wrap_cells: int | None) -> Rendered:
    clusters, substituted = _prepare(text)
    lines: list[list[str]] = [[]]
    used = 0.0
    for cluster in clusters:
        w = 1.0 if _full_width(cluster) else 0.5
        if wrap_cells is not None and used + w > wrap_cells and lines[-1]:
            lines.append([])
            used = 0.0
        lines[-1].append(cluster)
        used += w
    image = _draw_cells(lines, cell, width_cells=None)
    return Rendered(_png(image), image.size, substituted)


def name_image(name: str) -> Rendered:
    """DF25: the name on one line of 24-pixel cells (U+3000 between family and given name)."""
    if not name:
        raise ValueError("the name is empty")
    return _text_image(name, TEXT_CELL, wrap_cells=None)


def address_image(address: str) -> Rendered:
    """DF26: the address in lines of at most 20 full-width 24-pixel cells."""
    if not address:
        raise ValueError("the address is empty")
    return _text_image(address, TEXT_CELL, wrap_cells=ADDRESS_CELLS)


def _digits_image(digits: str, count: int, what: str) -> Rendered:
    if len(digits) != count or not digits.isascii() or not digits.isdigit():
        raise ValueError(f"{what} is {count} digits")
    return _text_image(digits, DIGIT_CELL, wrap_cells=None)


def security_code_image(code: str) -> Rendered:
    """DF2A: the 4-digit security code, 24×12."""
    return _digits_image(code, 4, "the security code")


def my_number_image(number: str) -> Rendered:
    """Surface EF 0005's DF41: the 12-digit My Number, 72×12."""
    return _digits_image(number, 12, "a My Number")


# ---------------------------------------------------------------- the photo


def synthetic_face(seed: bytes, size: tuple[int, int] = PHOTO_SIZE, *, sex: str = "") -> Any:
    """A clearly synthetic portrait (greyscale, a drawn face, marked TEST), fixed by ``seed``.

    ``sex`` (ISO 5218) only picks the hair: long for "2", short for "1", any otherwise.
    """
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    h = hashlib.sha256(b"jpki-sim face " + bytes(seed)).digest()
    scale = 4
    w, ht = size[0] * scale, size[1] * scale
    img = Image.new("L", (w, ht), 0)
    draw = ImageDraw.Draw(img)
    for y in range(ht):  # a studio backdrop, lighter at the top
        draw.line([(0, y), (w, y)], fill=228 - 38 * y // ht)
    cx = w // 2
    skin = 200 - h[0] % 36
    hair = 28 + h[1] % 64
    suit = 44 + h[2] % 56
    head_w = w * (44 + h[3] % 6) / 100
    head_h = ht * (41 + h[4] % 4) / 100
    top = ht * 0.15
    chin = top + head_h
    # shoulders, a shirt collar, the neck
    draw.ellipse([cx - w * 0.66, ht * 0.71, cx + w * 0.66, ht * 1.45], fill=suit)
    draw.polygon([(cx - w * 0.12, ht * 0.72), (cx, ht * 0.9), (cx + w * 0.12, ht * 0.72)],
                 fill=238)  # fmt: skip
    draw.rectangle([cx - head_w * 0.22, chin - head_h * 0.2, cx + head_w * 0.22, ht * 0.76],
                   fill=skin - 22)  # fmt: skip
    # hair behind the head (long, short or none), ears, the head
    style = {"1": h[5] % 2, "2": 2}.get(sex, h[5] % 3)  # 0 short, 1 cropped, 2 long
    if style != 1:
        wide = 0.66 if style == 2 else 0.56
        draw.ellipse([cx - head_w * wide, top - head_h * 0.1, cx + head_w * wide,
                      top + head_h * (1.08 if style == 2 else 0.7)], fill=hair)  # fmt: skip
    for side in (-1, 1):
        ex = cx + side * head_w * 0.49
        draw.ellipse([ex - head_w * 0.08, top + head_h * 0.42, ex + head_w * 0.08,
                      top + head_h * 0.62], fill=skin - 12)  # fmt: skip
    draw.ellipse([cx - head_w / 2, top, cx + head_w / 2, chin], fill=skin)
    # the hairline over the forehead
    draw.chord([cx - head_w * 0.53, top - head_h * 0.08, cx + head_w * 0.53,
                top + head_h * (0.52 + h[6] % 8 / 100)], 180, 360, fill=hair)  # fmt: skip
    # eyes, brows, nose, mouth
    eye_y = top + head_h * 0.52
    for side in (-1, 1):
        ex = cx + side * head_w * 0.19
        draw.ellipse([ex - head_w * 0.07, eye_y - head_h * 0.028, ex + head_w * 0.07,
                      eye_y + head_h * 0.028], fill=246)  # fmt: skip
        draw.ellipse([ex - head_w * 0.032, eye_y - head_h * 0.027, ex + head_w * 0.032,
                      eye_y + head_h * 0.027], fill=34)  # fmt: skip
        brow = eye_y - head_h * (0.08 + h[7] % 4 / 100)
        draw.line([(ex - head_w * 0.09, brow + side * scale), (ex + head_w * 0.09,
                   brow - side * scale)], fill=hair, width=scale * 3)  # fmt: skip
    draw.line([(cx, eye_y + head_h * 0.06), (cx - head_w * 0.035, eye_y + head_h * 0.19),
               (cx + head_w * 0.02, eye_y + head_h * 0.21)], fill=skin - 60, width=scale * 2)
    mouth_y = top + head_h * 0.8
    smile = h[8] % 3 * scale * 2
    draw.arc([cx - head_w * 0.13, mouth_y - head_h * 0.05 - smile, cx + head_w * 0.13,
              mouth_y + head_h * 0.035], 20, 160, fill=96, width=scale * 2)  # fmt: skip
    img = img.filter(ImageFilter.GaussianBlur(scale * 0.6)).resize(size, Image.Resampling.LANCZOS)
    # and the word that says what it is
    mark = ImageDraw.Draw(img)
    try:
        font = _font(font_path(), 13)
    except FontMissing:
        font = ImageFont.load_default()
    mark.rectangle([0, size[1] - 17, size[0], size[1]], fill=255)
    mark.text((size[0] / 2, size[1] - 8), "TEST 見本", font=font, fill=0, anchor="mm")
    return img


def _open_photo(source: bytes) -> Any:
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(source))
        image.load()
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise UserError(f"the photo is not an image Pillow can read ({exc})") from None
    return ImageOps.exif_transpose(image)


def photo_jp2(source: bytes | None = None, *, seed: bytes = b"", sex: str = "") -> bytes:
    """DF27: the holder's photo as greyscale JPEG 2000 (JP2), 140×180, at most 4000 bytes.

    ``source`` is any image Pillow reads (JPEG, PNG, WebP, BMP, TIFF, GIF ...); it is
    cropped to 7:9 around its upper middle (where a portrait has the face). Without
    one, :func:`synthetic_face` of ``seed`` (and ``sex``) is used.
    """
    from PIL import ImageOps, features

    if not features.check("jpg_2000"):
        raise UserError("Pillow was built without OpenJPEG (JPEG 2000): run tools/setup.sh")
    if source is None:
        image = synthetic_face(seed, sex=sex)
    else:
        image = ImageOps.fit(_open_photo(source).convert("L"), PHOTO_SIZE, centering=(0.5, 0.4))
    image = image.convert("L")
    rate = 5.0
    while True:
        buf = io.BytesIO()
        image.save(buf, "JPEG2000", quality_mode="rates", quality_layers=[rate],
                   irreversible=True, no_jp2=False)  # fmt: skip
        data = buf.getvalue()
        if len(data) <= PHOTO_MAX_BYTES:
            return data
        rate *= 1.25


def image_info(data: bytes) -> tuple[str, str, tuple[int, int]]:
    """(format, mode, size) of an encoded image, e.g. ``("PNG", "1", (24, 12))``."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(bytes(data))) as image:
            return str(image.format), str(image.mode), (int(image.width), int(image.height))
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"not an image ({exc})") from None
