"""SSRF guard: which addresses a fetch may connect to, and a caching resolver that pins them.

A host is resolved once (numeric forms such as `2130706433`, `0x7f.1` or `0177.0.0.1` are
parsed as the C library would), every address is checked, and the connection later goes to a
checked address: DNS rebinding between check and connect is not possible. A `connect_to`
entry (curl's --connect-to) sends a host:port's connections to another host:port; that
target is resolved and checked the same way, so a mapping opens nothing the guard refuses.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from curate.errors import SampleFailure

__all__ = ["AddressGuard", "Resolver", "parse_ip_literal", "split_host_port", "system_resolver"]

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]


def system_resolver(host: str, port: int) -> list[str]:
    """All addresses of `host` from the system resolver, in its order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: list[str] = []
    for info in infos:
        addr = str(info[4][0])
        if addr not in seen:
            seen.append(addr)
    return seen


def parse_ip_literal(host: str) -> IP | None:
    """An IP written in any form a URL parser or libc accepts, else None."""
    h = host.strip("[]")
    try:
        return ipaddress.ip_address(h.split("%", 1)[0])
    except ValueError:
        pass
    if h and all(c in "0123456789abcdefxABCDEFX." for c in h) and h[0].isdigit():
        try:
            return ipaddress.IPv4Address(socket.inet_aton(h))
        except OSError:
            return None
    return None


def _bare(host: str) -> str:
    """A host as urllib3 and urlsplit hand it over, made comparable: lowercase, no brackets
    around IPv6, no trailing dot."""
    return host.strip("[]").lower().rstrip(".")


def split_host_port(text: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` to (bare host, port); ValueError when not one."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not _bare(host) or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"not host:port: {text!r}")
    return _bare(host), int(port)


def _unwrap(ip: IP) -> IP:
    """IPv4 hidden in IPv6 (mapped, 6to4, Teredo) is judged as the IPv4 address."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.sixtofour is not None:
            return ip.sixtofour
        if ip.teredo is not None:
            return ip.teredo[1]
    return ip


def is_public(ip: IP) -> bool:
    """Only globally routable unicast addresses are public."""
    ip = _unwrap(ip)
    return ip.is_global and not (
        ip.is_multicast or ip.is_reserved or ip.is_loopback or ip.is_link_local or ip.is_private
    )


class AddressGuard:
    """Resolve, check and cache hosts for one worker process (thread-safe)."""

    def __init__(
        self,
        allow_private: bool = False,
        allowed_networks: Sequence[str] = (),
        resolver: Resolver | None = None,
        ttl_s: float = 300.0,
        timeout_s: float | None = None,
        connect_to: Mapping[str, str] | None = None,
    ) -> None:
        self.allow_private = allow_private
        self.connect_to = {
            split_host_port(k): split_host_port(v) for k, v in (connect_to or {}).items()
        }
        self.allowed = [ipaddress.ip_network(n, strict=False) for n in allowed_networks]
        self.resolver = resolver or system_resolver
        self.ttl_s = ttl_s
        self._cache: dict[tuple[str, int], tuple[float, list[str]]] = {}
        self._lock = threading.Lock()
        self.lookups = 0
        # getaddrinfo cannot be interrupted and a broken resolver can hold it for minutes;
        # lookups run on helper threads so a fetch gives up after `timeout_s`.
        self.timeout_s = timeout_s
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="curate-dns")

    def permitted(self, ip: IP) -> bool:
        if self.allow_private or any(ip in net for net in self.allowed):
            return True
        unwrapped = _unwrap(ip)
        if any(unwrapped in net for net in self.allowed):
            return True
        return is_public(ip)

    def _resolve(self, host: str, port: int) -> list[str]:
        literal = parse_ip_literal(host)
        if literal is not None:
            return [str(literal)]
        key = (host.lower(), port)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
            if hit and hit[0] > now:
                return hit[1]
        try:
            self.lookups += 1
            addrs = self._lookup(host, port)
        except (socket.gaierror, UnicodeError) as err:
            raise SampleFailure("dns_error", f"{host}: {err}") from None
        except OSError as err:
            raise SampleFailure("dns_error", f"{host}: {err}") from None
        if not addrs:
            raise SampleFailure("dns_error", f"{host}: no addresses")
        with self._lock:
            self._cache[key] = (now + self.ttl_s, addrs)
        return addrs

    def _lookup(self, host: str, port: int) -> list[str]:
        if self.timeout_s is None:
            return self.resolver(host, port)
        pending = self._pool.submit(self.resolver, host, port)
        try:
            return pending.result(timeout=self.timeout_s)
        except FutureTimeout:
            raise SampleFailure(
                "dns_error", f"{host}: no answer from the resolver within {self.timeout_s:g}s"
            ) from None

    def route(self, host: str, port: int) -> tuple[str, int]:
        """Where connections for host:port go: its connect_to target, else itself."""
        return self.connect_to.get((_bare(host), port), (host, port))

    def check(self, host: str, port: int) -> str:
        """The address to connect to; SampleFailure(private_address) if any is not allowed.
        For a mapped host:port, the target's addresses are the ones resolved and checked."""
        if not host:
            raise SampleFailure("bad_url", "no host")
        target, target_port = self.route(host, port)
        addrs = self._resolve(target, target_port)
        via = "" if (target, target_port) == (host, port) else f" (connect_to {target})"
        for a in addrs:
            if not self.permitted(ipaddress.ip_address(a.split("%", 1)[0])):
                raise SampleFailure("private_address", f"{host}{via} resolves to {a}")
        return addrs[0]

    def pinned(self, host: str, port: int) -> tuple[str, int]:
        """For the connection layer: the checked address and the port to dial (connect_to's,
        else the URL's), re-checked if the cache expired."""
        return self.check(host, port), self.route(host, port)[1]
