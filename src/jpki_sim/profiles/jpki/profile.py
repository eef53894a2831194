"""The JPKI profile: the My Number card as the registry knows it."""

from __future__ import annotations

from jpki_sim.iso7816.client import CHANGE_REFERENCE_DATA
from jpki_sim.iso7816.ins import CLA_PROPRIETARY, instruction_key
from jpki_sim.iso7816.sw import SW
from jpki_sim.profiles.base import FileRef, PinRef, Profile
from jpki_sim.profiles.jpki import ids
from jpki_sim.profiles.jpki.build import build_card
from jpki_sim.profiles.jpki.state import CODEC

#: EFs the shell names, per application
_FILES = {
    "jpki": {
        "sign-cert": ids.EF_SIGN_CERT,
        "sign-ca": ids.EF_SIGN_CA_CERT,
        "token-info": ids.EF_TOKEN_INFO,
        "cert-presence": ids.EF_CERT_PRESENCE,
        "auth-cert": ids.EF_AUTH_CERT,
        "auth-ca": ids.EF_AUTH_CA_CERT,
        "auth-key": ids.EF_AUTH_KEY,
        "auth-pin": ids.EF_AUTH_PIN,
        "sign-key": ids.EF_SIGN_KEY,
        "sign-pin": ids.EF_SIGN_PIN,
    },
    "helper": {
        "my-number": ids.EF_HELPER_MY_NUMBER,
        "basic-info": ids.EF_HELPER_BASIC_INFO,
        "helper-pin": ids.EF_HELPER_PIN,
        "integrity": ids.EF_HELPER_INTEGRITY,
        "helper-cert": ids.EF_HELPER_CERTIFICATE,
        "helper-info": ids.EF_HELPER_AP_INFO,
        "session-key": ids.EF_HELPER_SESSION_KEY,
        "signed-key": ids.EF_HELPER_SIGNED_KEY,
        "helper-0008": ids.EF_HELPER_UNKNOWN,
        "blocked-key": ids.EF_HELPER_BLOCKED_KEY,
        "helper-key": ids.EF_HELPER_KEY,
        "pin-a": ids.EF_HELPER_PIN_A,
        "pin-b": ids.EF_HELPER_PIN_B,
    },
    "surface": {
        "age-record": ids.EF_SURFACE_AGE,
        "card-face": ids.EF_SURFACE_FACE,
        "surface-info": ids.EF_SURFACE_INFO,
        "surface-cert": ids.EF_SURFACE_CERTIFICATE,
        "my-number-image": ids.EF_SURFACE_MY_NUMBER,
        "surface-0006": ids.EF_SURFACE_UNKNOWN,
        "birthdate-key": ids.EF_SURFACE_BIRTHDATE,
        "surface-pin-b": ids.EF_SURFACE_PIN_B,
        "surface-pin-a": ids.EF_SURFACE_PIN_A,
        "surface-key": ids.EF_SURFACE_KEY,
    },
    "common": {
        "card-info": ids.EF_COMMON_CARD_INFO,
        "common-key-ref": ids.EF_COMMON_KEY_REFERENCE,
        "common-key": ids.EF_COMMON_AUTH_KEY,
        "common-pin": ids.EF_COMMON_PIN,
    },
    "juki": {
        "juki-key-ref": ids.EF_JUKI_KEY_REFERENCE,
        "juki-pin": ids.EF_JUKI_PIN,
    },
}

_PIN_APPS = {"auth": "jpki", "sign": "jpki", "helper": "helper", "juki": "juki",
             "common": "common", "helper-a": "helper", "helper-b": "helper",
             "birthdate": "surface", "surface-b": "surface", "surface-a": "surface"}
#: JICSAP CHANGE KEY (CLA, INS, P1): how the 住基AP and 共通AP PINs are changed
_CHANGE_KEY = (CLA_PROPRIETARY, ids.INS_CHANGE_KEY, 0x00)

#: meanings of the card's status words where JICSAP (and the card) read them more
#: precisely than ISO 7816-4 (JICSAP table 25, as MC src/apdu.rs gives it)
SW_MEANINGS: dict[int, str] = {
    SW.SM_REFUSED: "secure messaging refused (JPKI)",
    SW.SECURITY_ENVIRONMENT_FAULTY: "the security environment itself is faulty (JICSAP; "
                                    "SET SESSION KEY in the 共通AP)",
    SW.LOGICAL_CHANNEL_NOT_SUPPORTED: "access with the specified logical channel number not "
                                      "provided (only channel 0)",
    SW.SECURE_MESSAGING_NOT_SUPPORTED: "secure messaging feature not provided",
    SW.COMMAND_INCOMPATIBLE_WITH_FILE: "command conflicting with the file structure",
    SW.VERIFY_FAILED: "verification unmatching (retries not limited)",
    SW.RECORD_NOT_FOUND: "no record to be accessed",
    SW.FUNCTION_NOT_SUPPORTED: "feature not provided",
}

PROFILE = Profile(
    name="jpki",
    summary="the Japanese My Number card (個人番号カード): JPKI, card-info helper, card-surface, "
            "共通カード and 住基 applications",
    atrs=dict(ids.ATRS),
    applications=dict(ids.APPLICATIONS),
    state=CODEC,
    build=build_card,
    pins={
        name: PinRef(name, _PIN_APPS[name], fid, ids.VERIFY_POLICIES[name],
                     change=_CHANGE_KEY if name in ids.CHANGE_KEY_PINS else CHANGE_REFERENCE_DATA)
        for name, (_aid, fid) in ids.VERIFY_EFS.items()
    },
    files={
        name: FileRef(name, app, fid)
        for app, table in _FILES.items()
        for name, fid in table.items()
    },
    sw_meanings=SW_MEANINGS,
    # JICSAP CHANGE KEY carries the new PIN value
    secret_instructions=frozenset({instruction_key(CLA_PROPRIETARY, ids.INS_CHANGE_KEY)}),
    hooks={
        "client": "jpki_sim.profiles.jpki.client:JpkiClient",
        "provision": "jpki_sim.issuer.provision:provision",
        "presets": "jpki_sim.issuer.presets:factory",
        "reset_pin": "jpki_sim.issuer.counter:reset_pin",
        "shell": "jpki_sim.shell.jpki",
        "vector_checks": "jpki_sim.vectors.jpki",
    },
)

#: instruction key of COMPUTE DIGITAL SIGNATURE (for traces and docs)
COMPUTE_DIGITAL_SIGNATURE = instruction_key(CLA_PROPRIETARY, ids.INS_COMPUTE_SIGNATURE)
