"""`registry verify`: re-hash local copies against the store's rows and the cache's content addresses."""

from __future__ import annotations

from pathlib import Path

from ..errors import NotFoundError
from . import _label, _pull_cmd, hfcache, local
from .errors import IntegrityError
from .integrity import (content_address, git_blob_sha1, quarantine, sha256_file, sha256_files, split_parts, tree_files,
                        tree_sha256)


def _targets(resolved) -> list[tuple[Path, object | None]]:
    found = local.rows(resolved)
    if found:
        return [(Path(r.path), r) for r in found]
    # Nothing recorded: check what the Hugging Face cache holds for this build.
    out: list[tuple[Path, object | None]] = []
    src = resolved.hubs.get("huggingface")
    if src is not None:
        if src.files:
            out += [(p, None) for f in src.files if (p := hfcache.cached_file(src.model_id, src.revision, f))]
        elif (snap := hfcache.snapshot_dir(src.model_id, src.revision)) is not None:
            out.append((snap, None))
    return out


def _check_file(path: Path, row) -> dict:
    res = {"path": str(path), "ok": True, "sha256": None, "problems": []}
    if not path.is_file():
        res.update(ok=False, missing=True,
                   problems=["missing" + (" (its cache blob was moved aside or deleted)" if path.is_symlink() else "")])
        return res
    parts = split_parts(path)
    if row is not None and len(parts) > 1 and row.size_bytes != path.stat().st_size:
        # a local split build is recorded as one artifact: the digest of all its parts in order
        if not all(q.is_file() for q in parts):
            res.update(ok=False, missing=True,
                       problems=[f"missing part(s): {', '.join(q.name for q in parts if not q.is_file())}"])
            return res
        actual = sha256_files(parts)
    else:
        actual = sha256_file(path)
    res["sha256"] = actual
    if row is not None and row.sha256 != actual:
        res["problems"].append(f"sha256 is {actual} but the store recorded {row.sha256}")
    addr = content_address(path)
    if addr is not None:
        kind, want = addr
        got = actual if kind == "sha256" else git_blob_sha1(path)
        if got != want:
            res["problems"].append(f"{kind} is {got} but the hub's checksum (its cache blob name) is {want}")
    res["ok"] = not res["problems"]
    res["corrupt"] = not res["ok"]
    return res


def _check_dir(path: Path, row) -> list[dict]:
    files = tree_files(path)
    dangling = [p for p in path.rglob("*") if p.is_symlink() and not p.exists()]
    results = [_check_file(p, None) for p in files if content_address(p) is not None]
    results += [{"path": str(p), "ok": False, "sha256": None, "missing": True,
                 "problems": ["missing (its cache blob was moved aside or deleted)"]} for p in dangling]
    if not results and row is not None:  # a folder outside the cache: its manifest digest
        digest, _ = tree_sha256(path)
        ok = digest == row.sha256
        results.append({"path": str(path), "ok": ok, "sha256": digest,
                        "problems": [] if ok else [f"folder digest is {digest} but the store recorded {row.sha256}"
                                                   " (a file in it changed; compare with a fresh copy)"]})
    return results


def verify_build(resolved, raise_on_error: bool = True) -> list[dict]:
    targets = _targets(resolved)
    label = _label(resolved)
    if not targets:
        local.only_elsewhere(resolved, f"registry verify {resolved.family.name} --format {resolved.spec.format} "
                                       f"--quant {resolved.quantization}")
        raise NotFoundError(f"no local copy of {label} to verify; run `{_pull_cmd(resolved)}` first")
    results: list[dict] = []
    bad_rows, missing_rows, good_rows = set(), set(), set()
    for path, row in targets:
        checked = _check_dir(path, row) if path.is_dir() else [_check_file(path, row)]
        for r in checked:
            missing = r.pop("missing", False)
            if r.pop("corrupt", False):
                r["moved_to"] = str(quarantine(Path(r["path"])))  # never deleted: moved beside itself
            if not r["ok"] and row is not None:
                (missing_rows if missing else bad_rows).add(row.id)
                r["row_kept"] = missing
        if row is not None and all(r["ok"] for r in checked) and getattr(row, "missing_since", None):
            good_rows.add(row.id)
        results += checked
    if bad_rows or missing_rows or good_rows:
        from ..store import Store

        store = Store()
        for rid in bad_rows:  # the file there is not the one recorded (it was moved aside)
            store.remove_artifact(rid)
        # A file that is only absent (an unmounted disk, a blob being re-fetched) keeps its row, recipe and
        # provenance; the row is marked missing, and cleared once the file checks out again.
        for rid in missing_rows - bad_rows:
            store.mark_artifact_missing(rid)
        for rid in good_rows:
            store.mark_artifact_missing(rid, missing=False)

    bad = [r for r in results if not r["ok"]]
    if bad and raise_on_error:
        parts = []
        for r in bad:
            where = f"; moved to {r['moved_to']}" if r.get("moved_to") else ""
            kept = "; its row is kept, marked missing" if r.get("row_kept") and not where else ""
            parts.append(f"{r['path']}: {'; '.join(r['problems'])}{where}{kept}")
        raise IntegrityError(
            f"{label}: {len(bad)} bad file{'s' if len(bad) != 1 else ''}: " + " | ".join(parts)
            + _redo(resolved, targets, bad)
        )
    return results


def _redo(resolved, targets, bad: list[dict]) -> str:
    """How to get a good copy back: a build converted here (its row has a recipe) is rebuilt with the
    command that made it; a pulled one is fetched again."""
    bad_paths = [Path(r["path"]) for r in bad]
    for path, row in targets:
        hit = any(b == path or path in b.parents for b in bad_paths)
        if hit and row is not None and isinstance(row.recipe, dict) and row.recipe:
            src = row.recipe.get("source") or row.parent
            return (f"; it was converted here: rebuild it with `registry convert {row.family} --from {src} "
                    f"--to {row.format} --quant {row.quantization}`")
    return f"; run `{_pull_cmd(resolved)}` to fetch it again"
