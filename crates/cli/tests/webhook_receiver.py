#!/usr/bin/env python3
"""A webhook receiver for the endusers tests.

Verifies every delivery with the unmodified `svix` and `standardwebhooks`
libraries (the ones integrators use), answers 204 when both accept it and
400 otherwise, and appends one JSON line per delivery to a log file.

Usage: webhook_receiver.py SECRET_FILE LOG_FILE
Prints the port it listens on (127.0.0.1) on its first line of output.
"""

import http.server
import json
import sys
import threading

from standardwebhooks.webhooks import Webhook as StandardWebhook
from svix.webhooks import Webhook as SvixWebhook

SECRET_FILE, LOG_FILE = sys.argv[1], sys.argv[2]
LOCK = threading.Lock()


def check(verifier, secret, body, headers, names):
    try:
        verifier(secret).verify(body, {name: headers.get(name, "") for name in names})
        return None
    except Exception as error:  # the libraries raise their own error types
        return f"{type(error).__name__}: {error}"


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        with open(SECRET_FILE) as f:
            secret = f.read().strip()
        headers = {k.lower(): v for k, v in self.headers.items()}
        svix_error = check(SvixWebhook, secret, body, headers, ("svix-id", "svix-timestamp", "svix-signature"))
        standard_error = check(
            StandardWebhook, secret, body, headers, ("webhook-id", "webhook-timestamp", "webhook-signature")
        )
        record = {
            "id": headers.get("webhook-id"),
            "svix": svix_error,
            "standard": standard_error,
            "type": json.loads(body).get("type") if body else None,
        }
        with LOCK, open(LOG_FILE, "a") as log:
            log.write(json.dumps(record) + "\n")
        self.send_response(204 if svix_error is None and standard_error is None else 400)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
