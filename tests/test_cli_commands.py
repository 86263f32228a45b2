"""Commands people expect (issue 16, point 2): rm, run (a streamed chat against real llama.cpp), --version,
shell completion, logs -f."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, run_cli


def _record(path: Path, quant: str = "F16") -> int:
    from registry.store import Store

    return Store().add_artifact(family="glm4-chat-1m", format="ggufv2", quantization=quant, path=str(path),
                                sha256="0" * 64, size_bytes=path.stat().st_size).id


def _artifacts() -> list:
    return json.loads(run_cli("show", "glm4-chat-1m", "--artifacts", "--json").stdout)["artifacts"]


def test_version():
    import registry

    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"registry (glm-registry) {registry.__version__}"


def _complete(shell: str, words: str) -> str:
    """What the completion script gets back from `registry` for the words typed so far."""
    env = {**os.environ, "_REGISTRY_COMPLETE": f"complete_{shell}"}
    if shell == "bash":
        env.update(COMP_WORDS=words, COMP_CWORD=str(len(words.split()) - (0 if words.endswith(" ") else 1)))
    else:
        env["_TYPER_COMPLETE_ARGS"] = words
    code = "import sys; sys.argv[0] = 'registry'; from registry.cli import main; main()"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=60).stdout


def test_shell_completion_scripts_and_answers():
    for shell in ("bash", "zsh", "fish"):
        r = run_cli("completion", shell)
        assert r.returncode == 0 and f"_REGISTRY_COMPLETE=complete_{shell}" in r.stdout, (shell, r.stdout)
    r = run_cli("completion", "tcsh")
    assert r.returncode == 1 and "choose one of: bash, zsh, fish" in r.stderr
    assert "logs" in _complete("bash", "registry lo").split()
    tags = _complete("bash", "registry run glm4-chat-1m:Q4").split()
    assert "glm4-chat-1m:Q4_K" in tags and "glm4-chat-1m:Q4_K_S" in tags and "glm4-chat-1m:Q8_0" not in tags
    assert "glm-4.5-air" in _complete("zsh", "registry launch glm-4.5")


def test_rm_a_local_build_asks_then_removes_file_and_row(tiny_gguf, registry_home):
    build = registry_home / "mine.F16.gguf"
    registry_home.mkdir(parents=True, exist_ok=True)
    shutil.copy(tiny_gguf("chatglm", "F16"), build)
    _record(build)
    r = run_cli("rm", "glm4-chat-1m:FP16", input="n\n")
    assert r.returncode == 1 and "remove glm4-chat-1m ggufv2 FP16" in r.stderr and "nothing removed" in r.stderr
    assert build.is_file() and len(_artifacts()) == 1
    r = run_cli("rm", "glm4-chat-1m:f16", input="")  # no answer (a script without --yes): nothing removed
    assert r.returncode == 1 and "--yes removes without asking" in r.stderr and build.is_file()
    r = run_cli("rm", "glm4-chat-1m:fp16", input="y\n")
    assert r.returncode == 0 and "removed glm4-chat-1m ggufv2 FP16: 1 copy" in r.stdout, r.stderr
    assert not build.exists() and _artifacts() == []
    r = run_cli("rm", "glm4-chat-1m:FP16", "--yes")
    assert r.returncode == 1 and "no local copy of glm4-chat-1m ggufv2 FP16" in r.stderr
    # by artifact id, --json; a row whose file is gone goes too
    shutil.copy(tiny_gguf("chatglm", "F16"), build)
    gguf_size = build.stat().st_size
    art = _record(build)
    gone = registry_home / "gone.F16.gguf"
    shutil.copy(build, gone)
    stale = _record(gone)
    gone.unlink()
    r = run_cli("rm", str(art), "--yes", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["removed"][0]["artifact_ids"] == [art] and d["removed"][0]["path"] == str(build)
    assert d["size_bytes"] == gguf_size
    assert not build.exists() and [a["id"] for a in _artifacts()] == [stale]
    assert run_cli("rm", "glm4-chat-1m:FP16", "-y").returncode == 0 and _artifacts() == []


def test_rm_a_cached_download_takes_the_link_and_its_blob(tmp_path, registry_home):
    # the Hugging Face cache's layout, as huggingface_hub writes it: refs/main -> commit, a snapshot symlink
    # to blobs/<sha256>; another snapshot sharing a blob keeps it
    cache = tmp_path / "hf"
    repo = cache / "models--legraphista--glm-4-9b-chat-1m-GGUF"
    commit, old = "a" * 40, "b" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "blobs").mkdir()
    blob, shared = repo / "blobs" / ("1" * 64), repo / "blobs" / ("2" * 64)
    blob.write_bytes(b"GGUF" + b"\0" * 1000)
    shared.write_bytes(b"GGUF" + b"\0" * 10)
    for c, target in ((commit, blob), (old, shared)):
        (repo / "snapshots" / c).mkdir(parents=True)
    (repo / "snapshots" / commit / "glm-4-9b-chat-1m.Q4_K.gguf").symlink_to(f"../../blobs/{blob.name}")
    (repo / "snapshots" / commit / "glm-4-9b-chat-1m.Q8_0.gguf").symlink_to(f"../../blobs/{shared.name}")
    (repo / "snapshots" / old / "glm-4-9b-chat-1m.Q8_0.gguf").symlink_to(f"../../blobs/{shared.name}")
    env = {"HF_HUB_CACHE": str(cache)}
    r = run_cli("rm", "glm4-chat-1m:Q4_K", "--yes", "--json", env=env)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)["removed"]
    assert [x["kind"] for x in d] == ["cached download"] and d[0]["size_bytes"] == 1004
    assert not (repo / "snapshots" / commit / "glm-4-9b-chat-1m.Q4_K.gguf").is_symlink() and not blob.exists()
    r = run_cli("rm", "glm4-chat-1m", "-q", "Q8_0", "--yes", env=env)
    assert r.returncode == 0, r.stderr
    assert shared.exists() and (repo / "snapshots" / old / "glm-4-9b-chat-1m.Q8_0.gguf").is_file()


@pytest.mark.slow
def test_run_chats_streaming_with_real_llamacpp_and_reuses_the_server(tiny_gguf, registry_home):
    gguf = tiny_gguf("chatglm", "F16")
    _record(gguf, "FP16")
    follow = None
    try:
        r = run_cli("run", "glm4-chat-1m:f16", "--context", "256", "--max-tokens", "6", "--temperature", "0",
                    input="Hello\n/clear\nWho are you?\n/bye\nnot read\n")
        assert r.returncode == 0, r.stderr
        answers = r.stdout.splitlines()
        assert len(answers) == 2 and all(answers), r.stdout  # two questions, two streamed answers
        assert "keeps running (deployment 1)" in r.stderr
        dep = json.loads(run_cli("ps", "--json").stdout)[0]
        assert dep["status"] == "running" and dep["quantization"] == "FP16"
        # the chat went through llama.cpp's streaming endpoint, one request per question
        log = Path(dep["log_path"]).read_text()
        assert log.count("POST /v1/chat/completions") == 2, log[-2000:]
        # a build a deployment serves is not removed
        r = run_cli("rm", "glm4-chat-1m:FP16", "--yes")
        assert r.returncode == 1 and "deployment 1" in r.stderr and "registry stop 1" in r.stderr and gguf.exists()
        # `logs -f` follows the server's log until it exits
        follow = subprocess.Popen([sys.executable, "-m", "registry", "logs", "glm4-chat-1m", "-f", "-n", "1"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        time.sleep(2)
        # a second run reuses the running server: a one-shot question, and --stop leaves what it did not start
        r = run_cli("run", "glm4-chat-1m:FP16", "Hi there", "--context", "256", "--max-tokens", "4", "--stop")
        assert r.returncode == 0 and "runs (deployment 1); chatting with it" in r.stderr and r.stdout.strip()
        assert json.loads(run_cli("ps", "--json").stdout)[0]["id"] == 1
        time.sleep(1)
        assert follow.poll() is None  # still following
        assert run_cli("stop", "1").returncode == 0
        out, err = follow.communicate(timeout=30)
        assert follow.returncode == 0 and "no longer running" in err
        assert out.count("POST /v1/chat/completions") >= 1 and "Shutting down" in out, out[-2000:]
    finally:
        run_cli("stop", "--all")
        if follow is not None and follow.poll() is None:
            follow.kill()
