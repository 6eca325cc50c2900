"""The read deadline of the servers' gunicorn worker (slowloris, issue #10 item 15), on a
socket pair: no server, no root."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from hotspot.httpworker import DeadlineUnreader, RequestReadTimeout, worker_class_for


def _pair():
    a, b = socket.socketpair()
    a.setblocking(True)
    return a, b


def test_headers_trickled_past_the_deadline_are_cut():
    server, client = _pair()
    reader = DeadlineUnreader(server, read_timeout=0.6)
    stop = threading.Event()

    def trickle():
        while not stop.is_set():
            client.send(b"X")
            time.sleep(0.1)

    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    started = time.monotonic()
    try:
        with pytest.raises(RequestReadTimeout):
            while True:
                reader.chunk()  # every read gets data, yet the headers never end
    finally:
        stop.set()
        t.join()
        client.close()
        server.close()
    assert 0.5 < time.monotonic() - started < 1.5


def test_a_silent_client_is_cut_and_the_socket_is_left_blocking():
    server, client = _pair()
    reader = DeadlineUnreader(server, read_timeout=0.3)
    with pytest.raises(RequestReadTimeout):
        reader.chunk()
    assert server.gettimeout() is None
    client.close()
    server.close()


def test_each_request_gets_its_own_deadline_and_the_body_an_idle_limit():
    server, client = _pair()
    reader = DeadlineUnreader(server, read_timeout=0.4)
    client.send(b"GET / HTTP/1.1\r\n")
    assert reader.chunk() == b"GET / HTTP/1.1\r\n"
    time.sleep(0.5)  # past the first request's deadline
    reader.next_request()
    client.send(b"GET /ok HTTP/1.1\r\n")
    assert reader.chunk() == b"GET /ok HTTP/1.1\r\n"
    reader.headers_done = True
    for _ in range(3):  # a body that keeps coming may take longer than the deadline ...
        time.sleep(0.2)
        client.send(b"a=1")
        assert reader.chunk() == b"a=1"
    with pytest.raises(RequestReadTimeout):  # ... but may not stall for longer
        reader.chunk()
    client.close()
    server.close()


def test_worker_class_carries_the_seconds():
    cls = worker_class_for(7)
    assert cls.read_timeout == 7.0
    assert worker_class_for(3).read_timeout == 3.0 and cls.read_timeout == 7.0


def test_past_the_deadline_what_already_arrived_is_still_read():
    """A villager's request that waited in the queue behind slow sockets is complete in
    the socket buffer: it is served, only waiting for more is refused."""
    server, client = _pair()
    reader = DeadlineUnreader(server, read_timeout=0.2)
    reader.next_request(arrived=time.monotonic() - 5)
    client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert reader.chunk() == b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    with pytest.raises(RequestReadTimeout):
        reader.chunk()
    client.close()
    server.close()


def _gunicorn_response():
    """gunicorn's own response object for a keep-alive HTTP/1.1 GET."""
    from types import SimpleNamespace

    from gunicorn.http.wsgi import Response

    req = SimpleNamespace(version=(1, 1), method="GET", should_close=lambda: False)
    return Response(req, None, SimpleNamespace())


@pytest.mark.parametrize("says_close", [True, False])
def test_an_applications_connection_close_closes_the_connection(says_close):
    """gunicorn drops the hop-by-hop headers an application sets: the portal's captive
    redirects said ``Connection: close`` and the connection stayed open (issue #12, item 6)."""
    from hotspot.httpworker import honour_connection_close

    def app(environ, start_response):
        headers = [("Content-Length", "2")]
        if says_close:
            headers.append(("Connection", "close"))
        start_response("302 Found", headers)
        return [b"ok"]

    resp = _gunicorn_response()
    assert list(honour_connection_close(app)({}, resp.start_response)) == [b"ok"]
    assert resp.should_close() is says_close
    sent = "".join(resp.default_headers())
    assert ("Connection: close" in sent) is says_close
