"""Addresses: whether a host is loopback only, and whether this machine can bind it. Low in the house:
the engines (which key a server needs), the launcher (where it binds) and serve (who may reach it) ask."""

from __future__ import annotations

import ipaddress
import socket

from .errors import RegistryError


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_host(host: str) -> None:
    """An address this machine can bind: otherwise every port looks 'in use'."""
    import errno

    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, ValueError) as e:
        msg = getattr(e, "strerror", None) or str(e)
        raise RegistryError(f"--host {host!r} is not a valid address ({msg}); give an IP address of this machine, "
                            "e.g. 127.0.0.1, 0.0.0.0 or ::") from None
    fam, _, _, _, addr = infos[0]
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        try:
            s.bind((addr[0], 0))
        except OSError as e:
            if e.errno == errno.EADDRNOTAVAIL:
                raise RegistryError(f"--host {host!r} is not an address of this machine; give one of its own, "
                                    "e.g. 127.0.0.1, 0.0.0.0 or ::") from None
