"""What a machine has: GPUs (name, memory, compute capability), host RAM and cores.

`detect()` looks at this machine (NVML through nvidia-smi, which ships with the driver, so no
Python binding is needed); `profile(name)` describes another machine from registry/data/hardware.yaml
or a JSON file, so a plan can answer "would this run there?" from a laptop.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import RegistryError, not_found

DATA = Path(__file__).resolve().parent / "data" / "hardware.yaml"
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


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


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
    return Hardware("local", _nvidia_smi(), _host_memory(), _cores(), "detected")


# --- other machines ----------------------------------------------------------------------------


def _profiles() -> dict:
    import yaml

    return yaml.safe_load(DATA.read_text())["profiles"]


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
    except (KeyError, TypeError, ValueError) as e:
        raise RegistryError(
            f"hardware {source}: bad profile ({type(e).__name__}: {e}); expected "
            '{"gpus": N, "gpu": {"name": ..., "memory_gb": ..., "compute_capability": ...}, '
            '"host_memory_gb": ..., "cpu_cores": ...}'
        ) from None
    return Hardware(name, gpus, int(float(mem) * GB) if mem else _host_memory(), int(cores) if cores else _cores(), source)


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
        return _from_dict(str(d.get("name") or p.stem), d, str(p))
    raise not_found("hardware profile", name, list(profiles) + ["local"], "or give a JSON file")


def get(name: str | None) -> Hardware:
    return detect() if name is None else profile(name)
