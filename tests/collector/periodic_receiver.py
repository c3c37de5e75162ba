"""A webhook and syslog receiver for the periodic-scan tests, run inside the lab's mgmt namespace
(where the collectors are) as `ip netns exec NS python3 -I periodic_receiver.py HTTP UDP DIR`.

Stdlib only. Every POST is answered 200 and written as one JSON line to DIR/webhook.jsonl (its
headers and its body exactly as received, base64); every UDP datagram to DIR/syslog.log, one
line each. Both listen on 127.0.0.1 of that namespace only.
"""

from __future__ import annotations

import base64
import http.server
import json
import socket
import sys
import threading
from pathlib import Path


def main(argv: list[str]) -> int:
    http_port, udp_port, out = int(argv[0]), int(argv[1]), Path(argv[2])
    lock = threading.Lock()

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            line = {
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": base64.b64encode(body).decode("ascii"),
            }
            with lock, (out / "webhook.jsonl").open("a", encoding="utf-8") as sink:
                sink.write(json.dumps(line) + "\n")
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return

    def syslog() -> None:
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", udp_port))
        while True:
            data = udp.recv(65535)
            with lock, (out / "syslog.log").open("a", encoding="utf-8") as sink:
                sink.write(data.decode("utf-8", "replace").replace("\n", " ").rstrip() + "\n")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", http_port), Hook)
    threading.Thread(target=syslog, daemon=True).start()
    (out / "ready").write_text("ready\n", encoding="utf-8")
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
