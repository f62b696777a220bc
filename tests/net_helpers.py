"""A TCP port the test can block and unblock: a stand-in for a firewall in front of a broker port."""

from __future__ import annotations

import socket
import threading


class PortGate:
    """Listens on 127.0.0.1:``port`` (a free one when 0). While :attr:`blocked`, every connection is
    accepted and closed at once (the peer sees a reset or EOF, as behind a firewall that drops or
    rejects the port); otherwise it is forwarded byte for byte to 127.0.0.1:``target``.
    :meth:`close` stops it and cuts forwarded connections."""

    def __init__(self, target: int, blocked: bool = True, port: int = 0) -> None:
        self.target = target
        self.blocked = blocked
        self._srv = socket.create_server(("127.0.0.1", port))
        self.port = self._srv.getsockname()[1]
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, name="port-gate", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._srv.accept()
            except OSError:
                return
            if self.blocked:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                conn.close()  # linger 0: a reset, like a REJECT rule
                continue
            try:
                up = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            except OSError:
                conn.close()
                continue
            with self._lock:
                self._open += [conn, up]
            for a, b in ((conn, up), (up, conn)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def block(self) -> None:
        """Block new connections and cut the forwarded ones (a firewall rule that just went up)."""
        self.blocked = True
        with self._lock:
            for s in self._open:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            self._open.clear()

    def close(self) -> None:
        """Stop listening and cut every forwarded connection."""
        self._srv.close()
        with self._lock:
            for s in self._open:
                s.close()
        self._thread.join(5)
