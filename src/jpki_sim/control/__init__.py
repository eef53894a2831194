"""Drive served cards from outside: the control service of ``jpki-sim serve``.

A front end, beside the pytest plugin and the benchmark (which use it), above
the shell and the vectors. Its parts:

- :mod:`.served`: one card in a reader under control (the card's lock, faults,
  remove/insert, power, PIN counters through the one retry-counter rule, the
  live APDU trace); serve, the pytest plugin and the benchmark serve cards
  through it;
- :mod:`.hotpath`: the card's lock and clock, which let the vpcd bridge answer
  its APDUs taking no lock and reading no clock;
- :mod:`.livetrace`: the live trace (recent records, listeners, their JSON);
- :mod:`.faults`: the faults a tester injects (delay, forced SW, mute, tear);
- :mod:`.lifecycle`: issue, renew, revoke and expire through the issuer, and
  the status date;
- :mod:`.ocsp`: OCSP and CRLs for relying parties, pre-signed and cached;
- :mod:`.app`: the HTTP service (Starlette): the JSON API, the dashboard, OCSP;
- :mod:`.server`: running it (uvicorn) with its token file, timeouts and limits;
- :mod:`.client`: the API from Python (``jpki-sim ctl``, tests).

docs/control.md describes the API.
"""

#: where the control service listens unless told otherwise: the port the test CA
#: writes into certificates for OCSP and CRLs, so relying parties find them here
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 3280
