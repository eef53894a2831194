"""Compatibility name: the pytest plugin lives in :mod:`jpki_sim.testing.plugin`."""

from jpki_sim.testing.plugin import *  # noqa: F403
