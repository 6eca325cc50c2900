"""A small Telegram Bot API on loopback for the summary's tests: a threaded ``http.server``
answering ``POST /bot<token>/sendMessage`` (JSON or form body) the way api.telegram.org
does — 200 ``{"ok": true, "result": {...}}``, 401 ``Unauthorized`` for another token, 400
``chat not found`` for another chat — and, when told, 429 with ``retry_after``, 5xx, or
holding a request (received, not answered) until released."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = "123456789:AAEabcdefghijklmnopqrstuvwxyz0123"
CHAT = "-1001234567890"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class BotApi:
    def __init__(self, port: int | None = None, token: str = TOKEN, chat: str = CHAT):
        self.port = port or free_port()
        self.token = token
        self.chat = chat
        self.received: list[dict[str, Any]] = []  # every sendMessage that reached us
        self.delivered: list[str] = []  # texts answered with ok: true, in order
        self.script: list[tuple[int, dict[str, Any]]] = []  # answers to give first
        self.hold = threading.Event()  # set: hold the next requests unanswered
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> BotApi:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                ctype = self.headers.get("Content-Type", "")
                if ctype.startswith("application/json"):
                    body = json.loads(raw or b"{}")
                else:
                    body = {k: v[0] for k, v in urllib.parse.parse_qs(raw.decode()).items()}
                token, _, method = self.path.removeprefix("/bot").partition("/")
                if not self.path.startswith("/bot") or method != "sendMessage":
                    return self._answer(
                        404, {"ok": False, "error_code": 404, "description": "Not Found"}
                    )
                with api.lock:
                    api.received.append({"token": token, **body})
                    scripted = api.script.pop(0) if api.script else None
                if api.hold.is_set():
                    api.release.wait(30)
                if token != api.token:
                    return self._answer(
                        401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
                    )
                if scripted is not None:
                    return self._answer(*scripted)
                if str(body.get("chat_id")) != api.chat:
                    return self._answer(
                        400,
                        {
                            "ok": False,
                            "error_code": 400,
                            "description": "Bad Request: chat not found",
                        },
                    )
                with api.lock:
                    api.delivered.append(str(body.get("text")))
                    mid = len(api.delivered)
                self._answer(
                    200,
                    {
                        "ok": True,
                        "result": {
                            "message_id": mid,
                            "chat": {"id": int(api.chat), "type": "private"},
                            "date": int(time.time()),
                            "text": body.get("text"),
                        },
                    },
                )

            def _answer(self, status: int, data: dict[str, Any]) -> None:
                out = json.dumps(data).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(out)))
                    self.end_headers()
                    self.wfile.write(out)
                except OSError:  # the client is gone (killed mid-request)
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def wait_received(self, n: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.received) >= n:
                    return
            time.sleep(0.05)
        raise AssertionError(f"{len(self.received)} requests, expected {n}")
