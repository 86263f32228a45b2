"""A small GLM-style tokenizer for the tiny test checkpoints (see converters/tiny/).

What the real repositories hold (looked up from the published files; ids are GLM-4's):

* GLM-4 family vocabulary: byte-level BPE (tiktoken "cl100k"-like ranks) of 151329 normal tokens,
  then the special tokens in this order from id 151329: <|endoftext|>, [MASK], [gMASK], [sMASK],
  <sop>, <eop>, <|system|>, <|user|>, <|assistant|>, <|observation|>, <|begin_of_image|>,
  <|end_of_image|>, <|begin_of_video|>, <|end_of_video|>. GLM-4.5/4.6/4.7 (and GLM-5, whose normal
  vocabulary is larger: its specials start at 154820) continue with <|begin_of_audio|>,
  <|end_of_audio|>, <|begin_of_transcription|>, <|end_of_transcription|>, <|code_prefix|>,
  <|code_middle|>, <|code_suffix|>, <think>, </think>, <tool_call>, </tool_call>, <tool_response>,
  </tool_response>, <arg_key>, </arg_key>, <arg_value>, </arg_value>, /nothink, <|begin_of_box|>,
  <|end_of_box|>, <|image|>, <|video|> (the GLM-4 list is as published; the set of GLM-4.5
  additions matches llama.cpp's GLM-4.5 preserved-token list, their order is GLM-4.5's
  tokenizer_config.json as recalled and not re-checked against the file). End-of-turn ids (config eos_token_id) are
  [<|endoftext|>, <|user|>, <|observation|>]; pad is <|endoftext|>.
* Pre-tokenizer: the GLM-4 split regex below (llama.cpp calls it "chatglm-bpe" for ChatGLM and
  "glm4" for the HF-format repos), then byte-level mapping.
* ChatGLMModel repos (THUDM/glm-4-9b-chat, -1m) ship ``tokenizer.model`` in tiktoken rank format
  (one line per normal token: base64 of its bytes, a space, its rank) and a tokenizer_config.json
  (added_tokens_decoder with the specials, chat_template, tokenizer_class ChatGLM4Tokenizer, and an
  auto_map to the repo's own tokenization_chatglm.py, which these tiny repos do not carry); no
  tokenizer.json. The merges are implied by the ranks (a token merges from the lower-ranked pair).
* HF-format repos (glm-4-9b-chat-hf, GLM-4-0414, GLM-4.5+, GLM-5) ship tokenizer.json (BPE with
  explicit merges) and tokenizer_config.json; GLM-4.5+ and GLM-5 keep the chat template in
  chat_template.jinja, the older ones inside tokenizer_config.json.

Here the normal vocabulary is a BPE trained with the `tokenizers` library on a fixed text (so it is
the same on every run), and the specials follow it with consecutive ids, in GLM's order.
The chat templates reproduce each family's prompt layout ("[gMASK]<sop>", "<|role|>\\n...",
generation prompt "<|assistant|>"); the long tool-use system prompts of the originals are shortened.
"""

from __future__ import annotations

import base64
import json
from functools import lru_cache
from pathlib import Path

from ..bytelevel import byte_chars

# The GLM-4 pre-tokenizer split pattern (from the published tokenizer files).
GLM4_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

GLM4_SPECIALS = [
    "<|endoftext|>", "[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>", "<|system|>", "<|user|>",
    "<|assistant|>", "<|observation|>", "<|begin_of_image|>", "<|end_of_image|>",
    "<|begin_of_video|>", "<|end_of_video|>",
]
GLM45_SPECIALS = GLM4_SPECIALS + [
    "<|begin_of_audio|>", "<|end_of_audio|>", "<|begin_of_transcription|>",
    "<|end_of_transcription|>", "<|code_prefix|>", "<|code_middle|>", "<|code_suffix|>",
    "<think>", "</think>", "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>",
    "<arg_key>", "</arg_key>", "<arg_value>", "</arg_value>", "/nothink", "<|begin_of_box|>",
    "<|end_of_box|>", "<|image|>", "<|video|>",
]
EOS_TOKENS = ["<|endoftext|>", "<|user|>", "<|observation|>"]

# Normal (non-special) vocabulary size of the tiny tokenizer.
NORMAL_VOCAB = 600

# Fixed training text: English and Chinese, with chat-like and code-like lines.
CORPUS = """\
The registry keeps a record of every model family, its formats and its quantized builds.
A small model is enough to test a converter: the numbers are random, but the shapes are real.
Hello! How are you today? I am fine, thank you. What is the weather like in Beijing?
It is sunny and warm; the temperature is about 25 degrees, with a light wind from the north.
Please write a short poem about the sea, the moon and the stars over the quiet harbour.
The quick brown fox jumps over the lazy dog while the cat sleeps near the open window.
def add(a, b):
    return a + b
for i in range(10):
    print(i, i * i)
{"name": "get_weather", "arguments": {"city": "Shanghai", "unit": "celsius"}}
Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 256 512 1024 2048 4096 2025 3.14159
Large language models read text as tokens; a tokenizer splits words into smaller pieces.
Quantization stores each weight with fewer bits, trading a little accuracy for memory and speed.
你好！今天天气怎么样？北京今天是晴天，气温大约二十五度，有一点北风。
请写一首关于大海、月亮和星星的短诗。夜晚的港口很安静，灯光照在水面上。
大语言模型把文本看作词元；分词器把词语切分成更小的片段。
量化用更少的比特保存每一个权重，用一点精度换取内存和速度。
我们在注册表里记录每一个模型家族、它的格式和量化版本。
智谱的模型支持中文和英文，可以回答问题、写代码、调用工具。
人工智能助手应该给出有帮助、诚实并且安全的回答。
"""

# glm-4-9b-chat / glm-4-9b-chat-hf: prompt starts [gMASK]<sop>; each message is
# <|role|>{metadata}\n{content}; the generation prompt is <|assistant|> (the model writes the \n).
GLM4_CHAT_TEMPLATE = (
    "[gMASK]<sop>{% for item in messages %}{% if item['tools'] is defined %}<|system|>\n"
    "You are GLM-4, a helpful assistant.\n\n# Available tools{% set tools = item['tools'] %}"
    "{% for tool in tools %}{% if tool['type'] == 'function' %}\n\n## {{ tool['function']['name'] }}"
    "\n\n{{ tool['function'] | tojson(indent=4) }}\nUse JSON for the call's arguments."
    "{% endif %}{% endfor %}{% endif %}{% if item['content'] %}<|{{ item['role'] }}|>"
    "{{ item['metadata'] }}\n{{ item['content'] }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

# GLM-4-0414: system messages first, then the rest; generation prompt "<|assistant|>\n".
GLM4_0414_CHAT_TEMPLATE = (
    "[gMASK]<sop>{%- if tools -%}<|system|>\n# Available tools\n{% for tool in tools %}"
    "{%- set function = tool.function if tool.get('function') else tool %}\n\n## {{ function.name }}"
    "\n\n{{ function | tojson(indent=4, ensure_ascii=False) }}\n"
    "Use JSON for the call's arguments.{%- endfor %}{%- endif -%}"
    "{%- for msg in messages %}{%- if msg.role == 'system' %}<|system|>\n{{ msg.content }}"
    "{%- endif %}{%- endfor %}"
    "{%- for message in messages if message.role != 'system' %}"
    "{%- set role = message['role'] %}{%- set content = message['content'] %}"
    "{%- set meta = message.get('metadata', '') %}"
    "{%- if role == 'user' %}<|user|>\n{{ content }}"
    "{%- elif role == 'assistant' and not meta %}<|assistant|>\n{{ content }}"
    "{%- elif role == 'assistant' and meta %}<|assistant|>{{ meta }} \n{{ content }}"
    "{%- elif role == 'observation' %}<|observation|>\n{{ content }}{%- endif %}{%- endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

# GLM-4.5 / 4.6 / 4.7 and GLM-5: thinking blocks, XML-style tool calls, /nothink when thinking is
# off; generation prompt "<|assistant|>" (+ "\n<think></think>" when thinking is off).
GLM45_CHAT_TEMPLATE = (
    "[gMASK]<sop>"
    "{%- if tools -%}<|system|>\n# Tools\n\nYou may call functions. Signatures:\n<tools>\n"
    "{% for tool in tools %}{{ tool | tojson(ensure_ascii=False) }}\n{% endfor %}</tools>\n\n"
    "Call a function as <tool_call>{function-name}\n<arg_key>{arg-key-1}</arg_key>\n"
    "<arg_value>{arg-value-1}</arg_value>\n...\n</tool_call>{%- endif -%}"
    "{%- macro visible_text(content) -%}{%- if content is string -%}{{- content }}"
    "{%- elif content is iterable and content is not mapping -%}{%- for item in content -%}"
    "{%- if item is mapping and item.type == 'text' -%}{{- item.text }}"
    "{%- elif item is string -%}{{- item }}{%- endif -%}{%- endfor -%}"
    "{%- else -%}{{- content }}{%- endif -%}{%- endmacro -%}"
    "{%- for m in messages %}"
    "{%- if m.role == 'user' -%}<|user|>\n{{ visible_text(m.content) }}"
    "{{- '/nothink' if (enable_thinking is defined and not enable_thinking "
    "and not visible_text(m.content).endswith('/nothink')) else '' -}}"
    "{%- elif m.role == 'assistant' -%}<|assistant|>"
    "{%- set reasoning = m.reasoning_content if m.reasoning_content is string else '' -%}"
    "\n<think>{{ reasoning.strip() }}</think>"
    "{%- if m.content %}\n{{ visible_text(m.content).strip() }}{%- endif -%}"
    "{%- if m.tool_calls -%}{%- for tc in m.tool_calls -%}"
    "{%- set f = tc.function if tc.function else tc -%}\n<tool_call>{{ f.name }}\n"
    "{%- for k, v in f.arguments.items() -%}<arg_key>{{ k }}</arg_key>\n<arg_value>"
    "{{ v | tojson(ensure_ascii=False) if v is not string else v }}</arg_value>\n"
    "{%- endfor -%}</tool_call>{%- endfor -%}{%- endif -%}"
    "{%- elif m.role == 'tool' -%}"
    "{%- if loop.first or messages[loop.index0 - 1].role != 'tool' -%}<|observation|>{%- endif -%}"
    "\n<tool_response>\n{{ visible_text(m.content) }}\n</tool_response>"
    "{%- elif m.role == 'system' -%}<|system|>\n{{ visible_text(m.content) }}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|assistant|>"
    "{{- '\n<think></think>' if (enable_thinking is defined and not enable_thinking) else '' -}}"
    "{%- endif -%}"
)


BYTE_DECODER = {c: b for b, c in byte_chars().items()}


def token_bytes(token: str) -> bytes:
    """The raw bytes of a byte-level BPE token string."""
    return bytes(BYTE_DECODER[c] for c in token)


@lru_cache(maxsize=4)
def _trained_json(normal_vocab: int) -> str:
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(GLM4_SPLIT_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=normal_vocab,
        min_frequency=1,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    # Repeat the text so that rarer pairs still reach the requested vocabulary size.
    tok.train_from_iterator([CORPUS] * 3, trainer=trainer)
    if tok.get_vocab_size() != normal_vocab:
        raise RuntimeError(
            f"tiny tokenizer trained to {tok.get_vocab_size()} tokens, wanted {normal_vocab}: "
            "lengthen CORPUS or lower NORMAL_VOCAB"
        )
    return tok.to_str()


def build_tokenizer(specials: list[str], normal_vocab: int = NORMAL_VOCAB):
    """A `tokenizers.Tokenizer`: the trained BPE plus `specials` with consecutive ids after it."""
    from tokenizers import AddedToken, Tokenizer

    tok = Tokenizer.from_str(_trained_json(normal_vocab))
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    for i, s in enumerate(specials):
        if tok.token_to_id(s) != normal_vocab + i:
            raise RuntimeError(f"special token {s} got id {tok.token_to_id(s)}, wanted {normal_vocab + i}")
    return tok


def special_ids(specials: list[str], normal_vocab: int = NORMAL_VOCAB) -> dict[str, int]:
    return {s: normal_vocab + i for i, s in enumerate(specials)}


def _added_tokens_decoder(specials: list[str], normal_vocab: int) -> dict[str, dict]:
    return {
        str(normal_vocab + i): {
            "content": s, "lstrip": False, "normalized": False, "rstrip": False,
            "single_word": False, "special": True,
        }
        for i, s in enumerate(specials)
    }


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_hf_tokenizer(dest: Path, *, specials: list[str], chat_template: str,
                       template_file: bool, model_max_length: int,
                       normal_vocab: int = NORMAL_VOCAB) -> None:
    """tokenizer.json + tokenizer_config.json (+ chat_template.jinja) as the HF-format GLM repos."""
    tok = build_tokenizer(specials, normal_vocab)
    tok.save(str(dest / "tokenizer.json"))
    config = {
        "added_tokens_decoder": _added_tokens_decoder(specials, normal_vocab),
        "additional_special_tokens": specials[1:],
        "clean_up_tokenization_spaces": False,
        "do_lower_case": False,
        "eos_token": "<|endoftext|>",
        "extra_special_tokens": {},
        "model_input_names": ["input_ids", "attention_mask"],
        "model_max_length": model_max_length,
        "pad_token": "<|endoftext|>",
        "padding_side": "left",
        "remove_space": False,
        "tokenizer_class": "PreTrainedTokenizerFast",
    }
    if template_file:
        (dest / "chat_template.jinja").write_text(chat_template, encoding="utf-8")
    else:
        config["chat_template"] = chat_template
    _write_json(dest / "tokenizer_config.json", config)


def tiktoken_ranks(normal_vocab: int = NORMAL_VOCAB) -> dict[bytes, int]:
    """The normal vocabulary as tiktoken mergeable ranks (bytes -> rank = the BPE id)."""
    tok = build_tokenizer([], normal_vocab)
    ranks = {token_bytes(t): i for t, i in tok.get_vocab().items()}
    if len(ranks) != normal_vocab or sorted(ranks.values()) != list(range(normal_vocab)):
        raise RuntimeError("tiny BPE vocabulary is not a dense set of distinct byte strings")
    return ranks


def write_tiktoken_file(path: Path, normal_vocab: int = NORMAL_VOCAB) -> None:
    """`tokenizer.model` in tiktoken's format: 'base64(bytes) rank' per line, by rank."""
    ranks = tiktoken_ranks(normal_vocab)
    lines = [f"{base64.b64encode(b).decode('ascii')} {r}" for b, r in sorted(ranks.items(), key=lambda kv: kv[1])]
    path.write_text("\n".join(lines) + "\n", encoding="ascii")


def read_tiktoken_file(path: Path) -> dict[bytes, int]:
    out: dict[bytes, int] = {}
    for line in path.read_text(encoding="ascii").splitlines():
        if line:
            b64, rank = line.split(" ")
            out[base64.b64decode(b64)] = int(rank)
    return out


def write_chatglm_tokenizer(dest: Path, *, model_max_length: int, normal_vocab: int = NORMAL_VOCAB) -> None:
    """tokenizer.model + tokenizer_config.json as THUDM/glm-4-9b-chat (no tokenizer.json)."""
    write_tiktoken_file(dest / "tokenizer.model", normal_vocab)
    config = {
        "added_tokens_decoder": _added_tokens_decoder(GLM4_SPECIALS, normal_vocab),
        "additional_special_tokens": GLM4_SPECIALS[1:],
        "auto_map": {"AutoTokenizer": ["tokenization_chatglm.ChatGLM4Tokenizer", None]},
        "chat_template": GLM4_CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "do_lower_case": False,
        "eos_token": "<|endoftext|>",
        "model_max_length": model_max_length,
        "pad_token": "<|endoftext|>",
        "padding_side": "left",
        "remove_space": False,
        "tokenizer_class": "ChatGLM4Tokenizer",
    }
    _write_json(dest / "tokenizer_config.json", config)
