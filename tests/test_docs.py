"""Generated documentation: the model pages against seed 004, determinism, `registry docs check`,
the Sphinx build with warnings as errors, and the built page rendered in headless Chromium."""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from conftest import ROOT, SPECS, run_cli

SEED_004 = Path(__file__).parent / "data" / "seed_004.txt"  # a copy of shared seed 004 (CI has no shared folder)
MODELS = ROOT / "docs" / "models"
# seed 004's launcher flags and the registry's spelling of each.
LAUNCH_FLAGS = {"--model-engine": "--engine", "--size-in-billions": "--size", "--model-format": "--format",
                "--quantization": "--quant"}


def joined(page: str) -> str:
    """A page with its wrapped commands (` \\` continuations) back on one line each."""
    return re.sub(r" \\\n +", " ", page)


@pytest.fixture(scope="module")
def generated() -> dict[str, str]:
    """Every page as the specs generate it now, rendered once for the tests that read them."""
    from registry.docs import pages

    return pages()


# --- seed 004, fact by fact ------------------------------------------------------------------


def seed_facts(text: str) -> list[tuple[str, object]]:
    """Every non-empty line of the seed page, in order: ("line", exact text) or, for the launch
    command, ("launch", {flag: value}) in the registry's flags (the name keyed by "name")."""
    facts: list[tuple[str, object]] = []
    for raw in text.splitlines():
        line = raw.rstrip()
        if not line.strip():
            continue
        words = line.split()
        if words[:2] == ["xinference", "launch"]:
            args = dict(zip(words[2::2], words[3::2]))
            want = {"name": args.pop("--model-name")}
            want.update({LAUNCH_FLAGS[k]: v for k, v in args.items() if LAUNCH_FLAGS[k]})
            facts.append(("launch", want))
        elif "${quantization}" in line:
            # the seed's "remember to replace ${quantization}": the page names a real one instead
            facts.append(("intro", "Execute the following command to launch the model with quantization "))
        elif line == "chosen quantization method from the options listed above::":
            continue  # the rest of that sentence
        else:
            facts.append(("line", line))
    return facts


def launch_matches(line: str, want: dict) -> bool:
    words = line.split()
    if words[:2] != ["registry", "launch"] or len(words) < 3 or words[2] != want["name"]:
        return False
    args = dict(zip(words[3::2], words[4::2]))

    def ok(k, v):  # the seed's ${engine} / ${quantization}: the page writes a real one there
        got = args.get(k)
        return got is not None and not got.startswith("$") if v.startswith("${") else got == v

    return all(ok(k, v) for k, v in want.items() if k != "name")


def missing_facts(facts, page: str) -> list[str]:
    """Facts not found on the page after the previous fact (so order matters)."""
    lines = [ln.rstrip() for ln in joined(page).splitlines()]
    pos, missing = 0, []
    for kind, fact in facts:
        for i in range(pos, len(lines)):
            hit = (lines[i] == fact if kind == "line" else lines[i].startswith(fact) if kind == "intro"
                   else launch_matches(lines[i].strip(), fact))
            if hit:
                pos = i + 1
                break
        else:
            missing.append(f"{kind}: {fact}")
    return missing


def test_seed_facts_parse():
    facts = seed_facts(SEED_004.read_text())
    lines = [f for k, f in facts if k == "line"]
    assert len(facts) >= 30
    assert "- **Context Length:** 1048576" in lines and "Model Spec 2 (ggufv2, 9 Billion)" in lines
    assert [f for k, f in facts if k == "launch"] == [
        {"name": "glm4-chat-1m", "--engine": "${engine}", "--size": "9", "--format": fmt, "--quant": "${quantization}"}
        for fmt in ("pytorch", "ggufv2")
    ]
    assert [k for k, _ in facts].count("intro") == 2


def test_launch_lines_name_real_quantizations(generated):
    """The seed's placeholders are filled in: every launch line on every page names a real quantization and engine."""
    from registry.catalog import load

    cat = load()
    for name, page in generated.items():
        assert "${quantization}" not in page and "${engine}" not in page, name
        if name == "index.rst":
            continue
        fam = cat.get(name.removesuffix(".rst"))
        for m in re.finditer(r"^\s+(?:``)?(registry launch \S+ .*?)(?:``)?$", joined(page), re.M):
            args = dict(zip(m.group(1).split()[3::2], m.group(1).split()[4::2]))
            assert args["--quant"] in fam.quantizations(), (name, m.group(1))
            assert args.get("--engine", "llama.cpp") in fam.engines(), (name, m.group(1))


def test_every_seed_004_fact_in_order_on_the_generated_page(generated):
    page = generated["glm4-chat-1m.rst"]
    facts = seed_facts(SEED_004.read_text())
    assert missing_facts(facts, page) == []
    # the committed page is the generated one
    assert (MODELS / "glm4-chat-1m.rst").read_text() == page


def test_fact_check_fails_on_reordered_or_changed_pages(generated):
    page = joined(generated["glm4-chat-1m.rst"])
    facts = seed_facts(SEED_004.read_text())
    # spec sections swapped: order broken
    s1, s2 = page.index("Model Spec 1 ("), page.index("Model Spec 2 (")
    swapped = page[:s1] + page[s2:] + page[s1:s2]
    assert missing_facts(facts, swapped)
    # a changed fact: engine rule dropped
    assert missing_facts(facts, page.replace(" (vLLM only available for quantization none)", ""))
    # a launch command with another format
    assert missing_facts(facts, page.replace("--format ggufv2 --quant BF16\n", "--format pytorch --quant BF16\n"))
    # a placeholder left on the page is not a launch line the seed's facts accept
    assert missing_facts(facts, page.replace("--format ggufv2 --quant BF16\n", "--format ggufv2 --quant ${quantization}\n"))


def test_page_adds_architecture_licence_memory_recipe_and_per_engine_commands(generated):
    page = joined(generated["glm4-chat-1m.rst"])
    assert "- **Architecture:** ChatGLMModel (chatglm); dense; 9B parameters; 40 layers" in page
    assert "**Attribution:** Built with glm-4" in page and "**Commercial use:** allowed after registration" in page
    # Expected cells worked out by hand, not by estimate(): 9B x 4.89 bits (llama.cpp's Q4_K_M) = 5.5 GB
    # of weights, plus the f16 KV cache of the full 1M-token context (2 x 40 layers x 4 KV groups x 128
    # x 2 bytes per token = 85.9 GB); in decimal GB, as `registry fit` prints them.
    weights = 9e9 * 4.89 / 8
    assert f"   * - Q4_K\n     - 4.89\n     - {weights / 1e9:,.1f} GB\n" in page
    assert f"     - {(weights + 2 * 40 * 4 * 128 * 2 * 1048576) / 1e9:,.1f} GB" in page
    assert "GiB" not in page
    assert "Q3_K, Q4_K and Q5_K mean llama.cpp's Q3_K_M, Q4_K_M and Q5_K_M (the _M variants)" in page
    assert "registry launch glm4-chat-1m --engine vllm --size 9 --format pytorch --quant none" in page
    assert "registry launch glm4-chat-1m --engine llama.cpp --size 9 --format ggufv2 --quant BF16" in page
    assert "registry convert glm4-chat-1m --from /path/to/glm-4-9b-chat-1m --to ggufv2 --quant all" in page
    # the engines' own commands come from the launcher's engine modules, planned for a named profile
    assert "planned for hardware profile ``8xH100-80G`` (add ``--hardware 8xH100-80G --dry-run`` to print the plan)::\n\n     vllm serve THUDM/glm-4-9b-chat-1m " in page
    assert "python3 -m llama_cpp.server --model /path/to/glm-4-9b-chat-1m.BF16.gguf" in page
    assert "Q8_0, BF16, FP16; shown for BF16)" in page  # one entry for the quantizations that share a command
    assert "--quantization bnb-4bit" in page  # Transformers' 4-bit build has its own command
    assert str(ROOT) not in page and sys.executable not in page  # nothing of this machine
    # seed 000's vLLM command, from the launch profile
    chat = joined(generated["glm-4-9b-chat.rst"])
    assert "vllm serve" in chat and "--kv-cache-dtype fp8" in chat and "--max-model-len 32768" in chat
    assert "KV cache in fp8)" in chat  # the memory table follows the launch profile's KV cache type
    # seed 003's environment and SGLang command
    g5 = joined(generated["glm-5.rst"])
    assert "Not on hardware profile ``8xB200``: not enough GPU memory" in g5  # BF16 GLM-5 needs more than a node
    assert "NCCL_P2P_LEVEL=PHB" in g5 and "python3 -m sglang.launch_server --model lukealonso/GLM-5-NVFP4" in g5


def test_markup_in_spec_text_is_escaped():
    """Stars, backticks, bars and trailing underscores in a description show as written."""
    from docutils.core import publish_doctree

    from registry import get
    from registry.docs import render_family

    text = "Uses *stars*, `ticks`, a|b and ref_ words; glm4_moe stays."
    fam = get("glm4-chat-1m").model_copy(update={"description": text})
    page = render_family(fam)
    tree = publish_doctree(page, settings_overrides={"report_level": 2, "halt_level": 2})
    items = [n.astext() for n in tree.findall() if n.tagname == "list_item"]
    assert f"Description: {text}" in items


_ENGINE_BLOCK = re.compile(
    r"^     (registry launch [^\n]+)\n\n  which starts, planned for hardware profile ``([^`]+)``[^\n]*::\n\n     ([^\n]+)$",
    re.M)


@pytest.mark.parametrize("family", ["glm4-chat-1m", "glm-4.6"])
def test_page_commands_are_what_registry_launch_plans(family):
    """Each per-engine `registry launch` line on the page, run with --dry-run for the page's hardware
    profile, plans exactly the server command the page shows."""
    import json

    page = joined((MODELS / f"{family}.rst").read_text())
    blocks = _ENGINE_BLOCK.findall(page)
    assert len(blocks) >= 3
    for line, hardware, server in blocks:
        concrete = line
        r = run_cli(*concrete.split()[1:], "--hardware", hardware, "--dry-run", "--json")
        assert r.returncode == 0, (line, r.stderr)
        plan = json.loads(r.stdout)
        argv = [Path(plan["argv"][0]).name, *plan["argv"][1:]]
        argv[0] = "python3" if argv[0].startswith("python") else argv[0]
        shown = server.split()
        env = [f"{k}={v}" for k, v in plan["env"].items()]
        if plan["engine"] == "llama.cpp":  # the file is fetched at launch: the page names it, the plan its source
            i = argv.index("--model") + 1
            quant = concrete.split("--quant ")[1].split()[0]
            assert shown[len(env) + i] == f"/path/to/glm-4-9b-chat-1m.{quant}.gguf"
            argv[i] = shown[len(env) + i]
        assert shown == env + argv, line


def test_every_registry_command_on_the_pages_uses_real_options():
    """The `registry convert|launch` lines on every page name only options those commands have."""
    import typer.main

    from registry.cli import app

    root = typer.main.get_command(app)
    opts = {name: {o for p in root.commands[name].params for o in p.opts if o.startswith("-")}
            for name in ("launch", "convert")}
    seen = 0
    for page in MODELS.glob("*.rst"):
        for m in re.finditer(r"^\s+registry (launch|convert) (.+)$", joined(page.read_text()), re.M):
            flags = {w for w in m.group(2).split() if w.startswith("--")}
            assert flags <= opts[m.group(1)], (page.name, m.group(0), flags - opts[m.group(1)])
            seen += 1
    assert seen > 50


def test_index_lists_every_family(generated):
    from registry.catalog import shipped

    index = generated["index.rst"]
    for e in shipped():
        assert f":ref:`{e.family.name} <models_llm_{e.family.name}>`" in index
        assert f"\n   {e.family.name}\n" in index  # in the toctree


# --- build and check --------------------------------------------------------------------------


def _tree(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def test_build_is_deterministic(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    ra = run_cli("docs", "build", "--out", str(a), env={"PYTHONHASHSEED": "1"})
    rb = run_cli("docs", "build", "--out", str(b), env={"PYTHONHASHSEED": "2"})
    assert ra.returncode == 0 and rb.returncode == 0, ra.stderr + rb.stderr
    assert _tree(a) == _tree(b) == _tree(MODELS)
    from registry.catalog import shipped

    pages = len(shipped()) + 1  # one per family and the index
    assert f"{pages} written" in ra.stdout
    again = run_cli("docs", "build", "--out", str(a))
    assert f"0 written, {pages} unchanged" in again.stdout
    assert not [p for p in a.iterdir() if p.name.startswith(".")]  # no temp files left


def test_docs_check_passes_on_committed_pages():
    r = run_cli("docs", "check")
    assert r.returncode == 0, r.stderr
    assert "match the specs" in r.stdout


def test_docs_check_names_the_stale_page_after_a_spec_change(tmp_path):
    specs = tmp_path / "specs"
    shutil.copytree(SPECS, specs)
    f = specs / "glm4-chat-1m.yaml"
    f.write_text(f.read_text().replace("context_length: 1048576", "context_length: 1000000"))
    env = {"REGISTRY_SPECS_DIR": str(specs)}
    r = run_cli("docs", "check", env=env)
    assert r.returncode == 1
    assert r.stderr.startswith("error: stale pages:") and "docs/models/glm4-chat-1m.rst" in r.stderr
    assert "glm-5.rst" not in r.stderr and "Traceback" not in r.stderr
    j = run_cli("docs", "check", "--json", env=env)
    assert j.returncode == 1 and '"ok": false' in j.stdout
    # rebuilt into a copy, the pages are current again
    out = tmp_path / "models"
    shutil.copytree(MODELS, out)
    assert run_cli("docs", "build", "--out", str(out), env=env).returncode == 0
    assert run_cli("docs", "check", "--out", str(out), env=env).returncode == 0
    assert "- **Context Length:** 1000000" in (out / "glm4-chat-1m.rst").read_text()


def test_removed_family_page_is_stale_then_removed(tmp_path):
    specs = tmp_path / "specs"
    shutil.copytree(SPECS, specs)
    (specs / "glm-5.yaml").unlink()
    out = tmp_path / "models"
    shutil.copytree(MODELS, out)
    (out / "notes.rst").write_text("a page of the user's own, not generated\n")
    env = {"REGISTRY_SPECS_DIR": str(specs)}
    r = run_cli("docs", "check", "--out", str(out), env=env)
    assert r.returncode == 1 and "glm-5.rst (its family is no longer in the specs)" in r.stderr
    assert run_cli("docs", "build", "--out", str(out), env=env).returncode == 0
    assert not (out / "glm-5.rst").exists() and (out / "notes.rst").exists()


def test_build_into_a_file_is_an_error(tmp_path):
    f = tmp_path / "models"
    f.write_text("not a directory")
    r = run_cli("docs", "build", "--out", str(f))
    assert r.returncode == 1 and r.stderr.startswith("error:") and "not a directory" in r.stderr


def test_templates_are_package_data():
    import tomllib

    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["registry"]
    pattern = next(p for p in data if "templates" in p)
    found = sorted(p.name for p in (ROOT / "registry").glob(pattern))
    assert found == ["family.rst.j2", "index.rst.j2"]


# --- the Sphinx site --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The HTML site, built with warnings as errors."""
    out = tmp_path_factory.mktemp("site")
    r = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         "-d", str(out / "doctrees"), str(ROOT / "docs"), str(out / "html")],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return out / "html"


def _text(path: Path) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", path.read_text()))


def test_sphinx_build_with_warnings_as_errors(site):
    for page in ["index", "getting-started", "cli", "api", "models/index", "models/glm4-chat-1m"]:
        assert (site / f"{page}.html").is_file(), page


def test_getting_started_shows_the_readme_commands(site):
    readme = (ROOT / "README.md").read_text().split("\n---", 1)[0]
    commands = [ln.strip() for ln in readme.splitlines() if ln.startswith("    ")][:2]
    assert len(commands) == 2 and all(c.startswith("bash scripts/setup.sh") for c in commands)
    text = _text(site / "getting-started.html")
    for c in commands:
        assert c in text


def test_cli_reference_has_every_command(site):
    import typer.main

    from registry.cli import app

    root = typer.main.get_command(app)
    names = []
    for name, cmd in root.commands.items():
        names.append(f"registry {name}")
        names += [f"registry {name} {sub}" for sub in getattr(cmd, "commands", {})]
    text = _text(site / "cli.html")
    assert "registry docs check" in names
    for n in names:
        assert n in text, n
    assert "--min-context" in text


def test_api_reference_from_docstrings(site):
    text = _text(site / "api.html")
    for name in ["registry.get", "registry.families", "registry.resolve", "registry.schema.Family",
                 "registry.schema.Spec", "registry.Resolved"]:
        assert name in text, name
    assert "NotFoundError lists the nearest names" in text  # registry.get's docstring


# --- the rendered page in a browser -----------------------------------------------------------


class _Tables(HTMLParser):
    """Cell texts of each <table class="... specs-table ...">."""

    def __init__(self):
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._in = 0
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        cls = dict(attrs).get("class") or ""
        if tag == "table" and "specs-table" in cls.split():
            self._in = 1
            self.tables.append([])
        elif self._in and tag == "tr":
            self.tables[-1].append([])
        elif self._in and tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "table" and self._in:
            self._in = 0
        elif self._in and tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _chromium() -> str:
    path = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if path is None:
        msg = "chromium not found (apt-get install chromium; scripts/setup.sh does it as root)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def test_chromium_renders_the_specs_table(site, tmp_path):
    chromium = _chromium()
    page = site / "models" / "glm4-chat-1m.html"
    r = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=180,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    parser = _Tables()
    parser.feed(r.stdout)
    assert len(parser.tables) == 1, "the rendered page has no specs table"
    header, *rows = parser.tables[0]
    assert header == ["Spec", "Format", "Size (billions)", "Quantizations", "Engines", "Model ID"]
    # the rows carry seed 004's facts of each spec, e.g. "- **Model Format:** pytorch", "- **Engines**: ..."
    specs = re.split(r"^Model Spec \d", SEED_004.read_text(), flags=re.M)[1:]
    assert len(rows) == len(specs) == 2
    for i, (row, text) in enumerate(zip(rows, specs), 1):
        fact = {k.rstrip(":"): v.strip() for k, v in re.findall(r"^- \*\*([^*]+)\*\*:? ?(.*)$", text, re.M)}
        assert row == [str(i), fact["Model Format"], fact["Model Size (in billions)"], fact["Quantizations"],
                       fact["Engines"], fact["Model ID"]]


def test_pages_say_which_builds_used_an_importance_matrix(generated):
    """An uploader's imatrix builds say so with the calibration set; the registry's own IQ builds say they
    need one and how to give it; a build without either says nothing about it."""
    page = generated["glm-4-9b-0414.rst"]
    bart = page[page.index("bartowski/THUDM_GLM-4-9B-0414-GGUF"):]
    assert "**Importance matrix:** every quantized build, calibrated on https://gist.github.com/bartowski1182/" in bart
    own = generated["glm4-chat-1m.rst"]
    line = next(x for x in own.splitlines() if x.startswith("- **Importance matrix:**"))
    assert "IQ3_XS" in line and "--calibration FILE" in line and "--imatrix FILE" in line
    assert "IQ4_XS" not in line  # IQ4_XS builds without one (llama.cpp's own list)
    assert "Importance matrix" not in generated["glm-4.5-air.rst"]


def test_long_commands_wrap_as_a_shell_reads_them(generated):
    """No line of a literal block runs past the text column; each wrapped piece ends in ` \\` and the
    pieces joined are the command."""
    from registry.docs.generate import WRAP

    wrapped = 0
    for name, page in generated.items():
        for line in page.splitlines():
            if line.startswith("   ") and not line.lstrip().startswith(("* -", "- ", ":")):
                assert len(line) <= WRAP, (name, line)
        wrapped += page.count(" \\\n")
    assert wrapped > 20
    g46 = joined(generated["glm-4.6.rst"])
    assert "     registry launch glm-4.6 --engine vllm --size 355 --format compressed-tensors --quant AWQ " \
           "--profile expert-parallel\n" in g46


def test_fit_table_is_what_registry_fit_says(generated):
    """The page's cells for the AWQ build of glm-4.6 against `registry fit --hardware H --json`: same verdict,
    same engine, same figures in the same unit; the weights read as the CLI prints them (185.5 GB)."""
    import json

    from registry.docs.fit import MACHINES

    page = generated["glm-4.6.rst"]
    table = page[page.index(".. list-table:: glm-4.6 compressed-tensors builds on common hardware"):]
    table = table[: table.index("\n\n", table.index("   * - AWQ"))]
    row = table[table.index("   * - AWQ"):].split("\n     - ")
    cells = dict(zip([h for _, h in MACHINES], row[2:6]))
    assert row[1] == "185.5 GB" and row[6] == "``registry launch glm-4.6 --format compressed-tensors --quant AWQ``"
    for _, hardware in MACHINES:
        r = run_cli("fit", "glm-4.6", "--hardware", hardware, "--format", "compressed-tensors", "--quant", "AWQ", "--json")
        assert r.returncode == 0, r.stderr
        (b,) = json.loads(r.stdout)["builds"]
        assert f"{b['weights_bytes'] / 1e9:,.1f} GB" == row[1]
        if b["fits"]:
            assert cells[hardware] == (f"yes: vLLM, {b['per_gpu_bytes'] / 1e9:,.1f} GB /GPU at context {b['context']:,}")
        else:
            assert cells[hardware].startswith("no: ")
            assert any(cells[hardware][4:] in reason for reason in b["reasons"]), (cells[hardware], b["reasons"])
    assert cells["8xH100-80G"].startswith("yes") and cells["cpu-64GB"].startswith("no")


def test_the_suggested_build_is_what_registry_fit_quant_auto_picks(tmp_path):
    """For every spec of every family, the page's headline build (quantization and engine) is what
    `registry fit NAME --format F --quant auto` picks on the smallest of the page's machines where a build
    fits, that machine given as a profile file (the page's core count, not this machine's)."""
    import json

    from registry.catalog import load
    from registry.docs.fit import MACHINES, fit_rows, machine, suggested
    from registry.launching.fit import fit

    profiles = {}
    for _, hardware in MACHINES:
        profiles[hardware] = tmp_path / f"{hardware}.json"
        profiles[hardware].write_text(json.dumps(machine(hardware).to_dict()))
    compared = 0
    for fam in load(include_user=False).families():
        for spec in fam.specs:
            rows = fit_rows(fam, spec)
            quant, engine = suggested(fam, spec, rows)
            where = next((h for i, (_, h) in enumerate(MACHINES) if any(r["fits"][i] for r in rows)), None)
            if where is None:  # the page then shows the first build; fit agrees that nothing fits anywhere
                for _, hardware in MACHINES:
                    res = fit(fam.launch_name(spec), hardware=str(profiles[hardware]), quant="auto", format=spec.format)
                    assert res["auto"]["quantization"] is None, (fam.name, spec.format, hardware)
                continue
            res = fit(fam.launch_name(spec), hardware=str(profiles[where]), quant="auto", format=spec.format)
            assert {b["size_in_billions"] for b in res["builds"]} == {spec.size_in_billions}
            assert len(res["builds"]) == len(spec.quantizations), (fam.name, spec.publisher)
            assert (res["auto"]["quantization"], res["auto"]["engine"]) == (quant, engine), (fam.name, spec.format, where)
            compared += 1
    assert compared > 40


def test_show_carries_the_pages_memory_figures_and_launch_profiles(generated):
    import json

    r = run_cli("show", "glm-4.6", "--json")
    assert r.returncode == 0, r.stderr
    awq = next(s for s in json.loads(r.stdout)["specs"] if s["format"] == "compressed-tensors")
    assert [(p["engine"], p["name"]) for p in awq["launch"]] == [("vllm", "expert-parallel"), ("vllm", "default")]
    assert awq["launch"][0]["source"] == 'the bullpoint/GLM-4.6-AWQ model card, "Recommended Configuration"'
    (m,) = awq["memory"]["builds"]
    page = generated["glm-4.6.rst"]
    cells = [f"{m['bits_per_weight']:.2f}"] + [f"{m[k] / 1e9:,.1f} GB" for k in
                                               ("weights_bytes", "kv_cache_short_bytes", "kv_cache_full_bytes",
                                                "total_full_bytes")]
    assert "   * - AWQ\n" + "".join(f"     - {c}\n" for c in cells) in page  # the page's memory row, figure for figure
    assert cells[1] == "185.5 GB"
    table = run_cli("show", "glm-4.6", env={"COLUMNS": "200"})
    assert table.returncode == 0
    assert "185.5 GB" in table.stdout and "GiB" not in table.stdout
    assert "registry launch glm-4.6 --format compressed-tensors --quant AWQ --profile expert-parallel" in table.stdout


_LAYOUT_JS = """() => {
  const box = e => { const r = e.getBoundingClientRect(); return {left: r.left, top: r.top, right: r.right, bottom: r.bottom}; };
  const body = document.querySelector('div.body');
  const cells = t => [...t.querySelectorAll('tr')].map(tr => [...tr.querySelectorAll('th, td')].map(c => c.innerText.replace(/\\s+/g, ' ').trim()));
  return {
    sidebar: box(document.querySelector('div.sphinxsidebar')), body: box(body),
    page_width: document.documentElement.scrollWidth,
    scrolled: [...body.querySelectorAll('pre, table')].filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.innerText.slice(0, 80)),
    past_body: [...body.querySelectorAll('*')].filter(e => e.getBoundingClientRect().right > box(body).right + 1).length,
    fit_tables: [...document.querySelectorAll('table.fit-table')].map(cells),
  };
}"""


@pytest.mark.parametrize("family", ["glm-4.6", "glm4-chat-1m"])
def test_chromium_shows_the_fit_table_beside_the_sidebar_at_1280px(site, family, generated):
    """The built page at 1280 x 900 in headless Chromium: the sidebar beside the text (not pushed under it),
    nothing wider than the text column, and the fit table with the page's cells."""
    sync = pytest.importorskip("playwright.sync_api")
    exe = _chromium()
    with sync.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto((site / "models" / f"{family}.html").as_uri())
            got = page.evaluate(_LAYOUT_JS)
        finally:
            browser.close()
    sb, body = got["sidebar"], got["body"]
    assert sb["right"] <= body["left"] + 1 and sb["top"] < body["top"] + 50, got  # side by side, both at the top
    assert got["page_width"] <= 1280 and got["past_body"] == 0 and got["scrolled"] == [], got
    from registry.catalog import load
    from registry.docs.fit import MACHINES

    fam = load().get(family)
    assert len(got["fit_tables"]) == len(fam.specs)
    header, *rows = got["fit_tables"][0]
    assert header == ["Quantization", "Weights", *(f"{t} (--hardware {h})" for t, h in MACHINES), "Launch it with"]
    assert [r[0] for r in rows] == list(fam.specs[0].quantizations)
    # each rendered row is the generated page's row, and the launch line reads whole
    rst = generated[f"{family}.rst"]
    for r in rows:
        assert r[-1] == f"registry launch {family} --format {fam.specs[0].format} --quant {r[0]}"
        assert f"   * - {r[0]}\n" + "".join(f"     - {c}\n" for c in r[1:-1]) in rst, r


def test_every_page_command_is_what_registry_launch_plans():
    """For every family, spec, engine and launch profile of the catalog: the server command a page shows is the
    plan of its `registry launch ... --hardware H --dry-run --json` (the same planning core), for the page's
    reference hardware. In-process (typer's runner): ~200 plans."""
    import json
    import shlex

    from typer.testing import CliRunner

    from registry.catalog import load
    from registry.cli import app
    from registry.docs.commands import engine_commands

    runner = CliRunner()
    seen = set()
    for fam in load().families():
        for spec in fam.specs:
            for ec in engine_commands(fam, spec):
                if ec.server is None:
                    continue
                args = [*ec.registry.split()[1:], "--hardware", ec.hardware, "--dry-run", "--json"]
                r = runner.invoke(app, args)
                assert r.exit_code == 0, (ec.registry, r.output)
                plan = json.loads(r.stdout)
                assert plan["engine"] == ec.engine and plan["quantization"] == ec.shown, ec.registry
                argv = [Path(plan["argv"][0]).name, *plan["argv"][1:]]
                argv[0] = "python3" if argv[0].startswith("python") else argv[0]
                for i, a in enumerate(argv):  # where the plan fills the file in at launch, the page names it
                    if a.startswith("<fetched at launch"):
                        argv[i] = f"/path/to/{plan['artifact']['files'][0]}"
                    elif a == "<local build>":
                        argv[i] = "/path/to/local-build"
                env = [f"{k}={v}" for k, v in plan["env"].items()]
                assert shlex.split(ec.server) == env + argv, ec.registry
                seen.add((fam.name, spec.format, spec.size_in_billions))
    assert len(seen) >= len(load().names())  # every family has a spec with a command on its page
