"""A server is announced only once it answers."""
import http.server
import socket
import threading

from tlexplorer._ready import answers, probe_host, when_answering


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_announces_once_the_server_answers():
    port = _free_port()
    url = f"http://localhost:{port}/tlx-health"
    assert not answers(url)
    announced = threading.Event()
    thread = when_answering(url, announced.set, every=0.05)
    assert not announced.wait(0.3)  # nothing listens yet: no announcement
    server = http.server.HTTPServer(("localhost", port), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert announced.wait(10)  # a 501 from the bare handler still means "answering"
        thread.join(5)
        assert not thread.is_alive()
    finally:
        server.shutdown()
        server.server_close()


def test_probe_host_of_every_interface_is_this_machine():
    assert probe_host(None) == probe_host("0.0.0.0") == "localhost"
    assert probe_host("10.0.0.5") == "10.0.0.5"
