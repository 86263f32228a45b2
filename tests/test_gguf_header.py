"""registry.gguf_header (the launcher's stdlib GGUF header reader) against gguf's own GGUFReader."""

from __future__ import annotations

import pytest

from registry.errors import RegistryError
from registry.estimate import gguf_info
from registry.gguf_header import read


def _reader_value(field):
    from gguf import GGUFValueType

    if field.types[0] == GGUFValueType.ARRAY:
        if field.types[-1] == GGUFValueType.STRING:
            return len(field.data)  # the header reader keeps only a string array's length
        return [v for v in field.contents()]
    return field.contents()


@pytest.mark.parametrize("arch, quant", [("chatglm", "F16"), ("glm4moe", "Q4_K_M"), ("glm-dsa", "Q8_0")])
def test_header_matches_gguf_reader(tiny_gguf, arch, quant):
    from gguf import GGUFReader

    path = tiny_gguf(arch, quant)
    h, r = read(path), GGUFReader(str(path))
    fields = {k: _reader_value(f) for k, f in r.fields.items() if not k.startswith("GGUF.")}
    assert h.metadata.keys() == fields.keys()
    for k, v in fields.items():
        assert h.metadata[k] == pytest.approx(v) if isinstance(v, float) else h.metadata[k] == v, k
    assert h.tensors == {t.name: tuple(int(d) for d in t.shape) for t in r.tensors}
    assert h.data_offset == r.data_offset
    # The data section is the tensors' bytes plus at most alignment-1 bytes of padding after each.
    tensor_bytes = sum(int(t.n_bytes) for t in r.tensors)
    assert 0 <= h.data_bytes - tensor_bytes < 32 * len(r.tensors)
    info = gguf_info(path)
    assert info.weights == h.data_bytes and info.vocab == len(r.fields["tokenizer.ggml.tokens"].data)


def test_split_build_counts_every_part(tiny_checkpoint, tmp_path):
    from converters.gguf.core import convert_files
    from gguf import GGUFReader

    files = convert_files(tiny_checkpoint("glm4"), tmp_path / "glm4.gguf", split_max_size=1 << 20)
    assert len(files) > 1
    tensor_bytes = sum(int(t.n_bytes) for f in files for t in GGUFReader(str(f)).tensors)
    info = gguf_info(files[0])
    assert 0 <= info.weights - tensor_bytes < 32 * 200 and info.layers > 0


def test_bad_files_name_the_file(tiny_gguf, tmp_path):
    good = tiny_gguf("glm4", "F16").read_bytes()
    cases = {
        "truncated.gguf": (good[:200], "truncated GGUF header"),
        "magic.gguf": (b"GGML" + good[4:], "no GGUF magic"),
        "version.gguf": (good[:4] + (9).to_bytes(4, "little") + good[8:], "GGUF version 9"),
        "empty.gguf": (b"", "truncated GGUF header"),
    }
    for name, (data, words) in cases.items():
        p = tmp_path / name
        p.write_bytes(data)
        with pytest.raises(RegistryError, match=words) as e:
            read(p)
        assert str(p) in str(e.value) and "again" in str(e.value)
    with pytest.raises(RegistryError, match="cannot read"):
        read(tmp_path / "missing.gguf")
