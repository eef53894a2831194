"""The JPKI card profile: identifiers and rules of the real My Number card.

This module is data: AIDs, FIDs, PIN policies, the ATR. The card is assembled
from a card state by :func:`jpki_sim.profiles.jpki.build.build_card`; clients
(:mod:`jpki_sim.profiles.jpki.client`) use the same names.
"""

from __future__ import annotations

from jpki_sim.profiles.base import PinPolicy

ATR = bytes.fromhex("3BE000FF8131FE4514")

# applications
JPKI_AID = bytes.fromhex("D392F000260100000001")  # 公的個人認証AP
HELPER_AID = bytes.fromhex("D3921000310001010408")  # 券面事項入力補助AP

APPLICATIONS = {"jpki": JPKI_AID, "helper": HELPER_AID}

# JPKI application EFs
EF_SIGN_CERT = 0x0001
EF_SIGN_CA_CERT = 0x0002
EF_TOKEN_INFO = 0x0006
EF_CERT_PRESENCE = 0x0008
EF_AUTH_CERT = 0x000A
EF_AUTH_CA_CERT = 0x000B
EF_AUTH_KEY = 0x0017
EF_AUTH_PIN = 0x0018
EF_SIGN_KEY = 0x001A
EF_SIGN_PIN = 0x001B

# card-info input helper EFs
EF_HELPER_MY_NUMBER = 0x0001
EF_HELPER_BASIC_INFO = 0x0002
EF_HELPER_PIN = 0x0011
EF_HELPER_PIN_A = 0x0014  # 照合番号A: the My Number
EF_HELPER_PIN_B = 0x0015  # 照合番号B: era birth date + expiry year + security code

CERT_EFS = {
    "auth": EF_AUTH_CERT,
    "sign": EF_SIGN_CERT,
    "auth-ca": EF_AUTH_CA_CERT,
    "sign-ca": EF_SIGN_CA_CERT,
}
KEY_EFS = {"auth": EF_AUTH_KEY, "sign": EF_SIGN_KEY}
PIN_EFS = {
    "auth": (JPKI_AID, EF_AUTH_PIN),
    "sign": (JPKI_AID, EF_SIGN_PIN),
    "helper": (HELPER_AID, EF_HELPER_PIN),
}

TOKEN_LABEL = "JPKIAPICCTOKEN2"

# COMPUTE DIGITAL SIGNATURE
CLA_PROPRIETARY = 0x80
INS_COMPUTE_SIGNATURE = 0x2A
P2_CURRENT_KEY = 0x80
SIGN_PKCS1 = 0x00  # PKCS#1 v1.5 over the data as given (a DigestInfo)
SIGN_SHA256_RAW = 0x01  # card hashes with SHA-256, signs the bare hash
SIGN_WRAP_SHA256 = 0x02  # card wraps a given SHA-256 in a DigestInfo
SIGN_SHA256_PKCS1 = 0x03  # card hashes, DigestInfo, PKCS#1 v1.5
SIGN_PSS_SHA256 = 0x04  # PSS over a given SHA-256
SIGN_SHA256_PSS = 0x05  # card hashes with SHA-256, then PSS


FOUR_DIGITS = "exactly 4 digits"
PIN_POLICIES = {
    "auth": PinPolicy("user-authentication PIN", 4, 4, 3, r"[0-9]{4}", FOUR_DIGITS),
    "sign": PinPolicy(
        "signature password", 6, 16, 5, r"[A-Z0-9]{6,16}",
        "6 to 16 characters, uppercase letters A-Z and digits 0-9",
    ),
    "helper": PinPolicy("card-info helper PIN", 4, 4, 3, r"[0-9]{4}", FOUR_DIGITS),
}

#: PINs of the default test card (documented in the README)
DEFAULT_PINS = {"auth": "1234", "sign": "ABC123", "helper": "1234"}
