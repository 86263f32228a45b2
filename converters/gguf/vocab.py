"""GLM tokenizers -> GGUF vocabulary (llama.cpp's byte-level BPE, "gpt2" model).

Two source layouts: tokenizer.json (HF-format GLM-4/4.5+/5) and ChatGLM's tiktoken rank file
tokenizer.model (base64 token, rank per line, no merges: they are recovered by re-running BPE
over each token with the ranks below its own). Special tokens (ids from the tokenizer files):
[gMASK] is the prompt prefix, <|user|> ends a turn (eot), <|observation|> ends a tool call (eom),
<|endoftext|> is eos/unk. llama.cpp reads the pre-tokenizer name ("chatglm-bpe" / "glm4") to pick
GLM's split regex. The chat template is copied from tokenizer_config.json or chat_template.jinja.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from ..bytelevel import byte_chars
from .reader import Checkpoint, CheckpointError

NORMAL, CONTROL, USER_DEFINED, UNUSED = 1, 3, 4, 5
# ChatGLM's hub tokenizer appends these after the ranks when tokenizer_config.json does not list them.
CHATGLM_SPECIALS = ["<|endoftext|>", "[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>", "<|system|>", "<|user|>",
                    "<|assistant|>", "<|observation|>", "<|begin_of_image|>", "<|end_of_image|>",
                    "<|begin_of_video|>", "<|end_of_video|>"]


def to_unicode(b: bytes) -> str:
    t = byte_chars()
    return "".join(t[x] for x in b)


def _bpe_parts(ranks: dict[bytes, int], token: bytes, max_rank: int) -> list[bytes]:
    parts = [bytes([x]) for x in token]
    while len(parts) > 1:
        best, best_i = None, -1
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and r < max_rank and (best is None or r < best):
                best, best_i = r, i
        if best is None:
            break
        parts[best_i: best_i + 2] = [parts[best_i] + parts[best_i + 1]]
    return parts


def _from_tiktoken(path: Path) -> tuple[dict[str, int], list[str]]:
    ranks: dict[bytes, int] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            tok, rank = line.split()
            ranks[base64.b64decode(tok)] = int(rank)
        except ValueError:
            raise CheckpointError(f"{path}:{n}: not a tiktoken rank line (base64 token, space, rank)") from None
    vocab = {to_unicode(t): r for t, r in ranks.items()}
    merges = []
    for tok, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        if len(tok) < 2:
            continue
        parts = _bpe_parts(ranks, tok, rank)
        if len(parts) == 2:
            merges.append(f"{to_unicode(parts[0])} {to_unicode(parts[1])}")
    return vocab, merges


def _json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except ValueError as e:
        raise CheckpointError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got a {type(data).__name__}; copy the tokenizer files again")
    return data


def load_vocab(ck: Checkpoint) -> dict:
    """tokens, types, merges, specials (content -> id) and chat template of a checkpoint."""
    d = ck.dir
    tcfg = _json(d / "tokenizer_config.json")
    added: dict[str, tuple[int, bool]] = {}
    try:
        for tid, info in (tcfg.get("added_tokens_decoder") or {}).items():
            added[info["content"]] = (int(tid), bool(info.get("special", True)))
    except (KeyError, TypeError, ValueError, AttributeError):
        raise CheckpointError(f"{d / 'tokenizer_config.json'}: malformed added_tokens_decoder; "
                              "copy the tokenizer files again") from None
    if (d / "tokenizer.json").is_file():
        tj = _json(d / "tokenizer.json")
        model = tj.get("model") or {}
        if not isinstance(model, dict):
            raise CheckpointError(f"{d / 'tokenizer.json'}: 'model' is {model!r}, not a tokenizer model object; "
                                  "copy the tokenizer files again")
        if model.get("type") != "BPE":
            raise CheckpointError(f"{d / 'tokenizer.json'}: expected a BPE tokenizer, found {model.get('type')!r}")
        try:  # JSON of any shape: the vocab a {token: id} map, merges strings or pairs, added tokens objects
            vocab = {str(t): int(i) for t, i in dict(model["vocab"]).items()}
            merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
            for a in tj.get("added_tokens", []):
                added[a["content"]] = (int(a["id"]), bool(a.get("special", False)))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise CheckpointError(f"{d / 'tokenizer.json'}: malformed BPE tokenizer ({type(e).__name__}: {e}); "
                                  "copy the tokenizer files again") from None
    elif (d / "tokenizer.model").is_file():
        vocab, merges = _from_tiktoken(d / "tokenizer.model")
        if not added:
            added = {s: (len(vocab) + i, True) for i, s in enumerate(CHATGLM_SPECIALS)}
    else:
        raise CheckpointError(f"{d} has neither tokenizer.json nor tokenizer.model; copy the tokenizer files too")
    n_vocab = ck.cfg_int("padded_vocab_size", "vocab_size")
    ids = {i: t for t, i in vocab.items()}
    for t, (i, _) in added.items():
        ids[i] = t
    if ids and max(ids) >= n_vocab:
        raise CheckpointError(f"tokenizer has id {max(ids)} but config.json's vocab size is {n_vocab}")
    special_ids = {i for i, s in added.values() if s}
    tokens, types = [], []
    for i in range(n_vocab):
        if i not in ids:
            tokens.append(f"[PAD{i}]")
            types.append(UNUSED)
        else:
            tokens.append(ids[i])
            types.append(CONTROL if i in special_ids else USER_DEFINED if ids[i] in added else NORMAL)
    template = tcfg.get("chat_template")
    if isinstance(template, list):  # [{"name": "default", "template": ...}, ...]
        template = next((t["template"] for t in template if t.get("name") == "default"), template[0]["template"])
    if (d / "chat_template.jinja").is_file():
        template = (d / "chat_template.jinja").read_text()
    return {"tokens": tokens, "types": types, "merges": merges, "specials": {t: i for t, (i, _) in added.items()},
            "template": template, "pad_token": tcfg.get("pad_token")}


def write_vocab(w, v: dict, ck: Checkpoint, pre: str) -> None:
    """Write a vocabulary from load_vocab (tokens, types, merges, specials, chat template)."""
    sp = v["specials"]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(v["tokens"])
    w.add_token_types(v["types"])
    w.add_token_merges(v["merges"])
    eos = ck.cfg("eos_token_id", default=sp.get("<|endoftext|>"))
    if isinstance(eos, list):
        eos = eos[0]
    if eos is None:
        raise CheckpointError("no eos token: config.json has no eos_token_id and the tokenizer no <|endoftext|>")
    w.add_eos_token_id(int(eos))
    if "[gMASK]" in sp:
        w.add_bos_token_id(sp["[gMASK]"])  # GLM prompts open with [gMASK]<sop>; the template writes it, so add_bos is off
    w.add_add_bos_token(False)
    if "<|user|>" in sp:
        w.add_eot_token_id(sp["<|user|>"])
    if "<|observation|>" in sp:
        w.add_eom_token_id(sp["<|observation|>"])
    if "<|endoftext|>" in sp:
        w.add_unk_token_id(sp["<|endoftext|>"])
    pad = v["pad_token"]
    if isinstance(pad, dict):
        pad = pad.get("content")
    if pad in sp:
        w.add_pad_token_id(sp[pad])
    if v["template"]:
        w.add_chat_template(v["template"])
