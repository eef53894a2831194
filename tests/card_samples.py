"""Sample EFs of the card, assembled by hand from the layouts (TLV and record tests)."""

# EF 0002 of the helper application for the seeds' holder, assembled by hand:
#   FF 20 59                      outer object, 89 bytes, short length form
#   DF 21 08 000E 0020 004D 0058  offsets of DF22..DF25 counted from byte 0 of the EF
#   DF 22 0F 番号<U+3000>花子       name, 15 bytes of UTF-8           (at 0x0E)
#   DF 23 2A 〇〇県△△市□□町１－１－１  address, 42 bytes, full-width digits (at 0x20)
#   DF 24 08 "19930331"           birth date                         (at 0x4D)
#   DF 25 01 "2"                  sex, ISO 5218 female               (at 0x58), ends at 92
HANAKO_BASIC_INFO = bytes.fromhex(
    "FF2059"
    "DF2108000E0020004D0058"
    "DF220F" "E795AA" "E58FB7" "E38080" "E88AB1" "E5AD90"
    "DF232A" "E38087E38087E79C8C" "E296B3E296B3E5B882" "E296A1E296A1E794BA"
    "EFBC91EFBC8DEFBC91EFBC8DEFBC91"
    "DF2408" "3139393330333331"
    "DF250132"
)  # fmt: skip

# shaped like EF 0005 of the helper application: FF 40 82 00 9F, and a 128-byte
# value written 82 00 80 (159 = 7 + 19 + 5 + 128), then FF filler
AP_BASIC_INFO = (
    bytes.fromhex("FF4082009F" "DF410401030E01" "DF4210") + bytes(range(16))
    + bytes.fromhex("DF43820080") + bytes(range(0x80, 0x100)) + b"\xff" * 23
)  # fmt: skip

# shaped like EF 0003: FF 30 82 01 4B { DF31 20 .., DF32 20 .., DF33 82 01 00 <256> }
INTEGRITY = (
    bytes.fromhex("FF3082014B" "DF3120") + b"\x11" * 32 + bytes.fromhex("DF3220") + b"\x22" * 32
    + bytes.fromhex("DF33820100") + b"\x33" * 256
)  # fmt: skip

MY_NUMBER_EF = bytes.fromhex("FF100C") + b"012345678903" + b"\xff\xff"
