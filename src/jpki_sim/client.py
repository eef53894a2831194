"""Compatibility name: the JPKI client lives in :mod:`jpki_sim.profiles.jpki.client`."""

from jpki_sim.profiles.jpki.client import *  # noqa: F403
from jpki_sim.profiles.jpki.client import JpkiClient  # noqa: F401
