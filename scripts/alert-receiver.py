#!/usr/bin/env python3
"""Local stand-ins for the alert receivers, for the stack and its tests (no internet, no SaaS).

One process: an HTTP receiver (PagerDuty's Events API v2 at /pagerduty, a Slack-compatible
webhook at any other path) and an SMTP receiver (enough of RFC 5321 for Alertmanager and
`notify`). Every message received is appended to OUT as one JSON line:
  {"receiver": "pagerduty"|"slack"|"email", "at": unix seconds, "path"|"to": ..., "body": ...}
(an email also has "subject" and "text", its decoded plain-text part)

    alert-receiver.py --http-port P --smtp-port S --out FILE
"""
import argparse
import email
import email.policy
import json
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()


def record(out, entry):
    entry["at"] = time.time()
    with LOCK, open(out, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")
        f.flush()


def http_handler(out):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            n = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(n).decode("utf-8", "replace")
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw
            receiver = "pagerduty" if self.path.startswith("/pagerduty") else "slack"
            record(out, {"receiver": receiver, "path": self.path, "body": body})
            # PagerDuty answers 202 with a dedup key; Slack 200 "ok".
            if receiver == "pagerduty":
                reply, status = json.dumps({"status": "success", "message": "Event processed"}), 202
            else:
                reply, status = "ok", 200
            data = reply.encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):  # noqa: N802 — readiness
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    return Handler


def smtp_handler(out):
    class Handler(socketserver.StreamRequestHandler):
        def reply(self, line):
            self.wfile.write((line + "\r\n").encode())

        def handle(self):
            self.reply("220 localhost alert-receiver ESMTP")
            mail_from, rcpt = "", []
            while True:
                line = self.rfile.readline()
                if not line:
                    return
                cmd = line.decode("utf-8", "replace").strip()
                verb = cmd.split(" ", 1)[0].upper()
                if verb in ("EHLO", "HELO"):
                    self.wfile.write(b"250-localhost\r\n250 8BITMIME\r\n")
                elif verb == "MAIL":
                    mail_from, rcpt = cmd[10:].strip(), []
                    self.reply("250 OK")
                elif verb == "RCPT":
                    rcpt.append(cmd[8:].strip())
                    self.reply("250 OK")
                elif verb == "DATA":
                    self.reply("354 end with <CRLF>.<CRLF>")
                    lines = []
                    while True:
                        d = self.rfile.readline()
                        if not d or d in (b".\r\n", b".\n"):
                            break
                        lines.append(d.decode("utf-8", "replace"))
                    body = "".join(lines)
                    # The plain-text part, decoded (quoted-printable wraps long lines).
                    msg = email.message_from_string(body, policy=email.policy.default)
                    part = msg.get_body(preferencelist=("plain",))
                    text = part.get_content() if part is not None else ""
                    record(out, {"receiver": "email", "from": mail_from, "to": rcpt,
                                 "subject": str(msg.get("Subject", "")), "text": text,
                                 "body": body})
                    self.reply("250 OK queued")
                elif verb == "QUIT":
                    self.reply("221 bye")
                    return
                elif verb in ("RSET", "NOOP"):
                    self.reply("250 OK")
                else:
                    self.reply("502 not implemented")

    return Handler


class SMTPServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--http-port", type=int, required=True)
    p.add_argument("--smtp-port", type=int, required=True)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    smtp = SMTPServer(("127.0.0.1", a.smtp_port), smtp_handler(a.out))
    threading.Thread(target=smtp.serve_forever, daemon=True).start()
    ThreadingHTTPServer(("127.0.0.1", a.http_port), http_handler(a.out)).serve_forever()


if __name__ == "__main__":
    main()
