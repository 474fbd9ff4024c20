"""A TLS server for the lab: any SNI, one self-signed certificate, an HTTP answer naming it.

argv: tls_server.py CERT ADDRESS:PORT... Answers each request line with
`HTTP/1.0 200 OK` and a body `tls ADDRESS:PORT sni=NAME`. Prints "ready" once bound.
"""

from __future__ import annotations

import socket
import ssl
import sys
import threading


def serve(ctx: ssl.SSLContext, lsock: socket.socket, where: str, seen: dict[int, str]) -> None:
    while True:
        conn, _ = lsock.accept()
        threading.Thread(target=answer, args=(ctx, conn, where, seen), daemon=True).start()


def answer(ctx: ssl.SSLContext, conn: socket.socket, where: str, seen: dict[int, str]) -> None:
    try:
        with ctx.wrap_socket(conn, server_side=True) as tls:
            tls.settimeout(10)
            tls.recv(4096)
            body = f"tls {where} sni={seen.pop(id(tls), '-')}\n".encode()
            tls.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    except (OSError, ssl.SSLError):
        conn.close()


def main() -> int:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[1])
    seen: dict[int, str] = {}

    def sni(sslsock: ssl.SSLSocket, name: str | None, _ctx: ssl.SSLContext) -> None:
        seen[id(sslsock)] = name or "-"

    ctx.sni_callback = sni  # type: ignore[assignment]
    for where in sys.argv[2:]:
        host, _, port = where.rpartition(":")
        lsock = socket.create_server((host, int(port)))
        threading.Thread(target=serve, args=(ctx, lsock, where, seen), daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
