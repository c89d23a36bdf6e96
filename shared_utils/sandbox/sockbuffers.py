"""The kernel memory held in Unix socket buffers, for the memory budget where no cgroup counts it.

Without a cgroup the supervisor sums the resident size of the candidate's processes, and
data queued in a socket is no page of theirs: fifteen processes filling socket pairs held
390 MiB under a 256 MiB budget.  The kernel reports each socket's buffers (``sock_diag``,
what ``ss -xm`` shows) for the network namespace of the asking process, which is the
worker's, shared only by the supervisor, the zygote and the candidates.  Unix sockets are
the only ones that can hold data there: the namespace has no interface up, so IPv4 and IPv6
sockets reach nothing, and every other family is refused (``seccomp``).
"""

from __future__ import annotations

import _socket
import struct

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST_DUMP = 0x301
NLMSG_ERROR, NLMSG_DONE = 2, 3
UDIAG_SHOW_MEMINFO = 0x20
UNIX_DIAG_MEMINFO = 5
_HEADER = struct.Struct("=IHHII")  # struct nlmsghdr
_REQUEST_BODY = struct.Struct("=BBHIIIII")  # struct unix_diag_req
_DIAG_MSG = 16  # struct unix_diag_msg, before its attributes
_ATTRIBUTE = struct.Struct("=HH")  # struct rtattr
_REQUEST = (_HEADER.pack(_HEADER.size + _REQUEST_BODY.size, SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST_DUMP, 1, 0)
            + _REQUEST_BODY.pack(_socket.AF_UNIX, 0, 0, 0xFFFFFFFF, 0, UDIAG_SHOW_MEMINFO, 0, 0))


class SocketBuffers:
    """Bytes queued in every Unix socket of this network namespace (received and unsent alike)."""

    def __init__(self):
        self.sock = _socket.socket(_socket.AF_NETLINK, _socket.SOCK_DGRAM | _socket.SOCK_CLOEXEC, NETLINK_SOCK_DIAG)

    @classmethod
    def open(cls) -> "SocketBuffers | None":
        """A counter, or None where this kernel does not report Unix sockets."""
        try:
            counter = cls()
            counter.total()
            return counter
        except OSError:
            return None

    def total(self) -> int:
        self.sock.send(_REQUEST)
        total = 0
        while True:
            data = self.sock.recv(1 << 16)
            offset = 0
            while offset + _HEADER.size <= len(data):
                length, kind = _HEADER.unpack_from(data, offset)[:2]
                if kind == NLMSG_DONE:
                    return total
                if kind == NLMSG_ERROR or length < _HEADER.size:
                    raise OSError("sock_diag refused the dump of Unix sockets")
                total += _queued(data, offset + _HEADER.size + _DIAG_MSG, offset + length)
                offset += (length + 3) & ~3


def _queued(data: bytes, at: int, end: int) -> int:
    """One socket's received plus unsent bytes, from its meminfo attribute."""
    while at + _ATTRIBUTE.size <= end:
        length, kind = _ATTRIBUTE.unpack_from(data, at)
        if kind == UNIX_DIAG_MEMINFO:
            received, _, unsent = struct.unpack_from("=III", data, at + _ATTRIBUTE.size)
            return received + unsent
        if length < _ATTRIBUTE.size:
            break
        at += (length + 3) & ~3
    return 0
