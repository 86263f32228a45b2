"""The catalog's hub objects: every repository name well-formed, every build naming hub objects of its own, and
every GGUF file template producing file names that carry the quantization they stand for.

The GGUF check reads the names back with the recogniser `registry discover` uses on a hub listing
(registry/hub/recognise.py): what the catalog says a repository holds is what discover would find in it.
"""

from __future__ import annotations

import re

import pytest

from conftest import SPECS
from registry.catalog import load
from registry.hub.names import safe_relative_name, safe_revision
from registry.hub.recognise import gguf_layout, gguf_quant

# Each spec file is named after its family. The catalog is loaded inside the tests (under the test's own
# REGISTRY_HOME), not while the tests are collected.
NAMES = sorted(p.stem for p in SPECS.glob("*.yaml"))
# A hub repository: OWNER/NAME, each part letters, digits, '-', '_', '.', not starting or ending with '-' or '.',
# no '--' or '..' (the Hub's rule for repo ids; ModelScope's ids follow it); names stay under 96 characters.
REPO = re.compile(r"^(?!.*(--|\.\.))[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?/[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$")


def _builds():
    """(family, spec index, spec, hub, source) for every hub source of every spec."""
    cat = load(include_user=False)
    assert sorted(cat.names()) == NAMES
    for fam in (cat.get(n) for n in NAMES):
        for i, s in enumerate(fam.specs):
            for hub, src in s.hubs.items():
                yield fam, i, s, hub, src


def test_every_hub_repository_is_well_formed():
    bad = []
    for fam, i, s, hub, src in _builds():
        for q in s.quantizations:
            repo = src.model_id_for(q)
            if not REPO.match(repo) or len(repo.split("/")[1]) > 96 or repo.endswith(".git"):
                bad.append(f"{fam.name} spec {i + 1} {hub} {q}: {repo!r}")
            safe_revision(src.revision_for(q))
            for f in src.files_for(q):
                safe_relative_name(f)
    assert not bad, "\n".join(bad)


def test_each_build_of_a_spec_has_hub_objects_of_its_own():
    """Two quantizations of one spec never name the same repository, revision and files (pytorch's 4-bit and
    8-bit are the full-precision repository quantized at load time, and are one build here)."""
    bad = []
    for fam, i, s, hub, src in _builds():
        if s.format == "pytorch":
            continue
        seen: dict[tuple, str] = {}
        for q in s.quantizations:
            key = (src.model_id_for(q).lower(), src.revision_for(q), tuple(src.files_for(q)))
            if key in seen:
                bad.append(f"{fam.name} spec {i + 1} {hub}: {q} and {seen[key]} are both {key}")
            seen[key] = q
    assert not bad, "\n".join(bad)


def test_no_hub_object_belongs_to_two_specs():
    """Across the catalog a repository at a revision (and, for GGUF, a file) belongs to one spec: a repository
    copied into a second family or spec would be two names for one download."""
    owner: dict[tuple, str] = {}
    bad = []
    for fam, i, s, hub, src in _builds():
        for q in s.quantizations:
            files = src.files_for(q) or [""]
            for f in files:
                key = (hub, src.model_id_for(q).lower(), src.revision_for(q), f)
                who = f"{fam.name} spec {i + 1}"
                if owner.setdefault(key, who) != who:
                    bad.append(f"{key} is in {owner[key]} and {who}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("name", NAMES)
def test_gguf_templates_give_the_file_names_of_their_quantizations(name):
    fam = load(include_user=False).get(name)
    for spec in (s for s in fam.specs if s.format == "ggufv2" and s.hubs):
        _check_gguf(spec)


def _check_gguf(spec):
    for hub, src in spec.hubs.items():
        files = {q: src.files_for(q) for q in spec.quantizations}
        for q, names in files.items():
            assert names, f"{hub}: {q} has no file"
            base = names[0].rpartition("/")[2]
            found = gguf_quant(re.sub(r"-\d{5}-of-\d{5}\.gguf$|\.part\d+of\d+$", "", base))
            assert found and spec.canonical_quant(found[0]) == spec.canonical_quant(q), \
                f"{hub}: {names[0]} does not carry {q} in its name (the template is {src.file_template})"
        lay = gguf_layout([n for names in files.values() for n in names])
        assert sorted(lay.quantizations) == sorted(spec.quantizations), (hub, lay.quantizations)
        assert lay.unnamed == []
        for q in spec.quantizations:
            assert lay.first_files[q] == files[q][0]
            assert lay.split_parts.get(q, 1) == len(files[q])
