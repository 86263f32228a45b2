"""Every command's --help as a person reads it: whole sentences (nothing cut with "..."), values named
(NAME, FORMAT) rather than typer's <str> / <list[Path]>, and no "seed NNN" where a source is meant."""

from __future__ import annotations

import re

import pytest

from conftest import run_cli


def _commands(argv=()):
    """Every command path, walked from the click tree the CLI really runs."""
    import typer.main

    from registry.cli import app

    root = typer.main.get_command(app)
    out = []

    def walk(cmd, path):
        out.append(path)
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, path + (name,))

    walk(root, tuple(argv))
    return root, out


def test_every_help_reads_whole(tmp_path):
    _, paths = _commands()
    assert len(paths) > 20
    bad = []
    for path in paths:
        r = run_cli(*path, "--help", env={"COLUMNS": "100"})
        assert r.returncode == 0, (path, r.stderr)
        text = r.stdout
        for line in text.splitlines():
            words = line.split()
            # a usage line's `{FILES}...` / `[ARGS]...` is click's "one or more"; any other "..." is a cut or an etc.
            if line.lstrip().startswith("Usage:"):
                continue
            if re.search(r"<[a-zA-Z\[\]|,]+>", line) or "..." in line:
                bad.append(f"registry {' '.join(path)} --help: {line.strip()}")
            if any(re.fullmatch(r"\(?seeds? \d{3}\)?[,.;:]?", w) for w in words):
                bad.append(f"registry {' '.join(path)} --help: {line.strip()}")
    assert not bad, "\n".join(bad)


def test_command_list_shows_each_first_sentence_whole():
    root, _ = _commands()
    r = run_cli("--help", env={"COLUMNS": "80"})
    listing = " ".join(r.stdout.split("Commands:")[1].split())
    for name, cmd in root.commands.items():
        first = " ".join(cmd.help.strip().split("\n\n")[0].split())
        first = first[: first.find(". ") + 1] if ". " in first else first
        assert f"{name} {first}" in listing, (name, first)


@pytest.mark.parametrize("argv, says", [
    (("schema",), "the bullpoint/GLM-4.6-AWQ model card"),
    (("launch", "glm-4.6", "--format", "compressed-tensors", "--quant", "AWQ", "--hardware", "4xH100-80G",
      "--dry-run", "--json"), 'the bullpoint/GLM-4.6-AWQ model card, \\"Recommended Configuration\\"'),
    (("launch", "glm-5", "--format", "modelopt", "--quant", "NVFP4", "--hardware", "8xB200", "--dry-run", "--json"),
     "the lukealonso/GLM-5-NVFP4 model card"),
])
def test_output_names_sources_not_seed_numbers(argv, says):
    r = run_cli(*argv)
    assert r.returncode == 0, r.stderr
    assert not re.search(r"\bseeds? \d{3}\b", r.stdout), re.findall(r".{40}\bseeds? \d{3}\b.{20}", r.stdout)
    assert says in r.stdout


def test_readme_points_at_no_file_outside_the_repo():
    from conftest import ROOT

    text = (ROOT / "README.md").read_text()
    assert "../" not in text and "shared folder" not in text
    for target in re.findall(r"\]\(([^)]+)\)", text):
        if not target.startswith(("http://", "https://", "#")):
            assert (ROOT / target).is_file(), target
    for name in re.findall(r"\b([A-Z]+\.md)\b", text):  # DESIGN.md and the like: the file is in the repo
        assert list(ROOT.rglob(name)), name
