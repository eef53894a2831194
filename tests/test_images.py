"""The card-surface images (Pillow, IPAmj明朝, OpenJPEG), the substitute flags, the card front."""

from __future__ import annotations

import io
import json
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageChops, features

from jpki_sim.cli import main
from jpki_sim.errors import UserError
from jpki_sim.profiles.jpki import charset, images
from jpki_sim.profiles.jpki.cardfront import FrontData, draw_front, era_date
from pcsc_harness import unavailable


@pytest.fixture(autouse=True)
def _the_font() -> None:
    """Skip locally without IPAmj明朝; in CI (JPKI_SIM_REQUIRE_PCSC=1) that is a failure."""
    try:
        images.font_path()
    except images.FontMissing as exc:
        unavailable(str(exc))


def _open(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def _ink(image: Image.Image) -> int:
    """How many black pixels a 1-bit image has."""
    return image.convert("L").histogram()[0]


def test_the_toolchain_is_real() -> None:
    assert features.check("jpg_2000"), "Pillow needs OpenJPEG for the photo"
    assert images.font_path().name == "ipamjm.ttf" or "mincho" in images.font_path().name


# ---------------------------------------------------------------- text images


def test_digit_images_have_the_sizes_the_sources_report() -> None:
    code = images.security_code_image("2285")
    number = images.my_number_image("012345678903")
    for rendered, size in ((code, (24, 12)), (number, (72, 12))):
        assert rendered.size == size and rendered.substituted == ()
        assert images.image_info(rendered.data) == ("PNG", "1", size)
        assert rendered.data[24:26] == b"\x01\x00"  # IHDR: bit depth 1, greyscale
        assert _ink(_open(rendered.data)) > 10
    with pytest.raises(ValueError):
        images.security_code_image("228")
    with pytest.raises(ValueError):
        images.my_number_image("01234567890A")


def test_name_and_address_images() -> None:
    name = images.name_image("番号\u3000花子")
    assert images.image_info(name.data) == ("PNG", "1", (5 * 24, 24))
    # half-width characters take half a cell
    assert images.name_image("Ab\u3000C").size == (12 + 12 + 24 + 12, 24)
    short = images.address_image("北海道小樽市花園２丁目１２番１号")
    assert short.size == (16 * 24, 24)
    long = images.address_image("東京都千代田区霞が関一丁目一番一号" * 3)  # 51 characters
    assert long.size == (20 * 24, 3 * 24)  # wrapped at 20 cells
    assert all(_ink(_open(r.data)) > 100 for r in (name, short, long))
    for empty in (images.name_image, images.address_image):
        with pytest.raises(ValueError):
            empty("")


@pytest.mark.parametrize(("plain", "variant"), [("高", "髙"), ("吉", "𠮷"), ("崎", "﨑")])
def test_resident_register_variants_stay_distinct(plain: str, variant: str) -> None:
    a, b = images.name_image(plain), images.name_image(variant)
    assert a.substituted == b.substituted == ()
    assert ImageChops.difference(_open(a.data).convert("L"), _open(b.data).convert("L")).getbbox()


def test_a_character_without_a_glyph_is_drawn_as_geta_and_reported() -> None:
    assert not images.has_glyph("\U0001f600") and images.has_glyph("花")
    rendered = images.name_image("花\U0001f600子")
    assert rendered.substituted == (1,)
    geta = images.name_image("花〓子")
    assert _open(rendered.data).tobytes() == _open(geta.data).tobytes()


def test_a_missing_font_is_a_user_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("JPKI_SIM_FONT", str(tmp_path / "nothing.ttf"))
    with pytest.raises(images.FontMissing, match="fonts-ipamj-mincho"):
        images.font_path()


# ---------------------------------------------------------------- the photo


def _source(fmt: str, mode: str = "RGB") -> bytes:
    image = Image.new(mode, (600, 480), "skyblue" if mode == "RGB" else 120)
    image.paste((200, 160, 130) if mode == "RGB" else 200, (220, 60, 380, 300))
    buf = io.BytesIO()
    image.save(buf, fmt)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF"])
def test_any_common_image_becomes_the_cards_photo(fmt: str) -> None:
    photo = images.photo_jp2(_source(fmt))
    assert photo[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n"  # a JP2 file
    assert images.image_info(photo) == ("JPEG2000", "L", images.PHOTO_SIZE)
    assert len(photo) <= images.PHOTO_MAX_BYTES


def test_a_busy_photo_still_fits_the_byte_budget() -> None:
    noise = Image.effect_noise((1200, 1600), 120).convert("RGB")
    buf = io.BytesIO()
    noise.save(buf, "PNG")
    assert len(images.photo_jp2(buf.getvalue())) <= images.PHOTO_MAX_BYTES


def test_not_an_image_is_a_user_error() -> None:
    with pytest.raises(UserError, match="not an image"):
        images.photo_jp2(b"%PDF-1.4 not a picture")


def test_the_synthetic_face_is_fixed_by_its_seed() -> None:
    a, b, c = (images.photo_jp2(seed=s) for s in (b"one", b"one", b"two"))
    assert a == b and a != c
    assert images.image_info(a) == ("JPEG2000", "L", images.PHOTO_SIZE)
    face = images.synthetic_face(b"one")
    assert face.size == images.PHOTO_SIZE and len(set(face.tobytes())) > 20
    # the bottom band says TEST
    band = face.crop((0, face.height - 16, face.width, face.height))
    assert min(band.tobytes()) < 80 and max(band.tobytes()) > 240


# ---------------------------------------------------------------- substitute flags


def test_substitute_flags_are_one_digit_per_character() -> None:
    assert charset.jis_text("番号\u3000花子") == ("番号\u3000花子", "00000")
    assert charset.jis_text("髙橋\u3000𠮷子") == ("高橋\u3000吉子", "10010")
    assert charset.substitute_flags("北海道小樽市花園２丁目１２番１号") == "0" * 16
    assert charset.substitute_flags("〇〇県△△市□□町１－１－１") == "0" * 14  # U+FF0D is JIS
    assert charset.jis_text("a\U0001f600") == ("a〓", "01")


@given(st.text(max_size=30))
@settings(max_examples=200)
def test_jis_text_keeps_length_and_flags_what_it_changed(text: str) -> None:
    out, flags = charset.jis_text(text)
    assert len(out) == len(flags) == len(text)
    assert all(charset.in_jis(c) for c in out)
    for original, shown, flag in zip(text, out, flags, strict=True):
        assert (flag == "0") == (original == shown)


# ---------------------------------------------------------------- the card's front


@pytest.mark.parametrize(
    ("day", "text"),
    [(date(1993, 3, 31), "平成 5年 3月31日"), (date(1989, 1, 8), "平成元年 1月 8日"),
     (date(2019, 5, 1), "令和元年 5月 1日"), (date(1868, 1, 1), "1868年 1月 1日")],
)  # fmt: skip
def test_era_dates_as_printed(day: date, text: str) -> None:
    assert era_date(day) == text


def test_the_front_is_a_picture_marked_as_a_test_card() -> None:
    data = FrontData("番号\u3000花子", "北海道小樽市花園２丁目１２番１号", date(1993, 3, 31), "2",
                     date(2030, 3, 31), "2285", seed=b"x")  # fmt: skip
    front = _open(draw_front(data))
    assert front.format == "PNG" and front.mode == "RGBA" and front.size == (1270, 828)
    assert front.getpixel((0, 0))[3] == 0  # transparent margin (rounded corners)
    r, g, b, _a = front.getpixel((1270 - 36 - 40, 36 + 40))  # the red TEST CARD label
    assert r > 180 and g < 80 and b < 100
    photo = front.crop((1270 - 36 - 44 - 294, 36 + 150, 1270 - 36 - 44, 36 + 150 + 378))
    assert len(set(photo.convert("L").tobytes())) > 20
    # another holder draws another card
    other = _open(draw_front(FrontData("試験　太郎", "東京都千代田区", date(1980, 2, 17), "1",
                                       date(2035, 2, 17), "0042", seed=b"y")))  # fmt: skip
    assert ImageChops.difference(front.convert("RGB"), other.convert("RGB")).getbbox()


def test_card_face_command(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                           monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    card = tmp_path / "card.json"
    assert main(["card", "issue", str(card), "--ca", str(tmp_path / "ca"), "--no-sign-cert",
                 "--no-auth-cert"]) == 0  # fmt: skip
    capsys.readouterr()
    out = tmp_path / "front.png"
    assert main(["card", "face", str(card), "--out", str(out), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["path"] == str(out) and (doc["width"], doc["height"]) == (1270, 828)
    assert _open(out.read_bytes()).size == (1270, 828)
    # the same card draws the same picture (the synthetic face is the card's own)
    again = tmp_path / "again.png"
    assert main(["card", "face", str(card), "--out", str(again)]) == 0
    assert again.read_bytes() == out.read_bytes()
    code = main(["card", "face", str(card), "--out", str(tmp_path / "no" / "f.png")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_card_face_draws_the_photo_card_issue_was_given(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    photo = tmp_path / "me.png"
    Image.new("RGB", (350, 450), (128, 128, 128)).save(photo)
    card = tmp_path / "card.json"
    assert main(["card", "issue", str(card), "--ca", str(tmp_path / "ca"), "--no-sign-cert",
                 "--photo", str(photo)]) == 0  # fmt: skip
    out = tmp_path / "front.png"
    assert main(["card", "face", str(card), "--out", str(out)]) == 0
    front = _open(out.read_bytes()).convert("RGB")
    # the photo's box: 294x378 at (860, 150) on the card, which sits on a 36-pixel margin
    r, g, b = front.getpixel((36 + 860 + 20, 36 + 150 + 20))
    assert abs(r - 128) < 12 and r == g == b
    # not an image: one line, exit 2, no card written
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    capsys.readouterr()
    code = main(["card", "issue", str(tmp_path / "c2.json"), "--ca", str(tmp_path / "ca"),
                 "--photo", str(bad)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Pillow" in err
    assert not (tmp_path / "c2.json").exists()
