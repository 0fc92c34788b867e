"""Bridges, veth pairs and addresses through netlink (pyroute2; never the ``ip`` program).

pyroute2 is imported on first use (it costs ~250 ms to import). Host-side calls open a
short-lived ``IPRoute`` each (~0.6 ms); links are looked up by name (RTM_GETLINK), never
by dumping every link. Work inside a container's network namespace (:func:`configure_inside`)
needs a netlink socket opened in it, and the threaded daemon must not ``setns`` a thread
it uses for anything else. Two ways, chosen by ``netns_socket``:

- ``"fork"`` (default): pyroute2 0.9's own netns support, ``IPRoute(netns=fd)``, forks a
  short-lived child that ``setns()``es, opens the socket and hands it back over
  SCM_RIGHTS. We pass our libc: without one, each child runs ``ctypes.util.find_library``
  (a subprocess, +5 ms). ~9-13 ms, and it forks the whole daemon.
- ``"thread"``: a new thread ``setns()``es, opens the socket and exits; its namespace
  dies with it and no other code runs on it (what Go's netlink libraries do). ~1.5 ms.

The container's veth end is created directly inside its namespace (``IFLA_NET_NS_FD`` on
the peer), and the host end is enslaved to the bridge and set up in the same request.
Deleting a veth costs 25-45 ms of kernel time (netdev unregister, RCU) under the rtnl
lock; on the stop path let the namespace go (the kernel deletes the pair with it) or hand
the name to a :class:`LinkReaper`, which deletes links on a background thread.
"""

from __future__ import annotations

import errno
import os
import queue
import threading
from contextlib import contextmanager
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import TYPE_CHECKING, Any

from portside.errors import (
    AlreadyExists,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "NETNS_SOCKET_METHODS",
    "LinkReaper",
    "bridge_ports",
    "configure_inside",
    "create_veth",
    "delete_link",
    "ensure_bridge",
    "host_routes",
    "link_names",
    "random_mac",
    "teardown_veth",
]

_IFNAMSIZ = 16
_AF_INET = 2
_MAIN_TABLE = 254
_CLONE_NEWNET = 0x40000000
_LOOPBACK_IFINDEX = 1  # lo is ifindex 1 in every network namespace (LOOPBACK_IFINDEX)


def _check_ifname(name: str) -> None:
    raw = name.encode() if isinstance(name, str) else b""
    bad = not raw or len(raw) >= _IFNAMSIZ or name in (".", "..")
    if bad or any(c in name for c in '/:"\\') or any(c.isspace() for c in name):
        raise InvalidArgument(f"invalid interface name {name!r}")


def _check_mtu(mtu: int) -> None:
    if isinstance(mtu, bool) or not isinstance(mtu, int) or not 68 <= mtu <= 65535:
        raise InvalidArgument(f"invalid mtu {mtu!r}: must be 68-65535")


def random_mac() -> str:
    """A random locally administered unicast MAC address, as Docker's ``02:42:…``."""
    tail = os.urandom(4)
    return "02:42:" + ":".join(f"{b:02x}" for b in tail)


@contextmanager
def _translated(what: str) -> Iterator[None]:
    """Turn pyroute2's NetlinkError into Portside's error classes, naming ``what``."""
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        yield
    except NetlinkError as exc:
        code = exc.code
        message = f"{what}: {errno.errorcode.get(code, code)} ({exc.args[-1]})"
        if code == errno.EEXIST:
            raise AlreadyExists(message) from exc
        if code in (errno.ENODEV, errno.ENOENT, errno.ESRCH):
            raise NotFound(message) from exc
        if code in (errno.EPERM, errno.EACCES):
            raise PermissionDenied(message) from exc
        if code in (errno.EINVAL, errno.ERANGE):
            raise InvalidArgument(message) from exc
        raise Internal(message) from exc
    except OSError as exc:
        raise Internal(f"{what}: {exc}") from exc


NETNS_SOCKET_METHODS = ("fork", "thread")


def _iproute(netns_fd: int | None = None, method: str = "fork") -> Any:
    """An ``IPRoute`` on the host, or inside the namespace ``netns_fd``: its socket opened
    by pyroute2's forked child (``"fork"``) or by a throwaway thread (``"thread"``)."""
    from pyroute2 import IPRoute

    if netns_fd is None:
        return IPRoute()
    if method == "thread":
        return IPRoute(fileno=_netns_socket_by_thread(netns_fd))
    from portside.linux._libc import libc

    return IPRoute(netns=netns_fd, libc=libc)


def _netns_socket_by_thread(netns_fd: int) -> int:
    """A NETLINK_ROUTE socket fd opened inside ``netns_fd`` by a new thread that
    ``setns()``es, opens it and exits: the thread's namespace dies with the thread, and
    no other code ever runs on it (the pattern of Go's netlink libraries)."""
    import socket

    from portside.linux._libc import call, libc

    box: list[int | OSError] = []

    def run() -> None:
        try:
            call(f"setns netns fd {netns_fd}", libc.setns(netns_fd, _CLONE_NEWNET))
            box.append(socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 0).detach())
        except OSError as exc:
            box.append(exc)

    thread = threading.Thread(target=run, name="portside-netns-socket")
    thread.start()
    thread.join()
    if isinstance(box[0], OSError):
        raise box[0]
    return box[0]


def _index(ipr: Any, name: str) -> int | None:
    """The ifindex of ``name``, or None: one RTM_GETLINK by name, not a dump of every
    link (which grows with the number of containers)."""
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        return int(ipr.link("get", ifname=name)[0]["index"])
    except NetlinkError as exc:
        if exc.code == errno.ENODEV:
            return None
        raise


def _kind(link: Any) -> str | None:
    info = link.get_attr("IFLA_LINKINFO")
    return info.get_attr("IFLA_INFO_KIND") if info is not None else None


def ensure_bridge(name: str, address: IPv4Interface, mtu: int = 1500) -> int:
    """Make the bridge ``name`` exist with ``address``, ``mtu``, and up; its ifindex.

    Idempotent: an existing bridge keeps its other addresses; a non-bridge link of
    that name is a :class:`FailedPrecondition`. A new bridge gets a fixed random MAC,
    so that its address does not change as ports come and go.
    """
    _check_ifname(name)
    _check_mtu(mtu)
    if not isinstance(address, IPv4Interface):
        raise InvalidArgument(f"bridge {name}: address {address!r} is not an IPv4 interface")
    from pyroute2.netlink.exceptions import NetlinkError

    with _translated(f"ensure bridge {name}"), _iproute() as ipr:
        index = _index(ipr, name)
        if index is None:
            try:
                ipr.link("add", ifname=name, kind="bridge", mtu=mtu, address=random_mac())
            except NetlinkError as exc:  # another caller made it first: fine
                if exc.code != errno.EEXIST:
                    raise
            index = _index(ipr, name)
            if index is None:
                raise NotFound(f"bridge {name} vanished while being created")
        link = ipr.get_links(index)[0]
        if _kind(link) != "bridge":
            raise FailedPrecondition(f"link {name} exists and is not a bridge ({_kind(link)})")
        if link.get_attr("IFLA_MTU") != mtu:
            ipr.link("set", index=index, mtu=mtu)
        have = {
            (a.get_attr("IFA_ADDRESS"), a["prefixlen"])
            for a in ipr.get_addr(index=index, family=_AF_INET)
        }
        if (str(address.ip), address.network.prefixlen) not in have:
            ipr.addr(
                "add",
                index=index,
                address=str(address.ip),
                prefixlen=address.network.prefixlen,
                broadcast=str(address.network.broadcast_address),
            )
        ipr.link("set", index=index, state="up")
        return index


def delete_link(name: str) -> bool:
    """Delete the link ``name`` (synchronously: 30-45 ms for a veth); False if absent."""
    _check_ifname(name)
    from pyroute2.netlink.exceptions import NetlinkError

    with _translated(f"delete link {name}"), _iproute() as ipr:
        try:
            ipr.link("del", ifname=name)
        except NetlinkError as exc:
            if exc.code == errno.ENODEV:
                return False
            raise
    return True


def teardown_veth(host_name: str) -> bool:
    """Delete a container's veth pair by its host end; False if it is gone already.

    This is the synchronous variant (25-45 ms). When the container's namespace is being
    destroyed the kernel removes the pair by itself; to delete off the stop path, use
    :meth:`LinkReaper.delete_link_nowait`.
    """
    return delete_link(host_name)


def link_names(kind: str | None = None) -> list[str]:
    """The host's link names, optionally only those of ``kind`` (bridge, veth...)."""
    with _translated("list links"), _iproute() as ipr:
        return [
            link.get_attr("IFLA_IFNAME")
            for link in ipr.get_links()
            if kind is None or _kind(link) == kind
        ]


def bridge_ports(bridge: str) -> list[str]:
    """The names of the links enslaved to ``bridge`` (reconcile: which veths are on
    it); [] when the bridge does not exist."""
    _check_ifname(bridge)
    with _translated(f"list ports of {bridge}"), _iproute() as ipr:
        index = _index(ipr, bridge)
        if index is None:
            return []
        return [link.get_attr("IFLA_IFNAME") for link in ipr.get_links(master=index)]


def host_routes() -> list[IPv4Network]:
    """The destinations of the host's IPv4 routes (main table), the default route left out:
    what a new network's subnet must not overlap (``ipam.choose_subnet``'s ``taken``)."""
    with _translated("list routes"), _iproute() as ipr:
        routes = ipr.get_routes(family=_AF_INET, table=_MAIN_TABLE)
    found = []
    for route in routes:
        prefixlen = route["dst_len"]
        dst = route.get_attr("RTA_DST")
        if prefixlen and dst is not None:
            found.append(IPv4Network((dst, prefixlen), strict=False))
    return sorted(set(found))


def _mac_bytes(mac: str) -> bytes:
    parts = mac.split(":")
    if len(parts) != 6 or not all(len(p) == 2 for p in parts):
        raise InvalidArgument(f"invalid mac address {mac!r}")
    try:
        return bytes.fromhex("".join(parts))
    except ValueError as exc:
        raise InvalidArgument(f"invalid mac address {mac!r}") from exc


@contextmanager
def _raw(what: str) -> Iterator[None]:
    """:class:`_rtnl.RtnlError` (and socket errors) as Portside's error classes,
    worded as :func:`_translated` words pyroute2's."""
    try:
        yield
    except OSError as exc:
        code = exc.errno or 0
        message = f"{what}: {errno.errorcode.get(code, code)} ({exc.strerror})"
        if code == errno.EEXIST:
            raise AlreadyExists(message) from exc
        if code in (errno.ENODEV, errno.ENOENT, errno.ESRCH):
            raise NotFound(message) from exc
        if code in (errno.EPERM, errno.EACCES):
            raise PermissionDenied(message) from exc
        if code in (errno.EINVAL, errno.ERANGE):
            raise InvalidArgument(message) from exc
        raise Internal(message) from exc


def create_veth(
    host_name: str,
    netns_fd: int,
    peer_name: str = "eth0",
    *,
    bridge: str,
    mtu: int = 1500,
    mac: str | None = None,
) -> None:
    """Create a veth pair whose peer ``peer_name`` is born inside the namespace
    ``netns_fd`` (with ``mtu`` and ``mac``), and whose host end ``host_name`` is a port
    of ``bridge`` and up, all in one netlink request (~1 ms, most of it in the kernel).
    The peer stays down: :func:`configure_inside` brings it up.
    """
    import socket

    from portside.network import _rtnl as r

    _check_ifname(host_name)
    _check_ifname(peer_name)
    _check_ifname(bridge)
    _check_mtu(mtu)
    peer = [
        r.attr(r.IFLA_IFNAME, r.string(peer_name)),
        r.attr(r.IFLA_NET_NS_FD, r.u32(netns_fd)),
        r.attr(r.IFLA_MTU, r.u32(mtu)),
    ]
    if mac is not None:
        peer.append(r.attr(r.IFLA_ADDRESS, _mac_bytes(mac)))
    try:
        master = socket.if_nametoindex(bridge)
    except OSError as exc:
        raise NotFound(f"create veth {host_name}: bridge {bridge} does not exist") from exc
    body = (
        r.ifinfomsg(0, r.IFF_UP, r.IFF_UP)
        + r.attr(r.IFLA_IFNAME, r.string(host_name))
        + r.attr(r.IFLA_MTU, r.u32(mtu))
        + r.attr(r.IFLA_MASTER, r.u32(master))
        + r.nested(
            r.IFLA_LINKINFO,
            r.attr(r.IFLA_INFO_KIND, b"veth"),
            r.nested(r.IFLA_INFO_DATA, r.attr(r.VETH_INFO_PEER, r.ifinfomsg() + b"".join(peer))),
        )
    )
    what = f"create veth {host_name} ({peer_name} in netns fd {netns_fd})"
    with _raw(what), r.Rtnl() as nl:
        nl.batch([r.Message(r.RTM_NEWLINK, body, r.NLM_F_CREATE | r.NLM_F_EXCL)])


def _netns_socket(netns_fd: int, method: str) -> int:
    """A NETLINK_ROUTE socket fd inside ``netns_fd``, opened by a throwaway thread or by
    pyroute2's forked child."""
    if method == "thread":
        return _netns_socket_by_thread(netns_fd)
    with _iproute(netns_fd, "fork") as ipr:
        return os.dup(ipr.fileno())


def configure_inside(
    netns_fd: int,
    ifname: str,
    address: IPv4Interface,
    gateway: IPv4Address | None,
    mtu: int | None = None,
    *,
    netns_socket: str = "fork",
) -> None:
    """Inside the namespace ``netns_fd``: lo up; ``address`` on ``ifname``, its ``mtu``,
    up; a default route via ``gateway`` (none when it is None, e.g. internal networks).

    ``netns_socket`` says who opens the netlink socket inside the namespace: ``"fork"``
    (pyroute2's forked child; the calling process never calls setns; ~9-13 ms) or
    ``"thread"`` (a throwaway thread that setns()es and exits; ~0.3 ms). Two batches of
    requests: lo up and the interface's index, then the address, up and the route.
    """
    from portside.network import _rtnl as r

    if netns_socket not in NETNS_SOCKET_METHODS:
        raise InvalidArgument(f"netns_socket {netns_socket!r}: expected fork or thread")
    _check_ifname(ifname)
    if mtu is not None:
        _check_mtu(mtu)
    if not isinstance(address, IPv4Interface):
        raise InvalidArgument(f"{ifname}: address {address!r} is not an IPv4 interface")
    if gateway is not None and gateway not in address.network:
        raise InvalidArgument(f"{ifname}: gateway {gateway} is not in {address.network}")
    what = f"configure {ifname} in netns fd {netns_fd}"
    with _raw(what):
        nl = r.Rtnl(_netns_socket(netns_fd, netns_socket))
    with _raw(what), nl:
        lo_up = r.Message(r.RTM_NEWLINK, r.ifinfomsg(_LOOPBACK_IFINDEX, r.IFF_UP, r.IFF_UP))
        get = r.Message(r.RTM_GETLINK, r.ifinfomsg() + r.attr(r.IFLA_IFNAME, r.string(ifname)))
        try:
            replies = nl.batch([lo_up, get])
        except r.RtnlError as exc:
            if exc.index == 1 and exc.errno == errno.ENODEV:
                raise NotFound(
                    f"configure {ifname}: no such interface in netns fd {netns_fd}"
                ) from exc
            raise
        index = r.link_index(replies[1])
        ip, net = address.ip.packed, address.network
        add = r.Message(
            r.RTM_NEWADDR,
            r.ifaddrmsg(net.prefixlen, index)
            + r.attr(r.IFA_LOCAL, ip)
            + r.attr(r.IFA_ADDRESS, ip)
            + r.attr(r.IFA_BROADCAST, net.broadcast_address.packed),
            r.NLM_F_CREATE | r.NLM_F_EXCL,
        )
        mtu_attr = r.attr(r.IFLA_MTU, r.u32(mtu)) if mtu is not None else b""
        up = r.Message(r.RTM_NEWLINK, r.ifinfomsg(index, r.IFF_UP, r.IFF_UP) + mtu_attr)
        batch = [add, up]
        if gateway is not None:
            route = r.rtmsg(0) + r.attr(r.RTA_GATEWAY, gateway.packed)
            route += r.attr(r.RTA_OIF, r.u32(index))
            batch.append(r.Message(r.RTM_NEWROUTE, route, r.NLM_F_CREATE | r.NLM_F_EXCL))
        nl.batch(batch)


class LinkReaper:
    """Deletes links on one background thread, so that a container's stop does not wait
    for the kernel's 30-45 ms of netdev unregistration.

    Structured: :meth:`close` (or leaving the ``with`` block) waits for every queued
    deletion; nothing outlives the reaper. Failures are counted, never raised.
    """

    def __init__(self) -> None:
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._lock = threading.Lock()
        self._stats = {"queued": 0, "deleted": 0, "missing": 0, "failed": 0}
        self._last_error = ""
        self._thread: threading.Thread | None = None
        self._closed = False

    def __enter__(self) -> LinkReaper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def delete_link_nowait(self, name: str) -> None:
        """Queue ``name`` for deletion and return at once (a missing link is fine)."""
        _check_ifname(name)
        with self._lock:
            if self._closed:
                raise FailedPrecondition(f"delete link {name}: the link reaper is closed")
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="portside-link-reaper", daemon=True
                )
                self._thread.start()
            self._stats["queued"] += 1
        self._queue.put(name)

    def wait_idle(self) -> None:
        """Block until every queued deletion is done."""
        self._queue.join()

    def close(self) -> None:
        """Finish the queued deletions and stop the thread."""
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is not None and thread.is_alive():
            self._queue.put(None)
            thread.join()

    def statistics(self) -> dict[str, Any]:
        """Counts of queued, deleted, missing and failed deletions, and the last error."""
        with self._lock:
            return {
                **self._stats,
                "pending": self._queue.unfinished_tasks,
                "last_error": self._last_error,
            }

    def _run(self) -> None:
        while True:
            name = self._queue.get()
            try:
                if name is None:
                    return
                outcome = "deleted" if delete_link(name) else "missing"
                with self._lock:
                    self._stats[outcome] += 1
            except Exception as exc:  # counted and kept for statistics(), never lost
                with self._lock:
                    self._stats["failed"] += 1
                    self._last_error = str(exc)
            finally:
                self._queue.task_done()
