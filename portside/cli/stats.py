"""One row of ``portside stats`` from the Docker stats JSON (docker's arithmetic)."""

from __future__ import annotations

from portside.cli.formatting import _Row, bytes_size, human_size

__all__ = ["StatsRow"]


class StatsRow(_Row):
    HEADERS = {
        "Container": "CONTAINER",
        "ID": "CONTAINER ID",
        "Name": "NAME",
        "CPUPerc": "CPU %",
        "MemUsage": "MEM USAGE / LIMIT",
        "MemPerc": "MEM %",
        "NetIO": "NET I/O",
        "BlockIO": "BLOCK I/O",
        "PIDs": "PIDS",
    }
    FIELDS = (
        "BlockIO",
        "CPUPerc",
        "Container",
        "ID",
        "MemPerc",
        "MemUsage",
        "Name",
        "NetIO",
        "PIDs",
    )

    def __init__(self, ref: str, data: dict, *, trunc: bool = True) -> None:
        self.ref = ref
        self.data = data
        self.trunc = trunc

    def Container(self) -> str:
        return self.ref

    def ID(self) -> str:
        ident = self.data.get("id", self.ref)
        return ident[:12] if self.trunc else ident

    def Name(self) -> str:
        name = self.data.get("name", "") or ""
        return name[1:] if name.startswith("/") else name or "--"

    def cpu_percent(self) -> float:
        cpu = self.data.get("cpu_stats") or {}
        pre = self.data.get("precpu_stats") or {}
        total = (cpu.get("cpu_usage") or {}).get("total_usage", 0)
        pre_total = (pre.get("cpu_usage") or {}).get("total_usage", 0)
        cpu_delta = total - pre_total
        system_delta = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
        online = (
            cpu.get("online_cpus")
            or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or [])
            or 1
        )
        if system_delta > 0 and cpu_delta > 0:
            return cpu_delta / system_delta * online * 100.0
        return 0.0

    def CPUPerc(self) -> str:
        return f"{self.cpu_percent():.2f}%"

    def memory(self) -> tuple[float, float]:
        mem = self.data.get("memory_stats") or {}
        usage = mem.get("usage", 0) or 0
        extra = mem.get("stats") or {}
        inactive = extra.get("total_inactive_file")
        if inactive is not None and inactive < usage:
            usage -= inactive
        elif (extra.get("inactive_file") or 0) < usage:
            usage -= extra.get("inactive_file") or 0
        return float(usage), float(mem.get("limit", 0) or 0)

    def MemUsage(self) -> str:
        usage, limit = self.memory()
        return f"{bytes_size(usage)} / {bytes_size(limit)}"

    def MemPerc(self) -> str:
        usage, limit = self.memory()
        return f"{(usage / limit * 100.0) if limit else 0.0:.2f}%"

    def NetIO(self) -> str:
        rx = tx = 0
        for net in (self.data.get("networks") or {}).values():
            rx += net.get("rx_bytes", 0)
            tx += net.get("tx_bytes", 0)
        return f"{human_size(rx)} / {human_size(tx)}"

    def BlockIO(self) -> str:
        read = write = 0
        blkio = self.data.get("blkio_stats") or {}
        for entry in blkio.get("io_service_bytes_recursive") or []:
            op = (entry.get("op") or "").lower()
            if op == "read":
                read += entry.get("value", 0)
            elif op == "write":
                write += entry.get("value", 0)
        return f"{human_size(read)} / {human_size(write)}"

    def PIDs(self) -> str:
        return str((self.data.get("pids_stats") or {}).get("current", 0))
