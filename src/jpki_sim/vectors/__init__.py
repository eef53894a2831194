"""Conformance vectors of the JPKI card: model, loader, runner, recorder, replay.

The vectors themselves are data (``vectors/*.jsonl`` in the source tree, a
copy in ``jpki_sim/vectors/data``); ``docs/protocol.md`` ("Conformance vectors") describes
their format. Entry points:

- :func:`jpki_sim.vectors.loader.load_suite` reads vector files;
- :func:`jpki_sim.vectors.runner.run_suite` plays them on a target from
  :mod:`jpki_sim.vectors.targets` (in-process, pcscd + vpcd, any reader);
- :mod:`jpki_sim.issuer.presets` issues the named cards they play against;
- :func:`jpki_sim.vectors.recorder.record` turns a trace into vectors;
- :class:`jpki_sim.vectors.replay.ReplayTransport` serves a trace back as a card.

Nothing heavy is imported here, so ``import jpki_sim.vectors`` stays cheap.
"""
