#!/usr/bin/env python3
# tls_proxy.py - a TLS-terminating reverse proxy with HTTP basic auth, in front of the real OpenSearch node (test_persist.c).
#
#   tls_proxy.py PORT UPSTREAM CERT KEY USER PASSWORD
#
# Listens on 127.0.0.1:PORT with TLS (CERT/KEY, PEM), requires
# "Authorization: Basic base64(USER:PASSWORD)" on every request (else 401
# with WWW-Authenticate, as OpenSearch's security plugin answers), and
# forwards each authorised request - method, path, headers, body - to
# UPSTREAM (http://127.0.0.1:N, the real node), relaying its status, headers
# and body. It adds TLS and auth beside the node; every answer but a 401 is
# the node's own. Prints "ready" on stdout once listening; stops on SIGTERM.
# Python 3 standard library only.
import base64
import hmac
import http.client
import http.server
import signal
import socketserver
import ssl
import sys
import urllib.parse

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
              "trailer", "trailers", "transfer-encoding", "upgrade", "content-length", "host"}


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def finish_request(self, request, client_address):
        # The TLS handshake runs here, on the connection's own thread, so a
        # client that refuses our certificate (or never speaks) cannot block
        # the accepting loop.
        try:
            tls = self.tls.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError) as e:
            sys.stderr.write("tls_proxy: handshake with %s failed: %s\n" % (client_address[0], e))
            return
        try:
            self.RequestHandlerClass(tls, client_address, self)
        finally:
            try:
                tls.close()
            except OSError:
                pass


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as libcurl expects

    def log_message(self, fmt, *args):
        sys.stderr.write("tls_proxy: %s\n" % (fmt % args))

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def reply(self, status, headers, body, head=False, length=None):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        if not head and body:
            self.wfile.write(body)

    def handle_any(self):
        srv = self.server
        body = self.read_body()
        head = self.command == "HEAD"
        got = self.headers.get("Authorization", "").encode("utf-8", "replace")
        if not hmac.compare_digest(got, srv.expected_auth):
            srv.unauthorized += 1
            self.reply(401, [("WWW-Authenticate", 'Basic realm="dlq-test"'),
                             ("Content-Type", "text/plain; charset=UTF-8")],
                       b"Unauthorized", head)
            return
        fwd = [(k, v) for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP]
        try:
            conn = http.client.HTTPConnection(srv.up_host, srv.up_port, timeout=120)
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", "%s:%d" % (srv.up_host, srv.up_port))
            for k, v in fwd:
                conn.putheader(k, v)
            if body or self.command in ("POST", "PUT"):
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body if body else None)
            resp = conn.getresponse()
            data = resp.read()
            hdrs = [(k, v) for k, v in resp.getheaders() if k.lower() not in HOP_BY_HOP]
            length = resp.getheader("Content-Length") if head else None
            conn.close()
        except (OSError, http.client.HTTPException) as e:
            self.reply(502, [("Content-Type", "text/plain")], ("upstream: %s" % e).encode(), head)
            return
        self.reply(resp.status, hdrs, data, head, length)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any


def main():
    if len(sys.argv) != 7:
        sys.stderr.write("usage: tls_proxy.py PORT UPSTREAM CERT KEY USER PASSWORD\n")
        return 2
    port, upstream, cert, key, user, password = sys.argv[1:]
    up = urllib.parse.urlsplit(upstream)
    if up.scheme != "http" or up.hostname != "127.0.0.1":
        sys.stderr.write("tls_proxy: UPSTREAM must be http://127.0.0.1:PORT\n")
        return 2
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    srv = Server(("127.0.0.1", int(port)), Handler)
    srv.tls = tls
    srv.up_host, srv.up_port = up.hostname, up.port or 80
    srv.expected_auth = b"Basic " + base64.b64encode(("%s:%s" % (user, password)).encode())
    srv.unauthorized = 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("ready", flush=True)
    try:
        srv.serve_forever()
    finally:
        srv.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
