"""A DynamoDB endpoint that throttles: an HTTP proxy on 127.0.0.1 in front of the emulator that
answers every `every`-th read with ProvisionedThroughputExceededException (as DynamoDB does when a
table's capacity is exceeded) and serves only half of each BatchGetItem's keys, returning the rest
as UnprocessedKeys (as DynamoDB does under load). What it did is counted, so a test can tell that
the client met both and still gave the exact answer. `before_write` lets a test play another
writer that gets to an item just before a write of tablesync's reaches it."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

THROTTLED_BODY = {
    "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
    "message": "The level of configured provisioned throughput for the table was exceeded",
}
READS = {"Scan", "Query", "GetItem", "BatchGetItem"}
WRITES = {"PutItem", "DeleteItem", "UpdateItem"}


class ThrottlingProxy:
    def __init__(self, upstream: str, every: int = 3) -> None:
        # Called with each write's request before it is passed on: another writer racing it.
        self.before_write: Callable[[str, dict[str, Any]], None] | None = None
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.every = every
        self.lock = threading.Lock()
        self.reads = 0
        self.throttled = 0
        self.unprocessed = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _decide(self, operation: str) -> bool:
        """Whether this read is throttled."""
        with self.lock:
            self.reads += 1
            if self.reads % self.every == 0:
                self.throttled += 1
                return True
            return False

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                return None

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                target = self.headers.get("X-Amz-Target", "")
                operation = target.rsplit(".", 1)[-1] if target.startswith("DynamoDB_") else ""
                if operation in READS and proxy._decide(operation):
                    self._answer(400, json.dumps(THROTTLED_BODY).encode())
                    return
                if operation in WRITES and proxy.before_write is not None:
                    proxy.before_write(operation, json.loads(body))
                held_back: dict[str, Any] = {}
                if operation == "BatchGetItem":
                    body, held_back = _keep_half(body)
                    with proxy.lock:
                        proxy.unprocessed += sum(len(v["Keys"]) for v in held_back.values())
                status, answer = self._forward(body)
                if held_back and status == 200:
                    document = json.loads(answer)
                    unprocessed = document.setdefault("UnprocessedKeys", {})
                    for table, wanted in held_back.items():
                        unprocessed.setdefault(table, {**wanted, "Keys": []})["Keys"] += wanted["Keys"]
                    answer = json.dumps(document).encode()
                self._answer(status, answer)

            def _forward(self, body: bytes) -> tuple[int, bytes]:
                connection = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in ("content-length", "host")}
                    headers["Content-Length"] = str(len(body))
                    connection.request("POST", self.path, body=body, headers=headers)
                    response = connection.getresponse()
                    return response.status, response.read()
                finally:
                    connection.close()

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.0")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler


def _keep_half(body: bytes) -> tuple[bytes, dict[str, Any]]:
    """The request with the first half of each table's keys; the other halves, held back."""
    request = json.loads(body)
    held_back: dict[str, Any] = {}
    for table, wanted in request.get("RequestItems", {}).items():
        keys = wanted.get("Keys", [])
        if len(keys) > 1:
            half = len(keys) // 2
            held_back[table] = {**wanted, "Keys": keys[half:]}
            wanted["Keys"] = keys[:half]
    return json.dumps(request).encode(), held_back
