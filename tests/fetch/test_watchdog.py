"""Request deadlines share one clock thread per process instead of one thread each."""

from __future__ import annotations

import socket
import threading

from curate.fetch import transport
from curate.fetch.transport import Watchdog


def test_many_watchdogs_start_no_thread_each() -> None:
    before = threading.active_count()
    for _ in range(200):
        with Watchdog(30.0) as dog:
            pass
        assert dog.cancelled and not dog.expired
    # at most the one shared clock thread, however many requests were guarded
    assert threading.active_count() <= before + 1
    assert transport._CLOCK.threads_started == 1


def test_an_expired_watchdog_hangs_up_its_socket() -> None:
    a, b = socket.socketpair()
    try:
        with Watchdog(0.05) as dog:
            dog.sock = a
            a.settimeout(10.0)
            data = a.recv(1)  # no sender: only the watchdog's shutdown ends this
        assert dog.expired and data == b""
    finally:
        a.close()
        b.close()


def test_a_finished_watchdog_never_fires() -> None:
    a, b = socket.socketpair()
    try:
        with Watchdog(0.01) as dog:
            dog.sock = a
        c, d = socket.socketpair()
        with Watchdog(0.05) as later:  # fires after the first deadline has been passed over
            later.sock = c
            c.settimeout(10.0)
            c.recv(1)
        c.close()
        d.close()
        assert later.expired
        b.sendall(b"x")
        assert not dog.expired and a.recv(1) == b"x"
    finally:
        a.close()
        b.close()
