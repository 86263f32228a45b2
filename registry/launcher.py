"""The launcher's names in one place, kept for a release: the code lives in registry/launching/ (plan, fit,
ports, start, spawns, deployments). New code imports from there.

Callers that look a name up here at call time (registry serve's router: `launcher.ps`) see a replacement
of it made here, as before."""

from __future__ import annotations

from .builds import pick_build
from .errors import RegistryError
from .launching.deployments import (SEEN_EVERY, address, elsewhere, find, log_text, ps, running_build,
                                    running_same, served_model, stop)
from .launching.fit import USABLE_TOK_S, build_fit, fit, host_bandwidth
from .launching.plan import (DEFAULT_HOST, NoEngine, Plan, _artifact, check_context, hub_artifact, main_command,
                             model_arg, plan, plan_build, request)
from .addresses import check_host
from .launching.ports import choose_port, port_free, release_ports
from .launching.spawns import _alive, _kill_group, stop_orphan_spawns
from .launching.start import LaunchError, check_timeout, launch, run_recorded

__all__ = [
    "DEFAULT_HOST", "SEEN_EVERY", "USABLE_TOK_S", "LaunchError", "NoEngine", "Plan", "RegistryError", "address",
    "build_fit", "check_context", "check_host", "check_timeout", "choose_port", "elsewhere", "find", "fit",
    "host_bandwidth", "hub_artifact", "launch", "log_text", "main_command", "model_arg", "pick_build", "plan",
    "plan_build", "port_free", "ps", "release_ports", "request", "run_recorded", "running_build", "running_same",
    "served_model", "stop", "stop_orphan_spawns", "_alive", "_artifact", "_kill_group",
]
