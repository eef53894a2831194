"""Compatibility name: the strategies live in :mod:`jpki_sim.testing.strategies`."""

from jpki_sim.testing.strategies import *  # noqa: F403
