"""The JPKI card profile: identifiers and rules of the real My Number card.

This module is data: AIDs, FIDs, PIN policies, the ATR. The card is assembled
from a card state by :func:`jpki_sim.profiles.jpki.build.build_card`; clients
(:mod:`jpki_sim.profiles.jpki.client`) use the same names.
"""

from __future__ import annotations

from jpki_sim.profiles.base import PinPolicy

ATR = bytes.fromhex("3BE000FF8131FE4514")

#: every ATR the public sources list for the card, by variant name (protocol notes §7.1).
#: Contact ATRs come from the card; contactless ones are made up by PC/SC part-3 readers
#: from the card's ATQB. The first is the default: OpenSC's jpki driver lists only it.
CONTACT_ATRS = {
    "contact": ATR,  # OpenSC jpki_atrs; Windows minidriver "JPKI"
    "contact-02": bytes.fromhex("3BDA13FF8131FB468012392F31C173C601C03B"),  # "JPKI (02)"
    "contact-03": bytes.fromhex("3BC5FF8131FB458073C6010000"),  # "JPKI (03)"
    "contact-04": bytes.fromhex("3BF59100FF918171FE400042000100D1D6"),  # "JPKI (04)"
    "contact-05": bytes.fromhex("3BF59100FF918171FE4000420001B3A115"),  # "JPKI (05)"
}
CONTACTLESS_ATRS = {
    "contactless-06": bytes.fromhex("3B888001000005E0B381A1007F"),  # "JPKI (06)"
    "contactless-07": bytes.fromhex("3B888001000041E0B381A1003B"),  # "JPKI (07)"
    "contactless-08": bytes.fromhex("3B888001004B51FF0081D100BC"),  # "JPKI (08)"
    "contactless-09": bytes.fromhex("3B888001004B51FFB381D1000F"),  # "JPKI (09)"
}
ATRS = {**CONTACT_ATRS, **CONTACTLESS_ATRS}

# applications
JPKI_AID = bytes.fromhex("D392F000260100000001")  # 公的個人認証AP
HELPER_AID = bytes.fromhex("D3921000310001010408")  # 券面事項入力補助AP
COMMON_AID = bytes.fromhex("D3921000310001010100")  # 共通カードAP (本人確認業務用)
JUKI_AID = bytes.fromhex("D3921000310001010401")  # 住基AP
SURFACE_AID = bytes.fromhex("D3921000310001010402")  # 券面事項確認AP
#: GlobalPlatform's default Issuer Security Domain: selecting it brings back the
#: power-on (MF level) state, where GET DATA answers (MC src/mf.rs)
CARD_MANAGER_AID = bytes.fromhex("A0000001510000")

APPLICATIONS = {"jpki": JPKI_AID, "helper": HELPER_AID, "common": COMMON_AID, "juki": JUKI_AID,
                "surface": SURFACE_AID}

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

# 共通カードAP EFs
EF_COMMON_CARD_INFO = 0x0001  # record 1: 01 1C serial(15) municipality(5) expiry(8)
EF_COMMON_KEY_REFERENCE = 0x0002  # a 16-byte key reference, as 住基AP EF 0002
EF_COMMON_AUTH_KEY = 0x0019  # answers INTERNAL AUTHENTICATE with no credential
EF_COMMON_PIN = 0x001C  # 4 digits: the 住民基本台帳用暗証番号's key in this AP

# 住基AP EFs
EF_JUKI_KEY_REFERENCE = 0x0002
EF_JUKI_PIN = 0x001C

# card-info input helper EFs (MC ap/text.rs; jsapdu KENHOJO_AP_EF)
EF_HELPER_MY_NUMBER = 0x0001
EF_HELPER_BASIC_INFO = 0x0002
EF_HELPER_INTEGRITY = 0x0003  # digests of EF 0001 and 0002, signed
EF_HELPER_CERTIFICATE = 0x0004  # the application's CV certificate
EF_HELPER_AP_INFO = 0x0005  # application basic info
EF_HELPER_SESSION_KEY = 0x0006  # public key for session-key delivery (secure messaging)
EF_HELPER_SIGNED_KEY = 0x0007  # the public half of key 0013, signed
EF_HELPER_UNKNOWN = 0x0008  # sixteen FF bytes
EF_HELPER_PIN = 0x0011
EF_HELPER_BLOCKED_KEY = 0x0012  # issued blocked: 63C0, 6984
EF_HELPER_KEY = 0x0013  # the application's own key: 80 2A 00 00 with no credential
EF_HELPER_PIN_A = 0x0014  # 照合番号A: the My Number
EF_HELPER_PIN_B = 0x0015  # 照合番号B: era birth date + expiry year + security code

# card-surface application EFs (MC ap/surface.rs; jsapdu KENKAKU_AP_EF)
EF_SURFACE_AGE = 0x0001  # birth date + the card's key, signed
EF_SURFACE_FACE = 0x0002  # the card face: images, photo, signature, expiry
EF_SURFACE_INFO = 0x0003  # application basic info with the municipality code
EF_SURFACE_CERTIFICATE = 0x0004  # the application's CV certificate
EF_SURFACE_MY_NUMBER = 0x0005  # the My Number as an image, signed
EF_SURFACE_UNKNOWN = 0x0006  # sixteen FF bytes
EF_SURFACE_BIRTHDATE = 0x0011  # key: the birth date, era YYMMDD
EF_SURFACE_PIN_B = 0x0012  # key: 照合番号B
EF_SURFACE_PIN_A = 0x0013  # key: 照合番号A
EF_SURFACE_KEY = 0x001A  # the card's own key: 80 2A 00 00 with no credential

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
    "juki": (JUKI_AID, EF_JUKI_PIN),
    "common": (COMMON_AID, EF_COMMON_PIN),
}
#: the holder's four secrets and the PIN keys each is written to by the counter:
#: the 住民基本台帳用暗証番号 is one value in two keys (住基AP and 共通AP 001C),
#: which then count their tries, and are changed, separately
HOLDER_SECRETS = {
    "sign": ("sign",),  # 署名用パスワード
    "auth": ("auth",),  # 利用者証明用暗証番号
    "juki": ("juki", "common"),  # 住民基本台帳用暗証番号
    "helper": ("helper",),  # 券面事項入力補助用暗証番号
}
#: PINs changed with JICSAP CHANGE KEY (80 32) rather than CHANGE REFERENCE DATA
CHANGE_KEY_PINS = ("juki", "common")

#: the 照合番号 keys of the 券面 applications: reference data taken from what is
#: printed on the card (the holder chooses none of them), each key counting its
#: own tries. Addressed like the PINs: SELECT the key's EF, VERIFY P2=80.
CODE_EFS = {
    "helper-a": (HELPER_AID, EF_HELPER_PIN_A),  # 照合番号A: the My Number
    "helper-b": (HELPER_AID, EF_HELPER_PIN_B),  # 照合番号B
    "birthdate": (SURFACE_AID, EF_SURFACE_BIRTHDATE),  # era YYMMDD
    "surface-b": (SURFACE_AID, EF_SURFACE_PIN_B),
    "surface-a": (SURFACE_AID, EF_SURFACE_PIN_A),
}
#: each code printed on the card and the keys it is written to
CODES = {
    "code-a": ("helper-a", "surface-a"),
    "code-b": ("helper-b", "surface-b"),
    "birthdate": ("birthdate",),
}
#: every key a VERIFY reaches: the holder's PINs and the 照合番号 keys
VERIFY_EFS = {**PIN_EFS, **CODE_EFS}
#: the applications' own signing keys: ``80 2A 00 00`` (P2 00, "the application's
#: default key") signs with them, with no credential (MC ap/text.rs, ap/surface.rs)
DEFAULT_SIGNING_KEYS = {HELPER_AID: EF_HELPER_KEY, SURFACE_AID: EF_SURFACE_KEY}
P2_DEFAULT_KEY = 0x00

TOKEN_LABEL = "JPKIAPICCTOKEN2"
#: token labels of the card: the My Number card's, and the older 住基カード's
TOKEN_LABELS = ("JPKIAPICCTOKEN2", "JPKIAPICCTOKEN")

# COMPUTE DIGITAL SIGNATURE
CLA_PROPRIETARY = 0x80
INS_COMPUTE_SIGNATURE = 0x2A
P2_CURRENT_KEY = 0x80
# JICSAP CHANGE KEY (extended system command): 80 32 00 80 Lc new-value
INS_CHANGE_KEY = 0x32
# SET SESSION KEY (80 AE): secure messaging, opened in the helper AP only
INS_SET_SESSION_KEY = 0xAE
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
    # 3 tries: PYDEF for the 住基AP's key; **Chosen** the same for the 共通AP's
    "juki": PinPolicy("resident-registry PIN (住基AP)", 4, 4, 3, r"[0-9]{4}", FOUR_DIGITS),
    "common": PinPolicy("resident-registry PIN (共通AP)", 4, 4, 3, r"[0-9]{4}", FOUR_DIGITS),
}

#: **Chosen**: 3 tries for every 照合番号 key. The one source that states a limit
#: (an unattributed data module, PYDEF) gives 3 for the surface AP's 0012 and 0013;
#: MC only hints at 10 for 照合番号B. The same 3 for the helper AP's 0014/0015 and
#: the surface birth-date key 0011, which no source counts (docs/protocol.md).
CODE_TRIES = 3
CODE_POLICIES = {
    "helper-a": PinPolicy("照合番号A (helper AP)", 12, 12, CODE_TRIES, r"[0-9]{12}",
                          "the 12-digit My Number"),
    "helper-b": PinPolicy("照合番号B (helper AP)", 14, 14, CODE_TRIES, r"[0-9]{14}",
                          "14 digits: era birth date YYMMDD, expiry year, security code"),
    "birthdate": PinPolicy("birth date (surface AP)", 6, 6, CODE_TRIES, r"[0-9]{6}",
                           "the birth date as era YYMMDD"),
    "surface-b": PinPolicy("照合番号B (surface AP)", 14, 14, CODE_TRIES, r"[0-9]{14}",
                           "14 digits: era birth date YYMMDD, expiry year, security code"),
    "surface-a": PinPolicy("照合番号A (surface AP)", 12, 12, CODE_TRIES, r"[0-9]{12}",
                           "the 12-digit My Number"),
}
#: the policy of every key a VERIFY reaches
VERIFY_POLICIES = {**PIN_POLICIES, **CODE_POLICIES}

#: PINs of the default test card (documented in the README)
DEFAULT_PINS = {"auth": "1234", "sign": "ABC123", "helper": "1234", "juki": "1234",
                "common": "1234"}
