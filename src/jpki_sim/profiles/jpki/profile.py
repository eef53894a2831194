"""The JPKI profile: the My Number card as the registry knows it."""

from __future__ import annotations

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
        "pin-a": ids.EF_HELPER_PIN_A,
        "pin-b": ids.EF_HELPER_PIN_B,
    },
}

_PIN_APPS = {"auth": "jpki", "sign": "jpki", "helper": "helper"}

PROFILE = Profile(
    name="jpki",
    summary="the Japanese My Number card (個人番号カード): JPKI and card-info helper applications",
    atrs={"contact": ids.ATR},
    applications=dict(ids.APPLICATIONS),
    state=CODEC,
    build=build_card,
    pins={
        name: PinRef(name, _PIN_APPS[name], fid, ids.PIN_POLICIES[name])
        for name, (_aid, fid) in ids.PIN_EFS.items()
    },
    files={
        name: FileRef(name, app, fid)
        for app, table in _FILES.items()
        for name, fid in table.items()
    },
    sw_meanings={SW.SM_REFUSED: "secure messaging refused (JPKI)"},
    secret_instructions=frozenset(),
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
