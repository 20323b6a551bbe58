"""The harness itself: it only ever talks to the ComfyUI server it started.

Another program (a user's ComfyUI, another test run) may answer on the port the harness picked, in the
moment before our server fails to bind it. ``start_server`` must then report the failure, never hand
out the foreign server. Checked with a stand-in "main.py" and a stand-in foreign server, so no ComfyUI
start-up is needed.
"""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from comfy_harness import is_own_server, start_server


def _foreign_server(argv: list[str]):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            body = {"/system_stats": {"system": {"argv": argv}}, "/object_info": {"KSampler": {}}}.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(json.dumps(body or {}).encode())

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _fake_comfyui(tmp_path, seconds: float):
    """A "ComfyUI" whose main.py runs ``seconds`` and then fails to bind, as the real one does on a taken port."""
    root = tmp_path / "fake_comfyui"
    root.mkdir()
    (root / "main.py").write_text(
        "import time, sys\n"
        f"time.sleep({seconds})\n"
        "print('OSError: [Errno 98] error while attempting to bind on address: address already in use')\n"
        "sys.exit(1)\n"
    )
    return root


def test_a_foreign_server_on_the_port_is_never_taken_for_ours(tmp_path):
    foreign = _foreign_server(["main.py", "--port", "0", "--base-directory", "/somewhere/else"])
    port = foreign.server_address[1]
    try:
        with pytest.raises(RuntimeError, match="address already in use"):
            start_server(_fake_comfyui(tmp_path, 3.0), tmp_path / "base", port, startup_timeout=30)
    finally:
        foreign.shutdown()
        foreign.server_close()


def test_the_own_server_is_recognised_by_its_base_directory_and_port(tmp_path):
    from comfy_harness import ComfyServer

    base = (tmp_path / "base").resolve()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        free_port = sock.getsockname()[1]
    fake = _foreign_server(["main.py", "--port", str(free_port), "--base-directory", str(base)])

    class Running:
        def poll(self):
            return None

    class Exited:
        def poll(self):
            return 1

    try:
        url = f"http://127.0.0.1:{fake.server_address[1]}"
        assert is_own_server(ComfyServer(url, base, base / "log", Running()), free_port)
        assert not is_own_server(ComfyServer(url, base, base / "log", Exited()), free_port)  # ours died
        assert not is_own_server(ComfyServer(url, base / "other", base / "log", Running()), free_port)
        assert not is_own_server(ComfyServer(url, base, base / "log", Running()), free_port + 1)
    finally:
        fake.shutdown()
        fake.server_close()
