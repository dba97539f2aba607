"""A requests adapter whose connections go only to addresses the AddressGuard checked.

TLS still verifies the certificate against the hostname (SNI and hostname checks use the
name, the TCP connection uses the pinned address).
"""

from __future__ import annotations

import socket
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.util import connection as u3conn

from curate.fetch.safety import AddressGuard

__all__ = ["GuardedAdapter"]


def _pinned_conn_class(base: type[HTTPConnection], guard: AddressGuard) -> type[HTTPConnection]:
    def _new_conn(self: HTTPConnection) -> socket.socket:
        address = guard.pinned(self.host, self.port)
        try:
            return u3conn.create_connection(
                (address, self.port),
                self.timeout,
                source_address=self.source_address,
                socket_options=self.socket_options,
            )
        except TimeoutError as e:
            raise ConnectTimeoutError(self, f"connect to {self.host} timed out") from e
        except OSError as e:
            raise NewConnectionError(self, f"failed to connect to {self.host}: {e}") from e

    return type(f"Pinned{base.__name__}", (base,), {"_new_conn": _new_conn})


class GuardedAdapter(HTTPAdapter):
    """HTTPAdapter with pools whose connections are pinned to checked addresses."""

    def __init__(self, guard: AddressGuard, **kwargs: Any) -> None:
        self.guard = guard
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        http_conn = _pinned_conn_class(HTTPConnection, self.guard)
        https_conn = _pinned_conn_class(HTTPSConnection, self.guard)
        self.poolmanager.pool_classes_by_scheme = {
            "http": type("GuardedHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": http_conn}),
            "https": type(
                "GuardedHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": https_conn}
            ),
        }


def mount_guard(session: requests.Session, guard: AddressGuard, pool_size: int) -> None:
    adapter = GuardedAdapter(guard, pool_connections=pool_size, pool_maxsize=pool_size)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
