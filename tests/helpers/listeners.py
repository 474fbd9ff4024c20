"""TCP listeners for tests: accept, read until the peer is done, close; on every
ADDRESS:PORT given. Prints "ready".

    python listeners.py 192.168.77.1:80 203.0.113.10:443 ...
"""

import socket
import sys
import threading


def drain(conn: socket.socket) -> None:
    conn.settimeout(10)
    try:
        while conn.recv(1 << 16):
            pass
    except OSError:
        pass
    conn.close()


def serve(sock: socket.socket) -> None:
    while True:
        try:
            conn, _ = sock.accept()
        except OSError:
            return
        threading.Thread(target=drain, args=(conn,), daemon=True).start()


for spec in sys.argv[1:]:
    host, _, port = spec.rpartition(":")
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host.strip("[]"), int(port)))
    s.listen(64)
    threading.Thread(target=serve, args=(s,), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
