"""Daily use as people know it from Ollama and vLLM (issue 30): local builds, tags everywhere, the chat in a
real terminal, the context that fits, ports after a stop, the Python API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_cli


def _record(path: Path, family: str, quant: str, fmt: str = "ggufv2") -> int:
    from registry.store import Store

    return Store().add_artifact(family=family, format=fmt, quantization=quant, path=str(path),
                                sha256="0" * 64, size_bytes=path.stat().st_size).id


@pytest.fixture
def sleeper():
    """A real process to stand for a running server in the deployments table."""
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    yield p
    p.kill()
    p.wait()


def _deploy(proc, family: str, quant: str, artifact_id: int | None, fmt: str = "ggufv2", argv: list | None = None) -> int:
    from registry.procs import identity
    from registry.store import Store

    return Store().add_deployment(family=family, format=fmt, quantization=quant, engine="llama.cpp",
                                  argv=argv or list(proc.args), host="127.0.0.1", port=8080, pid=proc.pid,
                                  status="running", artifact_id=artifact_id, process=identity(proc.pid)).id


# --- 1. registry ls --------------------------------------------------------------------------------


def test_ls_lists_every_local_build_across_families(registry_home, sleeper):
    r = run_cli("ls")
    assert r.returncode == 0 and "no local builds" in r.stdout, r.stderr
    registry_home.mkdir(parents=True, exist_ok=True)
    a = registry_home / "a.F16.gguf"
    a.write_bytes(b"GGUF" + b"\0" * 2000)
    b = registry_home / "b.Q4_K_M.gguf"
    b.write_bytes(b"GGUF" + b"\0" * 500)
    ida = _record(a, "glm4-chat-1m", "F16")
    idb = _record(b, "glm-4-9b-0414", "Q4_K_M")
    dep = _deploy(sleeper, "glm-4-9b-0414", "Q4_K_M", idb)
    r = run_cli("ls", "--json")
    assert r.returncode == 0, r.stderr
    rows = {x["tag"]: x for x in json.loads(r.stdout)}
    assert set(rows) == {"glm4-chat-1m:FP16", "glm-4-9b-0414:Q4_K_M"}
    assert rows["glm4-chat-1m:FP16"]["format"] == "ggufv2" and rows["glm4-chat-1m:FP16"]["size_bytes"] == 2004
    assert rows["glm4-chat-1m:FP16"]["path"] == str(a) and rows["glm4-chat-1m:FP16"]["in_use"] == []
    assert rows["glm4-chat-1m:FP16"]["id"] == ida and rows["glm4-chat-1m:FP16"]["created"]
    assert rows["glm-4-9b-0414:Q4_K_M"]["in_use"] == [dep]
    # a pipe gets one whole row per build, with the same columns
    r = run_cli("ls")
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["tag", "format", "size", "path", "created", "in", "use"], r.stdout
    row = next(x for x in lines if x.startswith("glm-4-9b-0414:Q4_K_M"))
    assert str(b) in row and f"deployment {dep}" in row and "ggufv2" in row
    assert run_cli("list", "--local", "--json").stdout == run_cli("ls", "--json").stdout
    a.unlink()
    assert "(missing)" in next(x for x in run_cli("ls").stdout.splitlines() if x.startswith("glm4-chat-1m:FP16"))


# --- 2. the chat in a real terminal --------------------------------------------------------------


class Terminal:
    """A command in a real pseudo-terminal (the stdlib pty module): keys typed as a person types them,
    Ctrl-C delivered by the terminal as SIGINT to the foreground process."""

    def __init__(self, args: list[str]):
        import pty

        from conftest import ROOT

        env = {**os.environ, "TERM": "xterm", "COLUMNS": "200", "LINES": "50"}
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: exec at once
            os.chdir(ROOT)
            os.execvpe(sys.executable, [sys.executable, "-m", "registry", *args], env)
        self.out = ""
        self.mark = 0

    def send(self, keys: str) -> None:
        os.write(self.fd, keys.encode())

    def interrupt_at_prompt(self) -> None:
        """Ctrl-C once the prompt reads keys: a key is typed and echoed first (Ctrl-C drops it with the line)."""
        import time

        self.send("x")
        self.expect("x")
        time.sleep(0.1)  # from the echo back to waiting for the next key
        self.send("\x03")

    def expect(self, text: str, timeout: float = 60.0) -> str:
        """Everything printed since the last expect, up to and including `text`."""
        import select
        import time

        deadline = time.monotonic() + timeout
        while text not in self.out[self.mark:]:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{text!r} not printed within {timeout} s; got:\n{self.out[self.mark:][-3000:]}")
            r, _, _ = select.select([self.fd], [], [], min(left, 0.5))
            if r:
                try:
                    chunk = os.read(self.fd, 65536)
                except OSError:  # the child exited and the terminal closed
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"exited before printing {text!r}; got:\n{self.out[self.mark:][-3000:]}")
                self.out += chunk.decode(errors="replace")
        end = self.out.index(text, self.mark) + len(text)
        seen, self.mark = self.out[self.mark:end], end
        return seen

    def wait(self, timeout: float = 30.0) -> int | None:
        import time

        import select

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if select.select([self.fd], [], [], 0)[0]:  # a child that prints nothing must not block us here
                    self.out += os.read(self.fd, 65536).decode(errors="replace")  # drain: it never blocks on output
            except OSError:
                pass
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
            time.sleep(0.1)
        return None

    def close(self) -> None:
        import signal

        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(self.fd)


@pytest.mark.slow
def test_chat_in_a_terminal_edits_lines_keeps_history_and_ctrl_c_stops_only_the_answer(tiny_gguf, registry_home):
    registry_home.mkdir(parents=True, exist_ok=True)
    _record(tiny_gguf("chatglm", "F16"), "glm4-chat-1m", "F16")
    t = Terminal(["run", "glm4-chat-1m:FP16", "--context", "4096", "--max-tokens", "3000", "--temperature", "1"])
    try:
        t.expect(">>> ", timeout=120)
        t.send("/shw\x1b[Do\r")  # left arrow, then the missing letter: line editing
        seen = t.expect(">>> ")
        assert "chatglm4" in seen and "llama.cpp" in seen and "4,096 tokens" in seen and "glm4-chat-1m:FP16" in seen
        t.send("\x1b[A\r")  # up arrow: the last line again
        assert "chatglm4" in t.expect(">>> ")
        t.send("/?\r")
        assert "/set temperature" in t.expect(">>> ")
        t.send("/what\r")
        assert "unknown command /what" in t.expect(">>> ")
        t.send("/set temperature 0.9\r")
        assert "temperature: 0.9" in t.expect(">>> ")
        t.send("/set system You are terse.\r")
        assert "system message: You are terse." in t.expect(">>> ")
        t.send("/clear\r")
        assert "Cleared the conversation" in t.expect(">>> ")
        t.send("/set context 2k\r")  # a server of that context: started, and the chat goes on with it
        assert "context: 2048 tokens (deployment 2)" in t.expect(">>> ", timeout=120)
        t.send("/show\r")
        assert "2,048 tokens" in t.expect(">>> ")
        t.send("/set context 4096\r")  # back to the first one: reused
        assert "context: 4096 tokens (deployment 1)" in t.expect(">>> ", timeout=60)
        dep = next(d for d in json.loads(run_cli("ps", "--json").stdout) if d["id"] == 1)
        log = Path(dep["log_path"])
        assert "POST /v1/chat/completions" not in log.read_text()  # no slash command reached the model
        # Ctrl-C while the answer streams: the answer stops, the chat goes on
        t.send("Tell me a long story\r")
        t.expect("Tell me a long story")
        t.expect("\n")
        import time

        time.sleep(0.3)  # a few tokens in
        t.send("\x03")
        t.expect("(answer stopped)", timeout=10)
        t.expect(">>> ", timeout=10)
        assert os.waitpid(t.pid, os.WNOHANG) == (0, 0)  # still running
        t.send("/set max-tokens many\r")
        assert "/set max-tokens many: give the most tokens per answer" in t.expect(">>> ")
        t.send("/set max-tokens 24\r")  # Ollama's /set parameter num_predict: the next answer is short
        assert "max tokens: 24 per answer" in t.expect(">>> ")
        t.send("/show\r")
        assert "24 per answer" in t.expect(">>> ")
        t.send('"""Two\rlines"""\r')  # a message over two lines
        t.expect(">>> ", timeout=120)
        assert log.read_text().count("POST /v1/chat/completions") == 2
        # Ctrl-C at the prompt says how to leave; a second one leaves. Each is sent once the prompt is reading
        # (a key typed there is echoed): Python's readline loses a SIGINT that comes between printing the
        # prompt and waiting for a key until the next key arrives
        t.interrupt_at_prompt()
        t.expect("Ctrl-C again ends the chat")
        t.expect(">>> ")
        t.interrupt_at_prompt()
        code = t.wait()
        assert code == 0, f"the chat still runs (or ended {code}) after a second Ctrl-C; it printed:\n{t.out[-2000:]}"
        assert "/show" in (registry_home / "chat_history").read_text()
    finally:
        t.close()
        run_cli("stop", "--all")


# --- 3. tags and names everywhere ------------------------------------------------------------------


def test_stop_and_logs_take_the_tag_in_any_case(registry_home, sleeper):
    registry_home.mkdir(parents=True, exist_ok=True)
    from registry.store import Store

    dep = _deploy(sleeper, "glm-4-9b-0414", "Q4_K_M", None)
    log = registry_home / "server.log"
    log.write_text("serving glm-4-9b-0414\n")
    Store().update_deployment(dep, log_path=str(log))
    r = run_cli("logs", "GLM-4-9B-0414:q4_k_m")
    assert r.returncode == 0 and "serving glm-4-9b-0414" in r.stdout, r.stderr
    r = run_cli("stop", "glm-4-9b-0414:Q8_0")  # another build of the family: not this deployment
    assert r.returncode == 1 and "unknown deployment" in r.stderr
    r = run_cli("stop", "glm-4-9b-0414:Q4_K_M")
    assert r.returncode == 0 and f"deployment {dep}" in r.stdout, r.stderr
    assert sleeper.wait(timeout=15) is not None


def test_names_in_any_case_hub_ids_and_quant_spellings():
    def resolve(*args: str) -> dict:
        r = run_cli("resolve", *args, "--json")
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    d = resolve("GLM4-Chat-1M:q4_k_m")
    assert (d["family"], d["quantization"]) == ("glm4-chat-1m", "Q4_K")
    d = resolve("zai-org/GLM-4.5-Air")  # a pasted hub id: its family and spec
    assert (d["family"], d["format"], d["quantization"]) == ("glm-4.5-air", "pytorch", "none")
    d = resolve("bartowski/THUDM_GLM-4-9B-0414-GGUF:q5_k_m")
    assert (d["family"], d["format"], d["uploader"]) == ("glm-4-9b-0414", "ggufv2", "bartowski")
    d = resolve("glm-4-9b-0414:4bit", "-f", "pytorch")  # 4bit = 4-bit
    assert d["quantization"] == "4-bit"
    r = run_cli("show", "zai-org/glm-4.5-air", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["name"] == "glm-4.5-air"
    # search reads quantizations in llama.cpp's spelling too
    hits = json.loads(run_cli("search", "q4_k_m", "--json").stdout)
    assert any(h["name"] == "glm4-chat-1m" and "Q4_K" in h["quantizations"] for h in hits), hits


# --- 8. ports ------------------------------------------------------------------------------------------


def test_a_port_whose_connections_wait_in_time_wait_is_free():
    import socket
    import time

    from registry import launcher

    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    port = srv.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    conn, _ = srv.accept()
    assert not launcher.port_free("127.0.0.1", port)  # listening: taken
    conn.close()  # the server closes first: its side of the connection waits in TIME_WAIT
    time.sleep(0.2)
    client.close()
    srv.close()
    time.sleep(0.2)
    assert launcher.port_free("127.0.0.1", port)
    assert launcher.choose_port("127.0.0.1", port, True, print) == port  # a fixed --port is not refused


# --- 6. a family without a quantization: what runs, else what is here, else the fit pick -------------------


def test_launch_and_run_without_a_quant_take_what_runs_then_what_is_here(tiny_gguf, registry_home, sleeper):
    def planned() -> tuple[dict, str]:
        r = run_cli("launch", "GLM4-chat-1m", "--dry-run", "--json")
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout), r.stderr

    p, said = planned()  # nothing here: the fit pick, said before anything is fetched
    auto = json.loads(run_cli("fit", "glm4-chat-1m", "--quant", "auto", "--json").stdout)["auto"]
    assert p["quantization"] == auto["quantization"] and "best build that fits here" in said
    registry_home.mkdir(parents=True, exist_ok=True)
    gguf = tiny_gguf("chatglm", "F16")
    _record(gguf, "glm4-chat-1m", "F16")
    p, said = planned()
    assert p["quantization"] == "FP16" and p["artifact"]["path"] == str(gguf) and f"local build at {gguf}" in said
    dep = _deploy(sleeper, "glm4-chat-1m", "Q8_0", None)
    p, said = planned()
    assert p["quantization"] == "Q8_0" and f"running as deployment {dep}" in said
    from registry.store import Store

    Store().update_deployment(dep, status="stopped")
    # run follows the same rule: the local build, started, asked once, stopped
    r = run_cli("run", "glm4-chat-1m", "Hi", "--context", "256", "--max-tokens", "4", "--stop")
    assert r.returncode == 0 and "glm4-chat-1m:FP16 (ggufv2): the local build at" in r.stderr, r.stderr
    assert r.stdout.strip()


# --- 4. convert only into a format the family has a spec for; --force rebuilds --------------------------


def test_convert_refuses_a_format_the_family_has_no_spec_for(tiny_checkpoint, tmp_path, registry_home):
    out = tmp_path / "out"
    r = run_cli("convert", "glm-4-9b-0414", "--from", str(tiny_checkpoint("glm4")), "--to", "compressed-tensors",
                "--quant", "FP8_DYNAMIC", "--out", str(out), "--dry-run")
    assert r.returncode == 1 and "glm-4-9b-0414 has no compressed-tensors spec" in r.stderr, r.stderr
    assert "has: pytorch, ggufv2, mlx" in r.stderr and "registry init" in r.stderr
    r = run_cli("convert", "GLM-4.6", "--from", str(tiny_checkpoint("glm4moe")), "--to", "gguf", "--quant", "Q8_0",
                "--out", str(out / "x.gguf"))
    assert r.returncode == 1 and "glm-4.6 has no ggufv2 spec" in r.stderr, r.stderr
    assert not out.exists() and not (registry_home / "registry.db").exists()


def test_convert_force_rebuilds_an_existing_output(tiny_checkpoint, tmp_path):
    (tmp_path / "builds").mkdir()
    out = tmp_path / "builds" / "m.F16.gguf"
    args = ("convert", "glm4-chat-1m", "--from", str(tiny_checkpoint("chatglm")), "--to", "ggufv2", "--quant", "F16",
            "--out", str(out))
    assert run_cli(*args).returncode == 0
    first = out.stat().st_ino
    r = run_cli(*args)
    assert r.returncode == 1 and "already exists" in r.stderr and "--force" in r.stderr
    r = run_cli(*args, "--force", "--json")
    assert r.returncode == 0, r.stderr
    assert out.stat().st_ino != first  # a new file, put in place by rename
    rows = [a for a in json.loads(run_cli("ls", "--json").stdout) if a["path"] == str(out)]
    assert len(rows) == 1 and rows[0]["sha256"] == json.loads(r.stdout)[0]["sha256"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["m.F16.gguf"]  # no temporaries left


# --- 5. pull: the uploader that has the build, said; errors suggest commands that parse ---------------------


def test_pull_takes_the_uploader_that_publishes_the_build(hub_server, tiny_gguf):
    import re
    import shlex

    data = tiny_gguf("glm4", "F16").read_bytes()
    r = run_cli("pull", "glm-4-9b-0414:Q5_K_M", "--offline")
    assert r.returncode == 1 and "not published on a hub" not in r.stderr, r.stderr
    assert "glm-4-9b-0414:Q5_K_M from bartowski (bartowski/THUDM_GLM-4-9B-0414-GGUF)" in r.stderr
    suggested = re.search(r"`(registry pull [^`]+)`", r.stderr).group(1)
    again = run_cli(*shlex.split(suggested)[1:], "--offline")  # the command the error names parses, and means this build
    assert again.returncode == 1 and suggested in again.stderr, again.stderr
    hub_server.add("bartowski/THUDM_GLM-4-9B-0414-GGUF", {"THUDM_GLM-4-9B-0414-Q5_K_M.gguf": data})
    r = run_cli("pull", "glm-4-9b-0414:q5_k_m")
    assert r.returncode == 0, r.stderr
    assert "from bartowski" in r.stderr and "--from local" in r.stderr
    assert Path(r.stdout.split(" (")[0]).read_bytes() == data
    # the build made here is still the one `--from local` names, and its error gives a command that parses
    r = run_cli("pull", "glm-4-9b-0414:Q5_K_M", "--from", "local")
    cmd = re.search(r"`(registry convert [^`]+)`", r.stderr).group(1)
    assert r.returncode == 1 and cmd.startswith("registry convert glm-4-9b-0414 --from ./GLM-4-9B-0414 --to ggufv2")
    bad = run_cli(*shlex.split(cmd)[1:])
    assert bad.returncode == 1 and "--from GLM-4-9B-0414: not a directory" in bad.stderr, bad.stderr  # parsed; no folder


# --- 9. the Python API: what the CLI reads, by tag or by (family, format, quant) ------------------------------


@pytest.mark.slow
def test_python_api_by_tag(tiny_gguf, registry_home):
    import registry
    from registry.errors import RegistryError

    r = registry.resolve("glm4-chat-1m:Q4_K")
    assert (r.spec.format, r.quantization, r.canonical) == ("ggufv2", "Q4_K", "Q4_K_M")
    assert registry.resolve("GLM4-chat-1m", quant="q4_k_m").to_dict() == r.to_dict()
    assert registry.resolve("glm4-chat-1m", "ggufv2", "Q4_K").to_dict() == r.to_dict()  # the old call still works
    f = registry.fit("glm4-chat-1m:Q4_K", hardware="1xH100-80G", context="32k")
    assert [(b["quantization"], b["context"], b["fits"]) for b in f["builds"]] == [("Q4_K", 32768, True)]
    p = registry.plan("glm4-chat-1m:Q4_K", hardware="1xH100-80G", context=8192)
    assert p.engine == "llama.cpp" and "8192" in p.to_dict()["argv"]
    assert any(h["name"] == "glm4-chat-1m" and h["quantizations"] == ["Q4_K"]
               for h in registry.search_builds("glm4-chat-1m q4_k_m"))
    with pytest.raises(RegistryError, match="offline"):
        registry.pull("glm4-chat-1m:Q4_K", offline=True)
    assert registry.artifacts() == [] and registry.ps() == []
    registry_home.mkdir(parents=True, exist_ok=True)
    gguf = tiny_gguf("chatglm", "F16")
    _record(gguf, "glm4-chat-1m", "F16")
    (a,) = registry.artifacts()
    assert (a["tag"], a["path"], a["in_use"]) == ("glm4-chat-1m:FP16", str(gguf), [])
    try:
        dep = registry.launch("glm4-chat-1m:FP16", context=256, timeout=120)
        assert dep["status"] == "running" and not dep["reused"]
        assert registry.launch("glm4-chat-1m:fp16", context=256)["id"] == dep["id"]  # reused
        assert [d["id"] for d in registry.ps()] == [dep["id"]]
        assert registry.artifacts("glm4-chat-1m")[0]["in_use"] == [dep["id"]]
        assert registry.stop("glm4-chat-1m:FP16") == [
            {"id": dep["id"], "family": "glm4-chat-1m", "quantization": "FP16", "result": "stopped"}]
        assert registry.ps() == []
    finally:
        run_cli("stop", "--all")


# --- 7. the context that fits -----------------------------------------------------------------------------


def _json(*args: str):
    r = run_cli(*args, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_context_as_people_write_it():
    for text, tokens in (("32k", 32768), ("128K", 131072), ("1M", 1048576), ("8192", 8192)):
        (b,) = _json("fit", "glm4-chat-1m:Q4_K", "--hardware", "1xH100-80G", "--context", text)["builds"]
        assert b["context"] == tokens, text
    p = _json("launch", "glm4-chat-1m:Q4_K", "--hardware", "1xH100-80G", "--context", "32k", "--dry-run")
    assert p["argv"][p["argv"].index("--n_ctx") + 1] == "32768"
    r = run_cli("fit", "glm4-chat-1m", "--context", "32q")
    assert r.returncode == 1 and "--context '32q'" in r.stderr and "32k" in r.stderr and "max" in r.stderr


def test_fit_rows_carry_the_longest_context_with_and_without_host_memory():
    (b,) = _json("fit", "glm4-chat-1m:Q4_K", "--hardware", "1xH100-80G")["builds"]
    top, gpu = b["max_context"], b["max_context_gpu"]
    assert top == 1048576 and 4096 < gpu < top  # 1M fits with layers in host memory; the GPU alone holds less

    def plan(ctx: int) -> dict:
        return _json("launch", "glm4-chat-1m:Q4_K", "--hardware", "1xH100-80G", "--context", str(ctx), "--dry-run")

    assert plan(gpu)["estimate"]["host_bytes"] == 0 and plan(gpu + 256)["estimate"]["host_bytes"] > 0
    # --context max plans each build at its longest; the table shows it, and how much the GPUs hold alone
    rows = {x["quantization"]: x for x in _json("fit", "glm4-chat-1m", "--hardware", "1xH100-80G", "--context",
                                                "max")["builds"]}
    assert rows["Q4_K"]["context"] == top and rows["none"]["engine"] == "vllm"
    table = run_cli("fit", "glm4-chat-1m", "--hardware", "1xH100-80G", "--context", "max").stdout
    line = next(x for x in table.splitlines() if x.split()[:2] == ["ggufv2", "Q4_K"])
    assert f"{top:,}" in line and f"{gpu:,}" in line and "on GPUs only" in table
    # on a CPU box the longest context is what host memory holds: the plan says the same
    (c,) = _json("fit", "glm4-chat-1m:Q4_K", "--hardware", "cpu-64GB", "--context", "max")["builds"]
    p = _json("launch", "glm4-chat-1m:Q4_K", "--hardware", "cpu-64GB", "--context", "max", "--dry-run")
    assert p["argv"][p["argv"].index("--n_ctx") + 1] == str(c["context"]) == str(c["max_context"])
    assert c["max_context_gpu"] is None and p["estimate"]["total_bytes"] <= 64 * 2**30


def test_vllm_plans_cap_the_context_instead_of_refusing():
    p = _json("launch", "glm4-chat-1m:none", "--engine", "vLLM", "--hardware", "1xH100-80G", "--dry-run")
    n = int(p["argv"][p["argv"].index("--max-model-len") + 1])
    assert 8192 < n < 1048576 and p["estimate"]["per_gpu_bytes"] <= 0.9 * 80e9
    assert any(f"context capped at {n:,} tokens" in x and "1,048,576 tokens would need" in x for x in p["notes"])
    (b,) = _json("fit", "glm4-chat-1m:none", "--hardware", "1xH100-80G")["builds"]
    assert (b["engine"], b["context"], b["max_context"], b["fits"]) == ("vllm", n, n, True)  # fit agrees
    r = run_cli("launch", "glm4-chat-1m:none", "--engine", "vllm", "--hardware", "1xH100-80G", "--dry-run",
                "--context", str(n + 4096))  # a context given in tokens that does not fit stays an error
    assert r.returncode == 1 and "not enough GPU memory" in r.stderr and f"fits here is {n:,} tokens" in r.stderr


@pytest.mark.slow
def test_llamacpp_compute_buffer_estimate_follows_the_context_as_llamacpp_measures_it(tiny_gguf):
    """llama.cpp's own log of its compute buffer at a few contexts (the server's settings: flash attention off,
    n_ubatch 512) against the estimate fit and the plans use."""
    import re

    from registry.estimate import gguf_info, llamacpp_estimate

    gguf = tiny_gguf("chatglm", "F16")
    for n_ctx in (512, 4096, 16384):
        code = ("import llama_cpp, sys\n"
                f"llama_cpp.Llama({str(gguf)!r}, n_ctx={n_ctx}, n_batch=512, flash_attn=False, verbose=True)\n")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        mib = float(re.findall(r"CPU compute buffer size\s*=\s*([\d.]+) MiB", r.stderr)[-1])
        est = llamacpp_estimate(gguf_info(gguf), n_ctx)
        compute = float(re.search(r"compute buffer ~([\d.]+) MiB", est.notes[0]).group(1))
        assert abs(compute - mib) <= max(1.5, 0.05 * mib), (n_ctx, compute, mib)


def test_quant_auto_prefers_a_build_the_gpus_hold_alone():
    d = _json("fit", "glm4-chat-1m", "--quant", "auto", "--hardware", "1xRTX-4090", "--context", "64k")
    rows = {b["quantization"]: b for b in d["builds"]}
    assert rows["BF16"]["fits"] and rows["BF16"]["host_bytes"] > 0  # fits, with layers left in host memory
    assert d["auto"]["quantization"] == "Q8_0" and rows["Q8_0"]["host_bytes"] == 0


# --- 9. extra engine arguments: `registry launch TAG -- ARGS` ------------------------------------------------


def _post(url: str, body: dict) -> tuple[int, dict]:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, {}


@pytest.mark.slow
def test_launch_and_run_pass_extra_engine_arguments_to_llamacpp(tiny_gguf, registry_home):
    """`-- --embedding true` reaches llama-cpp-python's server: /v1/embeddings answers, which the same build
    started without it refuses; the row and `ps` keep the extra arguments."""
    registry_home.mkdir(parents=True, exist_ok=True)
    _record(tiny_gguf("chatglm", "F16"), "glm4-chat-1m", "F16")
    ask = {"model": "glm4-chat-1m", "input": "Hello"}
    try:
        r = run_cli("launch", "glm4-chat-1m:FP16", "--context", "256", "--json", "--", "--embedding", "true")
        assert r.returncode == 0, r.stderr
        dep = json.loads(r.stdout)
        assert dep["extra_args"] == ["--embedding", "true"] and dep["argv"][-2:] == ["--embedding", "true"]
        code, out = _post(f"{dep['address']}/embeddings", ask)
        assert code == 200 and out["data"][0]["embedding"], out
        (row,) = json.loads(run_cli("ps", "--json").stdout)
        assert row["id"] == dep["id"] and row["extra_args"] == ["--embedding", "true"]
        # the same build without them is another server (not the one above, reused), which cannot embed
        r = run_cli("launch", "glm4-chat-1m:FP16", "--context", "256", "--json", "--port", str(dep["port"] + 1))
        assert r.returncode == 0, r.stderr
        plain = json.loads(r.stdout)
        assert plain["id"] != dep["id"] and plain["extra_args"] == []
        assert _post(f"{plain['address']}/embeddings", ask)[0] != 200
        assert run_cli("stop", "--all").returncode == 0
        # `registry run` passes them the same way
        r = run_cli("run", "glm4-chat-1m:FP16", "Hi", "--context", "256", "--max-tokens", "2", "--stop", "--",
                    "--seed", "7")
        assert r.returncode == 0, r.stderr
        last = json.loads(run_cli("ps", "--all", "--json").stdout)[-1]
        assert last["extra_args"] == ["--seed", "7"] and last["argv"][-2:] == ["--seed", "7"]
    finally:
        run_cli("stop", "--all")


def test_extra_engine_arguments_the_registry_sets_or_the_engine_does_not_know_are_refused(tiny_gguf, registry_home):
    registry_home.mkdir(parents=True, exist_ok=True)
    _record(tiny_gguf("chatglm", "F16"), "glm4-chat-1m", "F16")
    for extra, says in ((["--port", "9000"], "--port"), (["--n_ctx=512"], "--context"),
                        (["--api_key", "s3cret"], "--api-key"), (["--host", "0.0.0.0"], "--host"),
                        (["--model", "/x.gguf"], "NAME argument"), (["--n_threads", "2"], "--threads")):
        for cmd in (["launch", "glm4-chat-1m:FP16"], ["run", "glm4-chat-1m:FP16", "Hi"]):
            r = run_cli(*cmd, "--context", "256", "--", *extra)
            name = extra[0].partition("=")[0]
            assert r.returncode == 1 and r.stderr.count("\n") == 1, (cmd, extra, r.stderr)
            assert f"extra argument {name}: the registry sets it" in r.stderr and says in r.stderr, r.stderr
            assert "s3cret" not in r.stderr
    r = run_cli("launch", "glm4-chat-1m:FP16", "--", "--no-such-option", "1")
    assert r.returncode == 1 and "extra argument --no-such-option: llama.cpp has no such option" in r.stderr
    r = run_cli("launch", "glm4-chat-1m:FP16", "--", "--help")  # the engine's own help is not printed in its place
    assert r.returncode == 1 and r.stderr.startswith("error: extra argument --help") and not r.stdout
    r = run_cli("launch", "glm4-chat-1m:FP16", "--", "--n_batch", "many")  # a value its parser refuses
    assert r.returncode == 1 and "llama.cpp refuses them" in r.stderr and "'many'" in r.stderr, r.stderr
    r = run_cli("launch", "glm4-chat-1m:FP16", "--", "--interrupt_requests", "true")  # in the planned command
    assert r.returncode == 1 and "--interrupt_requests: the planned command already sets it" in r.stderr
    assert json.loads(run_cli("ps", "--all", "--json").stdout) == []  # nothing was started
    # the dry run shows them in the command and the plan
    p = json.loads(run_cli("launch", "glm4-chat-1m:FP16", "--dry-run", "--json", "--", "--seed", "7",
                           "--n_batch=64").stdout)
    assert p["argv"][-3:] == ["--seed", "7", "--n_batch=64"] and p["extra_args"] == ["--seed", "7", "--n_batch=64"]
    text = run_cli("launch", "glm4-chat-1m:FP16", "--dry-run", "--", "--seed", "7").stdout
    assert "--interrupt_requests False --n_threads" in text and text.split("\n")[1].endswith(" --seed 7"), text
