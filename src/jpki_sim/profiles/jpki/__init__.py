"""The My Number card (個人番号カード): its applications, data, handlers and state schema.

The registry's entry is :data:`jpki_sim.profiles.jpki.profile.PROFILE`.
"""
