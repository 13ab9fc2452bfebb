"""ICE settings for the WebRTC tap: which STUN/TURN servers, and which local addresses ICE may use.

Two settings, read from the environment when the WebRTC tap first serves:

- ``ASSIST_ICE_SERVERS``: a JSON list of ``{"urls": "stun:host:port" | [...], "username"?,
  "credential"?}`` (the browser's ``RTCIceServer``). Default: none (``iceServers=[]``); aiortc's own
  default, a public Google STUN server, is never used.
- ``ASSIST_ICE_ADDRESSES``: a comma-separated list of local IP addresses and/or interface names
  (``127.0.0.1``, ``eth1``, ``10.0.0.5``) that ICE may gather host candidates on. Default (unset,
  empty or ``all``): every address of every interface except loopback, aioice's own behaviour.

aioice has no public option for the second one: ``restrict_ice`` replaces two of its functions for
the whole process (see there); this module is the only place in the project that touches aioice
internals. "Within reach": loopback reaches only loopback, other addresses only non-loopback
addresses of their own IP family. When the setting is on, ``filter_candidates`` also drops the
offered ``a=candidate`` lines beyond reach, so no check is ever sent there: a loopback-only server
keeps only loopback candidates (and never resolves an mDNS ``.local`` name, which would mean
multicast), and answers no check from a non-loopback source.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aioice.ice
import ifaddr
from aiortc import RTCConfiguration, RTCIceServer

from sidecar.kernel.errors import ConfigError

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_ORIGINAL_GET_HOST_ADDRESSES = aioice.ice.get_host_addresses
_ORIGINAL_REQUEST_RECEIVED = aioice.ice.Connection.request_received


@dataclass(frozen=True, slots=True)
class IceSettings:
    servers: tuple[RTCIceServer, ...] = ()
    addresses: tuple[str, ...] | None = None  # addresses or interface names; None: all (aioice's default)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> IceSettings:
        env = os.environ if env is None else env
        return cls(
            _servers(env.get("ASSIST_ICE_SERVERS", "")), _addresses(env.get("ASSIST_ICE_ADDRESSES", ""))
        )

    def configuration(self) -> RTCConfiguration:
        return RTCConfiguration(iceServers=list(self.servers))

    def local_addresses(self) -> list[str] | None:
        """The configured addresses that exist on this machine now (None: no restriction)."""
        if self.addresses is None:
            return None
        wanted = set(self.addresses)
        found: list[str] = []
        for adapter in ifaddr.get_adapters():
            for ip in adapter.ips:
                address = ip.ip if isinstance(ip.ip, str) else ip.ip[0]
                if isinstance(ip.ip, tuple) and ip.ip[2]:  # link-local IPv6 with a scope: never
                    continue
                if (address in wanted or adapter.name in wanted) and address not in found:
                    found.append(address)
        return found


def _servers(raw: str) -> tuple[RTCIceServer, ...]:
    if not raw.strip():
        return ()
    try:
        items = json.loads(raw)
        if not isinstance(items, list):
            raise TypeError("not a list")
        return tuple(_server(item) for item in items)
    except (ValueError, TypeError, KeyError) as exc:
        raise ConfigError(
            f'ASSIST_ICE_SERVERS: expected a JSON list of {{"urls", "username"?, "credential"?}}: {exc}'
        ) from None


def _server(item: Any) -> RTCIceServer:
    if not isinstance(item, dict) or not isinstance(item.get("urls"), str | list):
        raise TypeError(f"bad entry {item!r}")
    return RTCIceServer(urls=item["urls"], username=item.get("username"), credential=item.get("credential"))


def _addresses(raw: str) -> tuple[str, ...] | None:
    items = tuple(part.strip() for part in raw.split(",") if part.strip())
    if not items or items == ("all",):
        return None
    for item in items:
        if not re.fullmatch(r"[A-Za-z0-9_.:%-]+", item):
            raise ConfigError(
                f"ASSIST_ICE_ADDRESSES: {item!r} is neither an IP address nor an interface name"
            )
    return items


def _reachable(candidate: str, local: list[IpAddress]) -> bool:
    """Loopback reaches only loopback, other addresses only other addresses of their family."""
    try:
        remote = ipaddress.ip_address(candidate)
    except ValueError:  # an mDNS .local name (or garbage): resolving it means multicast
        return any(not address.is_loopback for address in local)
    return any(a.version == remote.version and a.is_loopback == remote.is_loopback for a in local)


def restrict_ice(settings: IceSettings) -> None:
    """Process-wide: ICE uses only ``settings``' local addresses (no restriction when None).

    Two replacements in aioice, made here and nowhere else: ``aioice.ice.get_host_addresses``
    answers the allowed addresses that exist on this machine (loopback too when named, which
    aioice never gathers itself), and ``Connection.request_received`` ignores connectivity checks
    from a source none of them can reach (a browser on this machine also checks from its other
    interfaces: without an answer, only the pairs within reach succeed, and we never send
    elsewhere). Applied when the WebRTC tap starts; calling it again replaces the previous limit.
    """
    if settings.addresses is None:
        aioice.ice.get_host_addresses = _ORIGINAL_GET_HOST_ADDRESSES
        aioice.ice.Connection.request_received = _ORIGINAL_REQUEST_RECEIVED  # type: ignore[method-assign]
        return
    local = [ipaddress.ip_address(a) for a in settings.local_addresses() or []]

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        out = []
        for address in settings.local_addresses() or []:
            version = ipaddress.ip_address(address).version
            if (version == 4 and use_ipv4) or (version == 6 and use_ipv6):
                out.append(address)
        return out

    def request_received(
        self: aioice.ice.Connection, message: Any, addr: tuple[str, int], protocol: Any
    ) -> None:
        if _reachable(addr[0], local):
            _ORIGINAL_REQUEST_RECEIVED(self, message, addr, protocol)

    aioice.ice.get_host_addresses = get_host_addresses
    aioice.ice.Connection.request_received = request_received  # type: ignore[method-assign]


def filter_candidates(sdp: str, settings: IceSettings) -> tuple[str, int]:
    """``sdp`` without the ``a=candidate`` lines no allowed local address can reach, and how many
    were dropped. Unchanged when the addresses are not restricted."""
    allowed = settings.local_addresses()
    if allowed is None:
        return sdp, 0
    local = [ipaddress.ip_address(a) for a in allowed]
    kept: list[str] = []
    dropped = 0
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            fields = line.split()
            if len(fields) < 8 or not _reachable(fields[4], local):
                dropped += 1
                continue
        kept.append(line)
    return "\r\n".join(kept) + "\r\n", dropped


def candidate_addresses(sdp: str) -> list[str]:
    """The connection addresses of an SDP's ``a=candidate`` lines (for logs and tests)."""
    return [
        line.split()[4]
        for line in sdp.splitlines()
        if line.startswith("a=candidate:") and len(line.split()) > 4
    ]
