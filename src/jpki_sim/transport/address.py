"""``HOST:PORT`` as the command line gives it (vpcd's address, the control service's)."""

from __future__ import annotations


def parse_host_port(text: str, default_host: str, default_port: int, *,
                    lowest_port: int = 1) -> tuple[str, int]:
    """``HOST:PORT``, ``HOST``, ``:PORT``, ``PORT``, ``[V6]:PORT``, ``[V6]`` or a bare IPv6
    address -> (host, port), the defaults for what is left out; ValueError if bad."""
    text = text.strip()
    if text.isdigit():
        host, port_text = "", text
    elif text.startswith("[") and "]" in text:
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:  # a name, or a bare IPv6 address
        host, port_text = text, ""
    port = default_port
    if port_text:
        try:
            port = int(port_text)
        except ValueError:
            raise ValueError(f"bad port {port_text!r} in {text!r}") from None
    if not lowest_port <= port <= 65535:
        raise ValueError(f"port {port} out of range in {text!r}")
    return host or default_host, port
