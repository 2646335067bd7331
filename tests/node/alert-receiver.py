#!/usr/bin/env python3
"""The alert webhook on the test bed's node, for tests/node/run.sh.

    alert-receiver.py --bind ADDR --port-file FILE --out FILE
                      [--max-requests N] [--max-body BYTES] [--lifetime SECONDS]

Listens on ADDR (the node's bridge address, which the pods reach) on a free
port, writes the port to --port-file once it accepts connections, and appends
one JSON line per request to --out: {"method", "path", "content_type",
"body"} (body as text, undecodable bytes replaced). Every request gets 200.

Bounded: a body over --max-body bytes is not read (413, recorded with body
null); after --max-requests requests, or --lifetime seconds, it stops by
itself, so a test that dies without stopping it leaves nothing running.
"""

import argparse
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bind", required=True)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--max-requests", type=int, default=100)
    ap.add_argument("--max-body", type=int, default=64 * 1024)
    ap.add_argument("--lifetime", type=float, default=900)
    args = ap.parse_args()

    seen = 0
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        timeout = 10  # a client that stalls mid-request is dropped

        # Each record is written whole before the answer, so a reader that
        # saw the 200's effect (the controller counting "sent") sees it.
        def handle_one(self):
            nonlocal seen
            length = int(self.headers.get("Content-Length") or 0)
            status, body = 200, None
            if length > args.max_body:
                status = 413
            elif length > 0:
                body = self.rfile.read(length).decode("utf-8", "replace")
            record = {
                "method": self.command,
                "path": self.path,
                "content_type": self.headers.get("Content-Type"),
                "body": body,
            }
            with lock:
                with open(args.out, "a", encoding="utf-8") as f:
                    f.write(json.dumps(record) + "\n")
                seen += 1
                done = seen >= args.max_requests
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.send_header("Connection", "close")
            self.end_headers()
            if done:
                threading.Thread(target=server.shutdown, daemon=True).start()

        do_POST = do_PUT = do_GET = handle_one

        def log_message(self, *_):  # the records are the log
            pass

    server = HTTPServer((args.bind, 0), Handler)
    server.timeout = 5
    timer = threading.Timer(args.lifetime, server.shutdown)
    timer.daemon = True
    timer.start()
    with open(args.port_file + ".tmp", "w", encoding="utf-8") as f:
        f.write(f"{server.server_address[1]}\n")
    # Renamed into place: the reader never sees a half-written port.
    os.replace(args.port_file + ".tmp", args.port_file)
    server.serve_forever(poll_interval=0.5)
    server.server_close()


if __name__ == "__main__":
    main()
