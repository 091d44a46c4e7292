"""A TCP proxy on 127.0.0.1 that can cut the line: a real bucket outage for a real client
(ReliableCutProxy: one whose cut never leaves a request hanging). And FaultyStore, a store
wrapper with an outage switch and slow reads, for in-process tests."""

from __future__ import annotations

import socket
import threading
import time

from islandsync.errors import StoreError
from islandsync.store.base import Blob, BlobInfo, BlobStore


class TcpProxy:
    """Forwards 127.0.0.1:<port> to ``target``. ``cut()`` drops every open connection and
    refuses new ones (as an unreachable bucket would); ``restore()`` heals it."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._up = threading.Event()
        self._up.set()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self._up.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data or not self._up.is_set():
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:  # shutdown first: a bare close can leave the peer's read hanging
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                try:
                    s.close()
                except OSError:
                    pass

    def cut(self) -> None:
        self._up.clear()
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass

    def restore(self) -> None:
        self._up.set()

    def close(self) -> None:
        self._closed = True
        self.cut()
        self.listener.close()



# The base TcpProxy now shuts both sockets down on the way out (a bare close() could leave a
# request in flight hanging until its read timeout); the name stays for the chaos tests.
ReliableCutProxy = TcpProxy


class FaultyStore(BlobStore):
    """A BlobStore wrapper for in-process fault tests: while ``down`` is set every operation
    raises StoreError (the bucket unreachable from this process only); ``slow_reads`` maps keys
    to the seconds a ``get`` of them takes (as a GCSStore read retrying through a blip does,
    for up to its retry deadline)."""

    def __init__(self, inner: BlobStore, *, slow_reads: dict[str, float] | None = None) -> None:
        self.inner, self.url = inner, inner.url
        self.down = False
        self.slow_reads = dict(slow_reads or {})

    def _check(self, op: str, key: str) -> None:
        if self.down:
            raise StoreError(f"{self.url}: {op} {key!r} failed: the bucket is unreachable")

    def get(self, key: str, *, start: int | None = None, end: int | None = None) -> Blob:
        self._check("read", key)
        if self.slow_reads.get(key):
            time.sleep(self.slow_reads[key])
        return self.inner.get(key, start=start, end=end)

    def put(self, key: str, data: bytes, *, if_generation: int | None = None) -> int:
        self._check("write", key)
        return self.inner.put(key, data, if_generation=if_generation)

    def stat(self, key: str) -> BlobInfo | None:
        self._check("stat", key)
        return self.inner.stat(key)

    def list(self, prefix: str = "") -> list[BlobInfo]:
        self._check("list", prefix)
        return self.inner.list(prefix)

    def delete(self, key: str, *, if_generation: int | None = None) -> None:
        self._check("delete", key)
        self.inner.delete(key, if_generation=if_generation)
