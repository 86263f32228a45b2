"""Output for pipes and terminals (issue 16, point 4): plain aligned columns with whole names when stdout
is not a terminal; at a terminal (FORCE_COLOR makes rich treat the pipe as one) no highlighting inside
names, fits yes/no and errors in colour; the fit table says the need is per GPU and at which context."""

from __future__ import annotations

import re

from conftest import run_cli

BOX = set("┏┃┡━│└┘┌┐╇╋┳┻─")
TERM = {"FORCE_COLOR": "1", "COLUMNS": "220"}


def test_a_piped_table_is_plain_columns_with_whole_names():
    r = run_cli("list")  # stdout is a pipe here, as in `registry list | grep glm-4.5-air`
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert not BOX & set(r.stdout) and "\x1b[" not in r.stdout
    header = lines[0]
    assert header.split() == ["name", "params", "context", "formats", "engines", "abilities", "licence"]
    air = [ln for ln in lines if ln.startswith("glm-4.5-air ")]
    assert len(air) == 1, lines  # the whole name, on one line: grep finds it
    # aligned: each column starts where its header does
    assert air[0].index("131,072") == header.index("context")
    assert air[0][header.index("licence"):].strip() == "mit"
    # a cell of several lines (one hub repository per line at a terminal) stays on its row
    rows = run_cli("search", "legraphista").stdout.splitlines()
    hit = [ln for ln in rows if ln.startswith("glm4-chat-1m ")]
    assert len(hit) == 1 and "legraphista/glm-4-9b-chat-1m-GGUF" in hit[0]


def test_fit_says_the_need_is_per_gpu_and_at_which_context():
    out = run_cli("fit", "glm-4.6", "--hardware", "4xH100-80G", "--context", "32768").stdout
    header = out.splitlines()[1]
    assert "need per GPU at 32,768 tokens" in header and "KV at 32,768 tokens" in header, out
    awq = next(ln for ln in out.splitlines() if ln.startswith("compressed-tensors "))
    assert awq.split()[-1] == "yes"
    host = run_cli("fit", "glm4-chat-1m", "--hardware", "cpu-64GB").stdout.splitlines()[1]
    assert "need (host)" in host and "context" in host.split()  # builds at different default contexts


def test_at_a_terminal_names_are_not_highlighted_and_fits_and_errors_are_coloured():
    r = run_cli("list", env=TERM)
    assert r.returncode == 0 and BOX & set(r.stdout)  # a person's boxed table
    for name in ("glm-4.5-air", "glm-4-9b-chat-1m-hf", "glm-z1-32b-0414"):
        assert name in r.stdout, name  # no colour codes around the digits inside a name
    assert "\x1b[" not in "".join(re.findall(r"│ (glm[^│]*)│", r.stdout))
    fit = run_cli("fit", "glm-4.6", "--hardware", "4xH100-80G", env=TERM).stdout
    assert "\x1b[1;32myes" in fit and "\x1b[1;31mno [1]" in fit
    assert "\x1b[" not in fit.split("\n[1]")[-1].split("\n")[0]  # the reasons under the table: plain text
    err = run_cli("show", "glm4-chat-1", env=TERM).stderr
    assert err.startswith("\x1b[1;31merror:\x1b[0m unknown family")
    assert run_cli("show", "glm4-chat-1", env={**TERM, "NO_COLOR": "1"}).stderr.startswith("error: unknown family")
    assert run_cli("show", "glm4-chat-1").stderr.startswith("error: ")  # a pipe: no colour
