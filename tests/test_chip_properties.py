"""Properties of the whole chip, by hypothesis: across every application, any sequence of
commands keeps every PIN counter honest, never lets a key sign without its PIN, and never
puts a private key's bytes in an answer; GET CHALLENGE never repeats within a session.
"""

from __future__ import annotations

import hashlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from jpki_sim.issuer import presets
from jpki_sim.profiles.jpki import ids as jpki
from jpki_sim.profiles.jpki.build import build_card
from jpki_sim.profiles.jpki.signing import digest_info
from jpki_sim.testing import strategies as jst

#: where each PIN is: application AID, EF
PIN_PLACES = {name: (aid, fid) for name, (aid, fid) in jpki.PIN_EFS.items()}
PIN_APPS = {"auth": "jpki", "sign": "jpki", "helper": "helper", "juki": "juki",
            "common": "common"}
#: VERIFY, CHANGE REFERENCE DATA, RESET RETRY COUNTER, CHANGE KEY and SELECT: the noise rule
#: leaves them to the rules that model them
MODELLED_INS = (0x20, 0x24, 0x2C, 0x32, 0xA4)


def _secret_fragments(state: object) -> list[bytes]:
    """32-byte pieces of every private value on the card (d, p, q of each key)."""
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    pems = [s.key_pem for s in (state.auth, state.sign) if s is not None]  # type: ignore[attr-defined]
    pems.append(state.info.internal_auth_key)  # type: ignore[attr-defined]
    out: list[bytes] = []
    for pem in pems:
        key = load_pem_private_key(pem.encode(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        nums = key.private_numbers()
        for value in (nums.d, nums.p, nums.q, nums.dmp1, nums.dmq1):
            raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
            out += [raw[:32], raw[-32:]]
        out.append(pem.encode()[30:62])
    return out


class WholeChip(RuleBasedStateMachine):
    """The card against a model of its five PIN counters and its security status."""

    @initialize()
    def setup(self) -> None:
        self.card, self.store = presets.card("default")
        self.tries = {n: p.max_tries for n, p in self.store.state.pins.items()}
        self.values = {n: p.value for n, p in self.store.state.pins.items()}
        self.verified: set[str] = set()
        self.app: str | None = None
        self.secrets = _secret_fragments(self.store.state)
        self.challenges: set[bytes] = set()

    # ------------------------------------------------ the wire

    def tx(self, hex_or_bytes: str | bytes) -> tuple[bytes, int]:
        raw = bytes.fromhex(hex_or_bytes) if isinstance(hex_or_bytes, str) else hex_or_bytes
        resp = self.card.process(raw)
        assert len(resp) >= 2
        data = resp[:-2]
        for fragment in self.secrets:
            assert fragment not in data, f"a private key's bytes in the answer to {raw[:4].hex()}"
        return data, resp[-2] << 8 | resp[-1]

    def select_app(self, name: str) -> None:
        aid = jpki.APPLICATIONS[name]
        _d, sw = self.tx(f"00A4040C{len(aid):02X}{aid.hex()}")
        assert sw == 0x9000
        if name != self.app:
            self.verified.clear()  # another DF: the security status is gone
        self.app = name

    def select_pin(self, pin: str) -> None:
        self.select_app(PIN_APPS[pin])
        _d, sw = self.tx(f"00A4020C02{PIN_PLACES[pin][1]:04X}")
        assert sw == 0x9000

    # ------------------------------------------------ PINs

    @rule(pin=st.sampled_from(list(PIN_PLACES)), right=st.booleans(), sfi=st.booleans())
    def verify(self, pin: str, right: bool, sfi: bool) -> None:
        self.select_pin(pin)
        value = self.values[pin]
        assert value is not None
        candidate = value if right else ("0000" if value != "0000" else "1111")
        if pin == "sign" and not right:
            candidate = "WRONG1"
        p2 = 0x80 | PIN_PLACES[pin][1] if sfi else 0x80
        _d, sw = self.tx(f"002000{p2:02X}{len(candidate):02X}{candidate.encode().hex()}")
        if self.tries[pin] == 0:
            assert sw == 0x6984
            self.verified.discard(pin)
        elif right:
            assert sw == 0x9000
            self.tries[pin] = self.store.state.pins[pin].max_tries
            self.verified.add(pin)
        else:
            self.tries[pin] -= 1
            assert sw == 0x63C0 | self.tries[pin]
            self.verified.discard(pin)

    @rule(pin=st.sampled_from(list(PIN_PLACES)))
    def retry_query(self, pin: str) -> None:
        self.select_pin(pin)
        _d, sw = self.tx("00200080")
        assert sw == 0x63C0 | self.tries[pin]

    @rule(pin=st.sampled_from(list(PIN_PLACES)), digits=st.integers(0, 9999))
    def change(self, pin: str, digits: int) -> None:
        self.select_pin(pin)
        new = f"{digits:04d}" if pin != "sign" else f"NEW{digits:04d}"
        cla_ins_p1 = "803200" if pin in jpki.CHANGE_KEY_PINS else "002401"
        _d, sw = self.tx(f"{cla_ins_p1}80{len(new):02X}{new.encode().hex()}")
        if self.tries[pin] == 0:
            assert sw == 0x6984
        elif pin not in self.verified:
            assert sw == 0x6982
        else:
            assert sw == 0x9000
            self.values[pin] = new
            self.tries[pin] = self.store.state.pins[pin].max_tries

    @rule(pin=st.sampled_from(list(PIN_PLACES)))
    def counter_reset(self, pin: str) -> None:
        """What the municipal counter does (card reset-pin): a full counter."""
        from jpki_sim.issuer.counter import reset_pin

        value = self.values[pin] or "1234"
        reset_pin(self.store, pin, value)
        # the 住民基本台帳用暗証番号 is both 001C keys: the counter resets the two
        for key in jpki.HOLDER_SECRETS.get(pin, (pin,)):
            self.values[key] = value
            self.tries[key] = self.store.state.pins[key].max_tries

    # ------------------------------------------------ keys

    @rule(key=st.sampled_from(["auth", "sign"]), by_sfi=st.booleans())
    def sign(self, key: str, by_sfi: bool) -> None:
        self.select_app("jpki")
        fid = jpki.KEY_EFS[key]
        if by_sfi:
            p2 = 0x80 | fid
        else:
            self.tx(f"00A4020C02{fid:04X}")
            p2 = 0x80
        data = digest_info("sha256", hashlib.sha256(b"m").digest())
        sig, sw = self.tx(f"802A00{p2:02X}{len(data):02X}{data.hex()}00")
        if key in self.verified:
            assert sw == 0x9000 and len(sig) == 256
        else:
            assert sw == 0x6982 and not sig

    @rule(app=st.sampled_from(list(jpki.APPLICATIONS)), p2=st.sampled_from([0x97, 0x9A, 0x99]))
    def internal_authenticate(self, app: str, p2: int) -> None:
        self.select_app(app)
        data, sw = self.tx(f"008800{p2:02X}08{'11' * 8}00")
        if app == "common" and p2 == 0x99:
            assert sw == 0x9000 and len(data) == 256
        elif app == "jpki" and p2 != 0x99:
            key = "auth" if p2 == 0x97 else "sign"
            assert sw == (0x6985 if key in self.verified else 0x6982)
        elif app == "surface" and p2 == 0x9A:
            assert sw == 0x6985  # key 001A signs with 80 2A only (MC src/card.rs)
        else:
            assert sw == 0x6A88

    @rule(n=st.integers(8, 256))
    def challenge(self, n: int) -> None:
        data, sw = self.tx(f"00840000{n & 0xFF:02X}")
        assert sw == 0x9000 and len(data) == n
        assert data not in self.challenges
        self.challenges.add(data)

    @rule(app=st.sampled_from(list(jpki.APPLICATIONS)))
    def select(self, app: str) -> None:
        self.select_app(app)

    @rule(kind=st.sampled_from(["off-on", "reset"]))
    def power(self, kind: str) -> None:
        if kind == "reset":
            self.card.reset()
        else:
            self.card.power_off()
            self.card.power_on()
        self.verified.clear()
        self.app = None

    @rule(raw=st.one_of(jst.raw_command_apdus(max_data=300), jst.malformed_apdus(),
                        st.binary(min_size=4, max_size=40)))
    def noise(self, raw: bytes) -> None:
        """Any other command: it changes no counter and no security status."""
        if len(raw) > 1 and raw[1] in MODELLED_INS:
            return
        self.tx(raw)

    # ------------------------------------------------ what must hold

    @invariant()
    def counters_are_honest(self) -> None:
        for name, pin in self.store.state.pins.items():
            assert pin.tries_left == self.tries[name], name
            assert pin.value == self.values[name], name
        assert {n for n in self.verified} <= set(PIN_PLACES)


WholeChip.TestCase.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestWholeChip = WholeChip.TestCase


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(8, 256), min_size=2, max_size=30),
       st.sampled_from([None, *jpki.APPLICATIONS]))
def test_get_challenge_never_repeats_within_a_session(lengths: list[int], app: str | None) -> None:
    card, _store = presets.card("default")
    if app is not None:
        aid = jpki.APPLICATIONS[app]
        assert card.process(bytes.fromhex(f"00A4040C{len(aid):02X}{aid.hex()}")) == b"\x90\x00"
    seen = set()
    for n in lengths:
        resp = card.process(bytes.fromhex(f"00840000{n & 0xFF:02X}"))
        assert resp[-2:] == b"\x90\x00" and len(resp) == n + 2
        assert resp[:-2] not in seen
        seen.add(resp[:-2])


def test_a_seeded_card_gives_reproducible_challenges() -> None:
    from jpki_sim.card.rules import seeded_random

    answers = []
    for _ in range(2):
        _card, store = presets.card("default")
        card = build_card(store, random=seeded_random("test"))
        card.power_on()
        answers.append([card.process(bytes.fromhex("0084000010")) for _ in range(3)])
    assert answers[0] == answers[1] and len(set(answers[0])) == 3
