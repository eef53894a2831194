"""A picture of the card's front, drawn from the card's data, marked as a test card.

The layout follows the real card's front (ISO ID-1, 85.60×53.98 mm, 3.18 mm corners):
氏名 and the name at the top, 住所 and up to three address lines, the birth date in
the Japanese era with the sex, the card's expiry in its coloured box, 個人番号カード
at the bottom, the photo on the right with the issuer and the security code under
it. Drawn with Pillow and IPAmj明朝 at 14 pixels per millimetre (1198×756 on a
transparent margin with a soft shadow), with a red TEST CARD label and a 見本
watermark so that the picture can never pass for a real card.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from datetime import date
from typing import Any

from jpki_sim.errors import UserError
from jpki_sim.profiles.jpki.codes import era_of
from jpki_sim.profiles.jpki.images import font_path, photo_jp2

__all__ = ["FrontData", "draw_front", "era_date"]

PX_PER_MM = 14
CARD_MM = (85.60, 53.98)
CORNER_MM = 3.18
MARGIN = 36
INK = (38, 30, 34)
LABEL = (120, 92, 104)
ACCENT = (196, 60, 98)
EXPIRY_FILL = (250, 214, 226)
SEX_TEXT = {"1": "男", "2": "女"}


@dataclass(frozen=True)
class FrontData:
    """What the front shows (from the chip or the card file)."""

    name: str
    address: str
    birthdate: date
    sex: str  # ISO 5218
    expires: date
    security_code: str
    #: the photo as stored (JPEG 2000) or any image Pillow reads; None draws a synthetic one
    photo: bytes | None = None
    issuer: str = "jpki-sim 試験発行"
    seed: bytes = b""

    @classmethod
    def of_state(cls, state: Any) -> FrontData:
        """The front of a card state: its photo as stored (or, in a card file from
        before the photo was kept, the synthetic face of its holder)."""
        ident = state.identity
        kenmen = getattr(state, "kenmen", None)
        town = state.info.municipality
        return cls(
            name=ident.name, address=ident.address, birthdate=ident.birthdate, sex=ident.sex,
            expires=state.expires, security_code=state.security_code,
            photo=kenmen.photo if kenmen is not None else None,
            issuer=f"{town.name}長" if town.name else cls.issuer,
            # the seed the issuer draws a synthetic face with: the same holder, the same face
            seed=ident.my_number.encode(),
        )


def era_date(d: date) -> str:
    """``平成 5年 3月31日`` (year 1 written 元年); Gregorian before Meiji."""
    code, year, name = era_of(d)
    if code == 0:
        return f"{d.year}年{d.month:2d}月{d.day:2d}日"
    y = "元" if year == 1 else f"{year:2d}"
    return f"{name}{y}年{d.month:2d}月{d.day:2d}日"


def _font(size: int) -> Any:
    from PIL import ImageFont

    return ImageFont.truetype(str(font_path()), size)


def _fit(text: str, size: int, width: int, smallest: int) -> Any:
    """The font at ``size``, shrunk until ``text`` fits in ``width`` (not below ``smallest``)."""
    while size > smallest and _font(size).getlength(text) > width:
        size -= 1
    return _font(size)


def _wrap(text: str, font: Any, width: int) -> list[str]:
    lines = [""]
    for ch in text:
        if font.getlength(lines[-1] + ch) > width and lines[-1]:
            lines.append("")
        lines[-1] += ch
    return lines


def _background(w: int, h: int) -> Any:
    from PIL import Image, ImageDraw

    card = Image.new("RGBA", (w, h), (255, 255, 255, 255))
    draw = ImageDraw.Draw(card)
    for y in range(h):  # white at the top to a pale rose at the foot
        t = y / h
        draw.line([(0, y), (w, y)], fill=(255, int(252 - 18 * t), int(250 - 14 * t), 255))
    # a fine guilloche of waves, as security printing has
    for k in range(26):
        phase = k * 0.45
        amp = 10 + k % 5 * 4
        base = h * (0.28 + k * 0.028)
        points = [(x, base + amp * math.sin(x / 55 + phase) + 6 * math.sin(x / 17 + k))
                  for x in range(0, w + 8, 8)]  # fmt: skip
        draw.line(points, fill=(244, 210, 222, 255), width=1)
    return card


def _watermark(card: Any, text: str) -> Any:
    from PIL import Image, ImageDraw

    layer = Image.new("RGBA", card.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    font = _font(120)
    for i, (x, y) in enumerate(((70, 150), (520, 360), (160, 560))):
        draw.text((x, y), text if i != 1 else "SAMPLE", font=font, fill=(214, 40, 70, 24))
    return Image.alpha_composite(card, layer.rotate(12, resample=Image.Resampling.BICUBIC))


def _photo(data: FrontData, size: tuple[int, int]) -> Any:
    from PIL import Image, ImageOps, UnidentifiedImageError

    raw = data.photo if data.photo is not None else photo_jp2(seed=data.seed, sex=data.sex)
    try:
        opened = Image.open(io.BytesIO(raw))
        opened.load()
    except (UnidentifiedImageError, OSError) as exc:
        raise UserError(f"the card's photo is not an image ({exc})") from None
    return ImageOps.fit(opened.convert("RGB"), size, Image.Resampling.LANCZOS, centering=(0.5, 0.4))


def draw_front(data: FrontData) -> bytes:
    """The front of the card as a PNG (RGBA)."""
    from PIL import Image, ImageDraw, ImageFilter

    w, h = (round(mm * PX_PER_MM) for mm in CARD_MM)
    radius = round(CORNER_MM * PX_PER_MM)
    card = _watermark(_background(w, h), "見本")
    draw = ImageDraw.Draw(card)

    left, text_w = 40, 740
    label = "TEST CARD　試験用　jpki-sim"
    label_font = _font(26)
    label_w = label_font.getlength(label) + 36
    # 氏名, up to the test card label
    draw.text((left, 58), "氏名", font=_font(26), fill=LABEL)
    name_font = _fit(data.name, 58, int(w - label_w - 30 - 28 - (left + 88)), 18)
    draw.text((left + 88, 86), data.name, font=name_font, fill=INK, anchor="ls",
              stroke_width=1, stroke_fill=INK)  # fmt: skip
    # 住所
    draw.text((left, 150), "住所", font=_font(26), fill=LABEL)
    size = 36
    while True:
        address_font = _font(size)
        lines = _wrap(data.address, address_font, text_w - 90)
        if len(lines) <= 3 or size <= 22:
            break
        size -= 2
    for i, line in enumerate(lines):
        draw.text((left + 88, 176 + i * (size + 12)), line, font=address_font, fill=INK,
                  anchor="ls")  # fmt: skip
    # birth date and sex
    y = 350
    born = f"{era_date(data.birthdate)}生"
    draw.text((left + 88, y), born, font=_font(36), fill=INK, anchor="ls")
    x = left + 88 + _font(36).getlength(born) + 44
    draw.text((x, y), "性別", font=_font(26), fill=LABEL, anchor="ls")
    draw.text((x + 66, y), SEX_TEXT.get(data.sex, "－"), font=_font(36), fill=INK, anchor="ls")
    # the card's expiry, in its box
    expiry = f"{data.expires.year}年{data.expires.month:2d}月{data.expires.day:2d}日まで有効"
    ef = _font(34)
    box = (left + 80, 384, left + 80 + ef.getlength(expiry) + 40, 444)
    draw.rounded_rectangle(box, radius=10, fill=EXPIRY_FILL, outline=ACCENT, width=2)
    draw.text((box[0] + 20, box[3] - 17), expiry, font=ef, fill=INK, anchor="ls")
    # 個人番号カード
    draw.text((left, h - 48), "個人番号カード", font=_font(46), fill=ACCENT, anchor="ls",
              stroke_width=1, stroke_fill=ACCENT)  # fmt: skip
    draw.text((left + 342, h - 52), "INDIVIDUAL NUMBER CARD", font=_font(20), fill=LABEL,
              anchor="ls")  # fmt: skip

    # the photo, the issuer and the security code
    pw, ph = 294, 378
    px, py = w - pw - 44, 150
    draw.rectangle((px - 3, py - 3, px + pw + 2, py + ph + 2), fill=(210, 196, 202))
    card.paste(_photo(data, (pw, ph)), (px, py))
    draw.text((px + pw / 2, py + ph + 40), data.issuer, font=_font(24), fill=INK, anchor="ms")
    code = data.security_code
    draw.text((px + pw, py + ph + 86), code, font=_font(28), fill=INK, anchor="rs")
    draw.text((px + pw - _font(28).getlength(code) - 12, py + ph + 84), "セキュリティコード",
              font=_font(16), fill=LABEL, anchor="rs")  # fmt: skip

    # the test card label over everything
    draw.rounded_rectangle((w - label_w - 30, 34, w - 30, 84), radius=25, fill=(206, 32, 60))
    draw.text((w - 30 - label_w / 2, 68), label, font=label_font, fill=(255, 255, 255),
              anchor="ms",
              stroke_width=1, stroke_fill=(255, 255, 255))  # fmt: skip

    # rounded corners, a hairline edge, a soft shadow on a transparent margin
    mask = Image.new("L", (w, h), 0)
    ImageDraw.Draw(mask).rounded_rectangle((0, 0, w - 1, h - 1), radius=radius, fill=255)
    card.putalpha(mask)
    ImageDraw.Draw(card).rounded_rectangle((0, 0, w - 1, h - 1), radius=radius,
                                           outline=(222, 196, 206, 255), width=2)  # fmt: skip
    out = Image.new("RGBA", (w + 2 * MARGIN, h + 2 * MARGIN), (0, 0, 0, 0))
    shadow = Image.new("RGBA", out.size, (0, 0, 0, 0))
    ImageDraw.Draw(shadow).rounded_rectangle(
        (MARGIN + 4, MARGIN + 10, MARGIN + w + 4, MARGIN + h + 10), radius=radius,
        fill=(40, 20, 30, 90),
    )
    out = Image.alpha_composite(out, shadow.filter(ImageFilter.GaussianBlur(12)))
    out.alpha_composite(card, (MARGIN, MARGIN))
    buf = io.BytesIO()
    out.save(buf, "PNG", optimize=True)
    return buf.getvalue()
