#!/usr/bin/env python3
"""The story's API, written without tierguard in mind.

A plain HTTP server from Python's standard library: no token checks, no
tiers, no policy. nginx puts it behind tierguard's forward auth, so it only
ever sees requests tierguard allowed; server/nginx_test.go checks that. It
serves /api/vault too, a route the policy does not declare, to show that
the proxy refuses what the policy does not know even when the API has it.

Usage: upstream.py PORT (0 picks a free one). Prints "listening on
HOST:PORT" once ready, then one line per request it answers.
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROUTES = {
    "/api/news": {"news": [{"id": 1, "title": "Treasure maps now in colour"}]},
    "/api/treasure-map": {"map": "X marks the spot", "upstream": "python"},
    "/api/vault": {"gold": 1000},
}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        path = self.path.split("?", 1)[0]
        body = ROUTES.get(path)
        status = 200 if body is not None else 404
        if body is None:
            body = {"error": "not found"}
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)
        decision = self.headers.get("Tierguard-Decision-Id", "-")
        print(f"{self.command} {self.path} {status} decision={decision}", flush=True)

    def log_message(self, *args):
        pass  # one line per request, printed above


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    host, port = httpd.server_address[:2]
    print(f"listening on {host}:{port}", flush=True)
    httpd.serve_forever()


if __name__ == "__main__":
    main()
