"""The REST API under /api: the catalog, builds and deployments, in the CLI's `--json` shapes.

Each route calls the same functions as its CLI command, so that a script can move between
`registry X --json` and `GET /api/X` without reshaping anything. Nothing here takes a filesystem
path from the client: hardware is a profile or a hardware string (never a JSON file), logs are
read only from the registry's own logs folder.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Optional

from fastapi import APIRouter, HTTPException
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from .. import launcher, paths
from ..errors import NotFoundError, RegistryError
from ..views import artifact_view, deployment_view, family_row, family_view

api = APIRouter(prefix="/api")


def _catalog():
    from ..catalog import load

    return load()


def _fail(e: RegistryError) -> HTTPException:
    return HTTPException(404 if isinstance(e, NotFoundError) else 400, str(e))


def _hardware(name: Optional[str]) -> Optional[str]:
    # `registry fit --hardware FILE` reads a JSON file; over HTTP that would read any file the server can.
    if name and ("/" in name or "\\" in name or name.endswith(".json")):
        raise HTTPException(400, f"hardware {name!r}: give a profile or hardware string (GET /api/hardware lists "
                                 "profiles); files are read only by the CLI")
    return name


@api.get("/families", summary="registry list --json")
def list_families(format: Optional[str] = None, quant: Optional[str] = None, engine: Optional[str] = None,
                  ability: Optional[str] = None, min_context: Optional[int] = None) -> list[dict]:
    cat = _catalog()
    try:
        fams = cat.families(format=format, quant=quant, engine=engine, ability=ability, min_context=min_context)
    except RegistryError as e:
        raise _fail(e) from None
    return [{**family_row(f), "origin": cat.entry(f.name).origin} for f in fams]


@api.get("/families/{name}", summary="registry show NAME --json")
def show_family(name: str, artifacts: bool = False) -> dict:
    cat = _catalog()
    try:
        entry = cat.entry(name)
    except RegistryError as e:
        raise _fail(e) from None
    view = family_view(entry.family, entry.origin)
    if artifacts:
        view["artifacts"] = _rows(lambda: _artifacts(entry.family.name))
    return view


def _rows(read):
    """A store read; a damaged row answers 400 naming it (errors.damaged_row) instead of a 500."""
    try:
        return read()
    except RegistryError as e:
        raise _fail(e) from None


@api.get("/search", summary="registry search WORDS --json: builds by family, uploader, format, quantization")
def search(q: str) -> list[dict]:
    return [h.to_dict() for h in _catalog().search_builds(q)]


@api.get("/resolve", summary="registry resolve NAME --format F --quant Q --json")
def resolve(name: str, format: str, quant: str, size: Optional[float] = None, uploader: Optional[str] = None) -> dict:
    try:
        return _catalog().resolve(name, format, quant, size=size, uploader=uploader).to_dict()
    except RegistryError as e:
        raise _fail(e) from None


@api.get("/fit", summary="registry fit NAME --json")
def fit(name: str, hardware: Optional[str] = None, context: Optional[int] = None, quant: Optional[str] = None,
        format: Optional[str] = None) -> dict:
    try:
        return launcher.fit(name, hardware=_hardware(hardware), context=context, quant=quant, format=format)
    except RegistryError as e:
        raise _fail(e) from None


@api.get("/hardware", summary="registry hardware --json")
def hardware(profile: Optional[str] = None) -> dict:
    from .. import hardware as hw

    try:
        d = hw.get(_hardware(profile)).to_dict()
    except RegistryError as e:
        raise _fail(e) from None
    d["profiles"] = hw.profile_names()
    return d


def _artifacts(family: Optional[str] = None, node: Optional[str] = None) -> list[dict]:
    if not paths.has_database():
        return []
    from ..catalog import load
    from ..store import Store

    cat = load()  # the catalog's spelling of each row's quantization, where its family is known
    names = set(cat.names())
    return [{"family": a.family, **artifact_view(a, cat.get(a.family) if a.family in names else None)}
            for a in Store().artifacts(family=family, node=node)]


@api.get("/artifacts", summary="recorded builds of every node, or one node's (registry show NAME --artifacts --json)")
def artifacts(family: Optional[str] = None, node: Optional[str] = None) -> list[dict]:
    return _rows(lambda: _artifacts(family, node))


@api.get("/builds", summary="registry ls --json: every local build across families, with the deployments using it")
def builds() -> list[dict]:
    from ..builds import local_builds

    return _rows(local_builds)


@api.get("/deployments", summary="registry ps --json: every node's, or one node's")
def deployments(all: bool = False, node: Optional[str] = None) -> list[dict]:
    return _rows(lambda: [deployment_view(d) for d in launcher.ps(all_=all, node=node)])


@api.get("/nodes", summary="registry nodes --json: the machines sharing the store")
def nodes() -> list[dict]:
    if not paths.has_database():
        return []
    from .. import nodes as nodes_mod
    from ..store import Store

    return [nodes_mod.view(n) for n in Store().nodes()]


class LaunchBody(BaseModel):
    name: str = Field(description="Family name, e.g. glm4-chat-1m")
    format: str
    quant: str
    size: Optional[float] = None
    engine: Optional[str] = None
    context: Optional[int] = None
    port: Optional[int] = None
    profile: Optional[str] = None
    timeout: float = 300.0


@api.post("/deployments", summary="registry launch ... --json", status_code=201)
async def launch(body: LaunchBody) -> dict:
    def run():
        p = launcher.plan(body.name, body.format, body.quant, engine=body.engine, context=body.context,
                          port=body.port, profile=body.profile, size=body.size)
        return launcher.launch(p, timeout=body.timeout, spinner=False)

    try:
        dep = await asyncio.to_thread(run)
    except RegistryError as e:
        raise _fail(e) from None
    return deployment_view(dep)


def _deployment(dep_id: int):
    try:
        return next(d for d in launcher.find(str(dep_id), active_only=False) if d.id == dep_id)
    except (RegistryError, StopIteration):
        raise HTTPException(404, f"no deployment {dep_id} (GET /api/deployments?all=true lists them)") from None


@api.delete("/deployments/{dep_id}", summary="registry stop ID")
async def stop(dep_id: int) -> dict:
    dep = _deployment(dep_id)
    if dep.engine == "registry":
        raise HTTPException(400, "this is the server answering you: stop it with `registry stop registry-serve`")
    try:
        what = await asyncio.to_thread(launcher.stop, dep)
    except RegistryError as e:  # another node's deployment: stopped on that node
        raise _fail(e) from None
    return {"id": dep.id, "family": dep.family, "result": what}


@api.get("/deployments/{dep_id}/logs", summary="registry logs ID", response_class=PlainTextResponse)
def logs(dep_id: int, lines: Optional[int] = 200) -> str:
    dep = _deployment(dep_id)
    if not paths.owns(dep.node):
        raise HTTPException(400, f"deployment {dep_id} runs on node {dep.node}: its log is on that machine "
                                 f"(GET /api/deployments/{dep_id}/logs from that node's serve)")
    home = paths.logs_dir().resolve()
    log = Path(dep.log_path or "").resolve()
    if not log.is_relative_to(home):  # a row written by hand (or another home) cannot make us read elsewhere
        raise HTTPException(403, f"deployment {dep_id}'s log is outside the registry's logs folder")
    try:
        return launcher.log_text(dep, lines)
    except RegistryError as e:
        raise HTTPException(404, str(e)) from None
