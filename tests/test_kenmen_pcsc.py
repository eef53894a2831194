"""The whole chip through ``jpki-sim serve`` and real pcscd, read by a thorough client of our own.

What soltia48/myna-card's ``examples/read_card.rs`` does (the MF level and its
CV chain, the 共通AP, the helper AP, the surface AP, the JPKI AP, every
signature checked) runs to the end against a card served by ``jpki-sim serve``,
through pyscard's raw PC/SC calls; the client (:mod:`kenmen_reader`) is the
tests' own, written from the sources, and trusts only the roots ``jpki-sim ca
export-cv`` wrote. The counter's work (``card reset-pin``, ``card
change-address``) reaches the served card at its next power-on.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kenmen_reader import Credentials, ThoroughReader, image_facts, load_roots
from pcsc_harness import PORTS, PcscSession, ServeProcess, jpki_sim_command

pytestmark = pytest.mark.pcsc

SLOT1 = f"localhost:{PORTS[1]}"
#: the default holder was born on 1993-03-31, 平成5年3月31日
BIRTH_CODE = "050331"


def cli(*args: str) -> Any:
    done = subprocess.run([*jpki_sim_command(), *args, "--json"], capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


class RawCard:
    """A card through pyscard's raw PC/SC calls: connect, transmit, power-cycle."""

    def __init__(self, reader: str) -> None:
        from smartcard import scard

        self.s = scard
        code, self.ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        assert code == scard.SCARD_S_SUCCESS
        code, self.card, self.protocol = scard.SCardConnect(
            self.ctx, reader, scard.SCARD_SHARE_SHARED,
            scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1)
        assert code == scard.SCARD_S_SUCCESS, scard.SCardGetErrorMessage(code)

    def transmit(self, apdu: bytes) -> bytes:
        code, response = self.s.SCardTransmit(self.card, self.protocol, list(apdu))
        assert code == self.s.SCARD_S_SUCCESS, self.s.SCardGetErrorMessage(code)
        return bytes(response)

    def power_cycle(self) -> None:
        """SCARD_UNPOWER_CARD: the card loses power (its security status) and comes back."""
        code, self.protocol = self.s.SCardReconnect(
            self.card, self.s.SCARD_SHARE_SHARED,
            self.s.SCARD_PROTOCOL_T0 | self.s.SCARD_PROTOCOL_T1, self.s.SCARD_UNPOWER_CARD)
        assert code == self.s.SCARD_S_SUCCESS, self.s.SCardGetErrorMessage(code)

    def close(self) -> None:
        self.s.SCardDisconnect(self.card, self.s.SCARD_UNPOWER_CARD)
        self.s.SCardReleaseContext(self.ctx)


@pytest.fixture
def issued(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A card issued by ``jpki-sim card issue --photo`` and the CV roots ``ca export-cv`` wrote."""
    from PIL import Image, ImageDraw

    photo = tmp_path / "me.png"
    picture = Image.new("RGB", (300, 400), (90, 140, 200))
    ImageDraw.Draw(picture).ellipse([80, 60, 220, 240], fill=(230, 190, 160))
    picture.save(photo)
    ca, card, roots = tmp_path / "ca", tmp_path / "card.json", tmp_path / "roots.cv"
    cli("card", "issue", str(card), "--ca", str(ca), "--issued", "2025-04-01",
        "--photo", str(photo))
    cli("ca", "export-cv", "--ca", str(ca), "--out", str(roots))
    return card, ca, roots


@pytest.fixture
def served(pcscd_session: PcscSession, issued: tuple[Path, Path, Path]) -> Iterator[RawCard]:
    card = issued[0]
    server = ServeProcess([str(card), "--vpcd", SLOT1])
    try:
        server.wait_ready(timeout=30)
        raw = RawCard(pcscd_session.reader_for_port(PORTS[1]))
        try:
            yield raw
        finally:
            raw.close()
    finally:
        server.kill()


def holder(card: Path) -> Credentials:
    """The credentials as the holder reads them off the card's front (and `card status`)."""
    doc = cli("card", "status", str(card))
    year = doc["card"]["expires"][:4]
    return Credentials(helper_pin="1234", code_a="012345678903",
                       code_b=f"{BIRTH_CODE}{year}{doc['card']['security_code']}",
                       birthdate=BIRTH_CODE)


@pytest.mark.parametrize("helper_with,surface_with", [("pin", "a"), ("a", "b"), ("b", "a")])
def test_a_thorough_client_reads_everything_through_jpki_sim_serve(
    served: RawCard, issued: tuple[Path, Path, Path], tmp_path: Path, helper_with: str,
    surface_with: str,
) -> None:
    card, _ca, roots_file = issued
    cred = holder(card)
    cred.helper_with, cred.surface_with = helper_with, surface_with
    served.power_cycle()  # the MF level answers GET DATA right after power-on
    reading = ThoroughReader(served.transmit, load_roots(roots_file.read_bytes())).read_everything(
        cred)
    checks = " | ".join(reading.checks)
    for what in ("MF: chain 9000020/001", "helper: EF 0004 verifies", "helper EF 0007",
                 "helper EF 0003: signature", "helper: challenge", "surface: EF 0004 verifies",
                 "surface EF 0001", "surface EF 0002", "surface: challenge", "JPKI: auth"):
        assert what in checks, what
    # the images, saved and opened as any viewer would
    out = tmp_path / f"images-{helper_with}-{surface_with}"
    out.mkdir()
    shapes = {"name": ("PNG", "1"), "address": ("PNG", "1"), "photo": ("JPEG2000", "L"),
              "security-code": ("PNG", "1"), "my-number": ("PNG", "1")}
    for name, data in reading.images.items():
        path = out / f"{name}.{'jp2' if name == 'photo' else 'png'}"
        path.write_bytes(data)
        fmt, mode, size = image_facts(path.read_bytes())
        assert (fmt, mode) == shapes[name], name
        assert size == {"photo": (140, 180), "security-code": (24, 12),
                        "my-number": (72, 12)}.get(name, size)
    assert set(reading.images) == set(shapes) - ({"my-number"} if surface_with == "b" else set())
    # the photo is the one `card issue --photo` was given (a flat blue backdrop, grey 132)
    from PIL import Image

    with Image.open(out / "photo.jp2") as photo:
        assert abs(photo.getpixel((3, 3)) - 132) < 16
    assert reading.data["auth_retries"] == 3 and reading.data["sign_retries"] == 5


def test_a_wrong_code_costs_a_try_and_card_reset_pin_restores_it(
    served: RawCard, issued: tuple[Path, Path, Path]
) -> None:
    card = issued[0]
    cred = holder(card)
    served.power_cycle()
    reader = ThoroughReader(served.transmit, {})
    for aid, fid, wrong in ((bytes.fromhex("D3921000310001010402"), 0x0012, "0" * 14),
                            (bytes.fromhex("D3921000310001010402"), 0x0011, "000000"),
                            (bytes.fromhex("D3921000310001010408"), 0x0014, "0" * 12)):
        reader.select_df(aid)
        reader.select_ef(fid)
        apdu = bytes((0x00, 0x20, 0x00, 0x80, len(wrong))) + wrong.encode()
        assert [reader.sw(apdu) for _ in range(4)] == [0x63C2, 0x63C1, 0x63C0, 0x6984]
        assert reader.retries(fid) == 0
    cli("card", "reset-pin", str(card), "--pin", "code-b")
    cli("card", "reset-pin", str(card), "--pin", "birthdate")
    served.power_cycle()  # serve picks up the changed card file at power-on
    reader.select_df(bytes.fromhex("D3921000310001010402"))
    assert reader.retries(0x0012) == 3 and reader.retries(0x0011) == 3
    reader.verify(0x0012, cred.code_b or "")
    reader.select_df(bytes.fromhex("D3921000310001010408"))
    assert reader.retries(0x0014) == 0  # 照合番号A was not reset
    assert reader.retries(0x0015) == 3  # code-b reset both of its keys


def test_after_a_change_of_address_every_signature_still_verifies(
    served: RawCard, issued: tuple[Path, Path, Path]
) -> None:
    card, ca, roots_file = issued
    roots = load_roots(roots_file.read_bytes())
    served.power_cycle()
    before = ThoroughReader(served.transmit, roots).read_everything(holder(card))
    cli("card", "change-address", str(card), "東京都清瀬市上清戸１丁目２番３号", "--ca", str(ca))
    served.power_cycle()
    after = ThoroughReader(served.transmit, roots).read_everything(holder(card))
    assert after.images["address"] != before.images["address"]
    assert after.images["name"] == before.images["name"]
    assert after.data["address"] == "東京都清瀬市上清戸１丁目２番３号"
    assert "helper: EF 0003 DF32 matches EF 0002" in after.checks
    assert after.efs["helper-0003"] != before.efs["helper-0003"]
    assert after.efs["surface-0002"] != before.efs["surface-0002"]
