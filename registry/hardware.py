"""What a machine has: GPUs (name, memory, compute capability), host RAM and cores.

`detect()` looks at this machine (NVML through nvidia-smi, which ships with the driver, so no
Python binding is needed); `profile(name)` describes another machine from registry/data/hardware.yaml
or a JSON file, so a plan can answer "would this run there?" from a laptop.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import RegistryError, not_found

GB = 10**9


@dataclass(frozen=True)
class GPU:
    name: str
    memory_bytes: int
    compute_capability: float | None = None
    bandwidth_bytes_s: float | None = None  # one GPU's memory bandwidth, for the decode-speed bound
    index: int = 0


@dataclass(frozen=True)
class Hardware:
    name: str  # "local" or the profile name
    gpus: list[GPU] = field(default_factory=list)
    host_memory_bytes: int = 0
    cpu_cores: int = 0
    source: str = "detected"  # "detected", "profile" or a JSON file path
    apple_silicon: bool = False  # an M-series Mac: host memory is the unified memory the GPU shares
    chip: str | None = None  # e.g. "Apple M3 Ultra"
    memory_bandwidth_bytes_s: float | None = None  # unified memory bandwidth (Apple silicon)
    physical_cores: int = 0  # cores without their SMT siblings (0: unknown, take cpu_cores)

    @property
    def threads(self) -> int:
        """Compute threads for a CPU engine: one per physical core (a sibling thread only contends)."""
        return self.physical_cores or self.cpu_cores

    @property
    def local(self) -> bool:
        return self.source == "detected"

    @property
    def gpu_count(self) -> int:
        return len(self.gpus)

    @property
    def min_compute_capability(self) -> float | None:
        caps = [g.compute_capability for g in self.gpus if g.compute_capability is not None]
        return min(caps) if caps else None

    @property
    def gpu_memory_bytes(self) -> int:
        """The smallest GPU's memory: a sharded model must fit the smallest one."""
        return min((g.memory_bytes for g in self.gpus), default=0)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["local"] = self.local
        d["gpu_count"] = self.gpu_count
        return d


# --- this machine ------------------------------------------------------------------------------


def _host_memory() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def usable_cpus() -> int:
    """The CPUs this process may run on (a container's or taskset's share), not every CPU of the machine:
    threads beyond them only wait for each other."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def physical_cores(cpuinfo: str | None = None, allowed: set[int] | None = None) -> int:
    """Distinct (package, core) pairs among the CPUs this process may run on; 0 when unknown."""
    return len(core_cpus(cpuinfo, allowed))


def core_cpus(cpuinfo: str | None = None, allowed: set[int] | None = None) -> list[int]:
    """One logical CPU per physical core (the first of its SMT siblings) among the CPUs this process may
    run on, in order; [] when unknown. vLLM's CPU build binds its threads to such a list."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return []
    if allowed is None:
        try:
            allowed = os.sched_getaffinity(0)
        except AttributeError:
            allowed = None
    cores: dict[tuple[str, str], int] = {}
    cpu, package = None, "0"
    for line in cpuinfo.splitlines() + [""]:
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "processor":
            cpu, package = int(value), "0"
        elif key == "physical id":
            package = value
        elif key == "core id" and cpu is not None and (allowed is None or cpu in allowed):
            cores.setdefault((package, value), cpu)
    return sorted(cores.values())


def _smi_query(exe: str, fields: str) -> tuple[int, str]:
    try:
        out = subprocess.run([exe, f"--query-gpu={fields}", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return -1, ""
    return out.returncode, out.stdout


def _nvidia_smi() -> list[GPU]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    code, text = _smi_query(exe, "index,name,memory.total,compute_cap")
    if code != 0 and "compute_cap" in text:
        # Drivers before 510 know no compute_cap field: 'Field "compute_cap" is not a valid field to
        # query.' (exit 2). The GPUs are still there; their compute capability is unknown.
        code, text = _smi_query(exe, "index,name,memory.total")
    if code != 0:
        return []
    gpus = []
    for line in text.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 3:
            continue
        try:
            cap = float(parts[3]) if len(parts) > 3 else None
        except ValueError:  # "[N/A]"
            cap = None
        try:
            mib = float(parts[2])  # memory.total in MiB (nounits)
        except ValueError:
            continue
        gpus.append(GPU(name=parts[1], memory_bytes=int(mib * 2**20), compute_capability=cap, index=int(parts[0])))
    return gpus


def detect() -> Hardware:
    import platform

    apple = platform.system() == "Darwin" and platform.machine() == "arm64"
    return Hardware("local", _nvidia_smi(), _host_memory(), usable_cpus(), "detected", apple_silicon=apple,
                    chip=(platform.processor() or "Apple silicon") if apple else None, physical_cores=physical_cores())


# --- other machines ----------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _data(name: str) -> dict:
    """A shipped data file, parsed once per process (PyYAML's pure-Python parser took ~0.2 s a file, on
    every hardware string a plan resolved). Read-only: callers copy what they change."""
    from .compiled import parsed_yaml
    from .paths import resource

    return parsed_yaml(name, resource("data", name).read_text(encoding="utf-8"))


def _profiles() -> dict:
    return _data("hardware.yaml")["profiles"]


def profile_names() -> list[str]:
    return list(_profiles())


def _from_dict(name: str, d: dict, source: str) -> Hardware:
    try:
        n = int(d.get("gpus") or 0)
        gpus = []
        if n:
            g = d["gpu"]
            for i in range(n):
                bw = g.get("bandwidth_tbs")
                gpus.append(GPU(name=str(g["name"]), memory_bytes=int(float(g["memory_gb"]) * GB),
                                compute_capability=float(g["compute_capability"]) if g.get("compute_capability") else None,
                                bandwidth_bytes_s=float(bw) * 1e12 if bw else None, index=i))
        mem = d.get("host_memory_gb")
        cores = d.get("cpu_cores")
        apple = d.get("apple")  # {chip, unified_memory_gb, bandwidth_gbs}: an M-series Mac
        bw = None
        if apple is not None:
            mem = apple["unified_memory_gb"]
            bw = float(apple["bandwidth_gbs"]) * 1e9 if apple.get("bandwidth_gbs") else None
    except (KeyError, TypeError, ValueError) as e:
        raise RegistryError(
            f"hardware {source}: bad profile ({type(e).__name__}: {e}); expected "
            '{"gpus": N, "gpu": {"name": ..., "memory_gb": ..., "compute_capability": ...}, '
            '"host_memory_gb": ..., "cpu_cores": ...}'
        ) from None
    hw = Hardware(name, gpus, int(float(mem) * GB) if mem else _host_memory(), int(cores) if cores else usable_cpus(), source)
    if apple is not None:
        hw = Hardware(hw.name, [], hw.host_memory_bytes, hw.cpu_cores, source, apple_silicon=True,
                      chip=str(apple.get("chip") or "Apple silicon"), memory_bandwidth_bytes_s=bw)
    return hw




def _key(s: str) -> str:
    s = s.lower().replace(" ", "").replace("-", "").replace("_", "")
    for prefix in ("nvidia", "geforce"):
        s = s.removeprefix(prefix)
    return s


def _gpu_table() -> tuple[dict, dict]:
    data = _data("gpus.yaml")
    table = {}
    for key, g in data["gpus"].items():
        for k in [key, *g.get("aliases", [])]:
            table[_key(str(k))] = g
    return table, data["host_rule"]


def gpu_names() -> list[str]:
    return list(_data("gpus.yaml")["gpus"])


def from_string(text: str) -> Hardware | None:
    """NxGPU[-MEMG] (8xH200, 1xRTX-4090, 2xL40S, 4xA100-40G), a GPU memory size (24GB, 2x80GB),
    cpu-64GB (a CPU machine with that RAM). None when the text is none of these."""
    import re

    t = text.strip()
    m = re.fullmatch(r"(?i)cpu[-:_ ]?(\d+(?:\.\d+)?)\s*gi?b?", t)
    if m:
        return Hardware(t, [], int(float(m.group(1)) * GB), usable_cpus(), "string")
    m = re.fullmatch(r"(?i)(?:(\d+)\s*[x*×]\s*)?(.+?)", t)
    count, rest = int(m.group(1) or 1), m.group(2)
    if count < 1 or count > 1024:
        raise RegistryError(f"hardware {text!r}: {count} GPUs? give 1 to 1024")
    mem = None
    # a memory suffix: "-80G" after a name, or the whole text ("24GB")
    mm = re.fullmatch(r"(?i)(?:(.+?)[-_ ])?(\d+(?:\.\d+)?)\s*gi?b?", rest)
    if mm:
        rest, mem = mm.group(1) or "", float(mm.group(2))
    table, rule = _gpu_table()
    if rest == "":
        if mem is None:
            return None
        g = {"name": f"GPU ({mem:g} GB)", "memory_gb": mem, "bandwidth_tbs": None, "cc": None}
    else:
        g = table.get(_key(rest) + (f"{mem:g}g" if mem else "")) or table.get(_key(rest))
        if g is None:
            return None
        if mem is not None and abs(float(g["memory_gb"]) - mem) > 0.5:
            g = {**g, "name": f"{g['name']} ({mem:g} GB)", "memory_gb": mem}
    gpus = [GPU(str(g["name"]), int(float(g["memory_gb"]) * GB), float(g["cc"]) if g.get("cc") else None,
                float(g["bandwidth_tbs"]) * 1e12 if g.get("bandwidth_tbs") else None, i) for i in range(count)]
    host = max(rule["min_memory_gb"] * GB, int(rule["memory_per_gpu_memory"] * count * float(g["memory_gb"]) * GB))
    cores = max(rule["min_cores"], rule["cores_per_gpu"] * count)
    return Hardware(t, gpus, host, cores, "string")


def _from_view(d: dict, source: str) -> Hardware:
    """`registry hardware --json` read back: gpus is a list of GPU objects."""
    try:
        gpus = [GPU(str(g["name"]), int(g["memory_bytes"]), g.get("compute_capability"), g.get("bandwidth_bytes_s"),
                    int(g.get("index", i))) for i, g in enumerate(d["gpus"])]
        return Hardware(str(d.get("name") or "file"), gpus, int(d.get("host_memory_bytes") or 0) or _host_memory(),
                        int(d.get("cpu_cores") or 0) or usable_cpus(), source, bool(d.get("apple_silicon")), d.get("chip"),
                        d.get("memory_bandwidth_bytes_s"), int(d.get("physical_cores") or 0))
    except (KeyError, TypeError, ValueError) as e:
        raise RegistryError(f"hardware {source}: bad GPU entry ({type(e).__name__}: {e}); expected what "
                            "`registry hardware --json` prints") from None


def profile(name: str) -> Hardware:
    """A named profile (8xB200, 4xH100-80G, 2xH200, cpu, ...) or a JSON file with the same keys."""
    if name == "local":
        return detect()
    profiles = _profiles()
    if name in profiles:
        return _from_dict(name, profiles[name], "profile")
    p = Path(name).expanduser()
    if p.suffix == ".json" or p.exists():
        try:
            d = json.loads(p.read_text())
        except FileNotFoundError:
            raise RegistryError(f"hardware file {p} not found") from None
        except (OSError, json.JSONDecodeError) as e:
            raise RegistryError(f"hardware file {p}: not readable JSON: {e}") from None
        if not isinstance(d, dict):
            raise RegistryError(f"hardware file {p}: expected a JSON object")
        if isinstance(d.get("gpus"), list):
            return _from_view(d, str(p))
        return _from_dict(str(d.get("name") or p.stem), d, str(p))
    hw = from_string(name)
    if hw is not None:
        return hw
    raise not_found("hardware", name, list(profiles) + ["local"],
                    "or NxGPU (8xH200, 1xRTX-4090, 2xL40S, 4xA100-40G), a GPU memory size (24GB), cpu-64GB, or a "
                    f"JSON file; GPUs known: {', '.join(gpu_names())}")


def get(name: str | None) -> Hardware:
    return detect() if name is None else profile(name)
