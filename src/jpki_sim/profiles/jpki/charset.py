"""Which characters the signature certificate may carry, and the substitute-character flags.

The signature certificate's name and address (subjectAltName otherNames ``.1`` and
``.5`` under 1.2.392.200149.8.5.5) hold only characters of JIS X 0208 (levels 1 and
2) and JIS X 0212 (補助漢字); any other character is replaced by a substitute
character, and ``.2`` (name) and ``.6`` (address) say where: one digit per
character, ``1`` for a substitute, ``0`` otherwise ("00000" for a five-character
name). Source: a 2022 survey of a real certificate with openssl, quoting J-LIS's
signature CA practice statement (protocol notes §9; docs/protocol.md).

**Chosen**: the substitute is the usual plain form for the common variant
characters (髙→高, 﨑→崎, 𠮷→吉 ...), else 〓 (U+3013, the customary substitute
mark); the helper application and the card-surface images keep the characters as
given (they are UTF-8 and IPAmj明朝 images), so only the certificate substitutes.
"""

from __future__ import annotations

__all__ = ["SUBSTITUTE", "in_jis", "jis_text", "substitute_flags"]

SUBSTITUTE = "\u3013"  # 〓
#: Unicode forms that Python's EUC-JP codec maps differently from JIS X 0208 (CP932's)
_JIS_ALIASES = {
    "\uff0d": "\u2212",  # FULLWIDTH HYPHEN-MINUS -> MINUS SIGN (1-29)
    "\uff5e": "\u301c",  # FULLWIDTH TILDE -> WAVE DASH (1-33)
    "\u2225": "\u2016",  # PARALLEL TO -> DOUBLE VERTICAL LINE (1-34)
    "\uffe0": "\u00a2",  # FULLWIDTH CENT SIGN (1-81)
    "\uffe1": "\u00a3",  # FULLWIDTH POUND SIGN (1-82)
    "\uffe2": "\u00ac",  # FULLWIDTH NOT SIGN (2-44)
}
#: common variant characters outside JIS X 0208/0212, and their plain forms
_PLAIN_FORMS = {
    "\u9ad9": "\u9ad8",  # 髙 -> 高
    "\ufa11": "\u5d0e",  # 﨑 -> 崎
    "\U00020bb7": "\u5409",  # 𠮷 -> 吉
    "\u5fb7": "\u5fb3",  # 德 -> 徳
}


def in_jis(char: str) -> bool:
    """Whether ``char`` is in JIS X 0208 or JIS X 0212 (or is ASCII)."""
    char = _JIS_ALIASES.get(char, char)
    try:
        char.encode("euc_jp")  # Python's EUC-JP: ASCII, JIS X 0208, X 0212, half-width kana
    except UnicodeEncodeError:
        return False
    return True


def jis_text(text: str) -> tuple[str, str]:
    """(the text with substitutes, the flags): what the certificate carries for ``text``."""
    out = []
    flags = []
    for char in text:
        if in_jis(char):
            out.append(char)
            flags.append("0")
        else:
            plain = _PLAIN_FORMS.get(char)
            out.append(plain if plain is not None and in_jis(plain) else SUBSTITUTE)
            flags.append("1")
    return "".join(out), "".join(flags)


def substitute_flags(text: str) -> str:
    """One digit per character of ``text``: ``1`` where the certificate needs a substitute."""
    return jis_text(text)[1]
