"""`registry run`'s chat in the terminal, as `ollama run` reads it: line editing and history (stdlib readline;
the history file in the registry home), multi-line messages between \"\"\", slash commands that never reach
the model, Ctrl-C that stops an answer (twice at the prompt: the chat ends)."""

from __future__ import annotations

import json
import math
import signal
import sys
from collections.abc import Callable

from ..errors import RegistryError

HELP = """Commands:
  /show                  the build, engine, context, chat template and settings
  /set temperature T     sampling temperature (/set temperature default: the engine's)
  /set context N         a server with N tokens of context (32k, 128K, max), started or reused
  /set max-tokens N      the most tokens per answer (--max-tokens)
  /set system TEXT       the system message (/set system alone removes it)
  /clear                 forget the conversation
  /bye                   end the chat (or Ctrl-D)
  /?                     this help
Begin and end a message with \"\"\" to write several lines. Ctrl-C stops an answer; twice at the prompt, the chat ends."""

HISTORY_FILE = "chat_history"


def _err(msg: str) -> None:
    print(msg, file=sys.stderr)


def say(msg: str) -> None:
    """What a slash command answers: on the terminal; in a pipe on stderr, so that stdout holds the answers alone."""
    print(msg, file=sys.stdout if sys.stdin.isatty() else sys.stderr)


def deployment_context(dep) -> int | None:
    """The context a deployment was started with, from its argv (llama.cpp, vLLM, SGLang)."""
    from ..prestart import option_value

    v = option_value(dep.argv or [], "--n_ctx", "--max-model-len", "--context-length")
    return int(v) if v and v.isdigit() else None


class Chat:
    """One conversation with a deployment. `switch(context)` gives the deployment of the same build with that
    context (`/set context`): reused or started by the caller, which stops what it started."""

    def __init__(self, dep, system: str | None, max_tokens: int, temperature: float | None,
                 switch: Callable[[int | str], object] | None = None):
        self.dep, self.system, self.max_tokens, self.temperature = dep, system, max_tokens, temperature
        self.switch = switch
        self.messages: list[dict] = []

    def history(self) -> list[dict]:
        return ([{"role": "system", "content": self.system}] if self.system else []) + self.messages

    def ask(self, text: str) -> str:
        from .. import launcher

        return answer(launcher.address(self.dep), launcher.served_model(self.dep),
                      self.history() + [{"role": "user", "content": text}], self.max_tokens, self.temperature)

    # --- slash commands ---

    def command(self, text: str) -> bool:
        """Run a slash command; False when it ends the chat."""
        word, _, rest = text.partition(" ")
        word, rest = word.lower(), rest.strip()
        if word in ("/bye", "/exit", "/quit"):
            return False
        if word in ("/?", "/help"):
            say(HELP)
        elif word == "/clear":
            self.messages = []
            say("Cleared the conversation" + (" (the system message stays)" if self.system else ""))
        elif word == "/show":
            self.show()
        elif word == "/set":
            self.set(rest)
        else:
            say(f"unknown command {word}; /? lists the commands (nothing was sent to the model)")
        return True

    def show(self) -> None:
        from .. import launcher
        from ..catalog import load

        d = self.dep
        try:
            template = load().get(d.family).chat.template
        except RegistryError:
            template = "?"
        ctx = deployment_context(d)
        rows = [("build", f"{d.family}:{d.quantization} ({d.format})"),
                ("engine", f"{d.engine}, deployment {d.id} at {launcher.address(d)}"),
                ("context", f"{ctx:,} tokens" if ctx else "the engine's default"),
                ("template", f"{template} (applied by the engine from the build's own chat template)"),
                ("temperature", "the engine's default" if self.temperature is None else f"{self.temperature:g}"),
                ("max tokens", f"{self.max_tokens:,} per answer"),
                ("system", self.system or "(none)"),
                ("messages", str(len(self.messages)))]
        say("\n".join(f"  {k:<12} {v}" for k, v in rows))

    def set(self, rest: str) -> None:
        key, _, value = rest.partition(" ")
        key, value = key.lower(), value.strip()
        if key == "temperature":
            if value.lower() in ("default", ""):
                self.temperature = None
                say("temperature: the engine's default")
                return
            try:
                t = float(value)
            except ValueError:
                t = -1.0
            if not math.isfinite(t) or t < 0:
                say(f"/set temperature {value}: give a number from 0 (e.g. 0.7), or default")
                return
            self.temperature = t
            say(f"temperature: {t:g}")
        elif key == "system":
            self.system = value or None
            say(f"system message: {value}" if value else "system message removed")
        elif key in ("context", "num_ctx"):
            self.set_context(value)
        elif key in ("max-tokens", "max_tokens", "num_predict"):  # num_predict: Ollama's name for it
            if not (value.isascii() and value.isdigit() and int(value) > 0):
                say(f"/set max-tokens {value}: give the most tokens per answer, a whole number from 1 (e.g. 512)")
                return
            self.max_tokens = int(value)
            say(f"max tokens: {self.max_tokens:,} per answer")
        else:
            say(f"/set {key}: unknown setting; /set temperature T, /set context N, /set max-tokens N or /set system TEXT")

    def set_context(self, value: str) -> None:
        from ..naming import parse_context

        try:
            ctx = parse_context(value)
        except RegistryError as e:
            say(f"/set context: {e}")
            return
        if ctx is None or self.switch is None:
            say("/set context N: give the tokens, e.g. 8192, 32k or max")
            return
        try:
            self.dep = self.switch(ctx)
        except RegistryError as e:
            say(f"/set context {value}: {e}")
            return
        say(f"context: {deployment_context(self.dep) or value} tokens (deployment {self.dep.id})")


def _readline(home) -> Callable[[], None]:
    """Line editing and history for input() (stdlib readline, where the platform has it); returns what saves
    the history."""
    try:
        import readline
    except ImportError:
        return lambda: None
    path = home / HISTORY_FILE
    try:
        readline.read_history_file(path)
    except (OSError, ValueError):
        pass  # no history yet
    readline.set_history_length(1000)

    def save() -> None:
        try:
            readline.write_history_file(path)
        except OSError:
            pass

    return save


def _read(tty: bool, prompt: str) -> str | None:
    """One line (None at end of input)."""
    if tty:
        try:
            return input(prompt)
        except EOFError:
            sys.stdout.write("\n")
            return None
    line = sys.stdin.readline()
    return line.rstrip("\n") if line else None


def _message(first: str, tty: bool) -> str | None:
    """A message; one that begins with \"\"\" goes on until a line that ends with \"\"\"."""
    if not first.startswith('"""'):
        return first
    text = first[3:]
    if len(text) >= 3 and text.endswith('"""'):
        return text[:-3]
    lines = [text] if text else []
    while True:
        line = _read(tty, "... ")
        if line is None:
            return "\n".join(lines) or None
        if line.rstrip().endswith('"""'):
            lines.append(line.rstrip()[:-3])
            return "\n".join(lines)
        lines.append(line)


def loop(chat: Chat) -> None:
    """Read messages until /bye, Ctrl-D or two Ctrl-C at the prompt; print each answer as it streams.

    SIGINT is Python's KeyboardInterrupt here, not the CLI's exit: Ctrl-C stops the answer (the stream is
    closed, so the engine stops generating) and the chat goes on."""
    from .. import paths

    tty = sys.stdin.isatty()
    save = _readline(paths.home()) if tty else (lambda: None)
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    interrupted = False  # the last thing at the prompt was a Ctrl-C
    try:
        if tty:
            _err('Send a message (/? for help, /bye or Ctrl-D to end, """ for several lines)')
        while True:
            try:
                step = _turn(chat, tty)
            except KeyboardInterrupt:  # at the prompt (or between prompts): once says how to leave, twice leaves
                if interrupted or not tty:
                    sys.stdout.write("\n")
                    return
                interrupted = True
                sys.stdout.write("\n(Ctrl-C again ends the chat; so do /bye and Ctrl-D)\n")
                continue
            if step is None:
                return
            interrupted = interrupted and not step
    finally:
        signal.signal(signal.SIGINT, old)
        save()


def _turn(chat: Chat, tty: bool) -> bool | None:
    """Read one line and act on it: None ends the chat; True when something was entered."""
    line = _read(tty, ">>> ")
    if line is None:
        return None
    text = line.strip()
    if not text:
        return False
    if text.startswith("/"):
        return True if chat.command(text) else None
    text = _message(text, tty)
    if not text or not text.strip():
        return True
    try:
        reply = chat.ask(text)
    except KeyboardInterrupt:  # Ctrl-C stops this answer, not the chat
        sys.stdout.write("\n(answer stopped)\n")
        sys.stdout.flush()
        return True
    chat.messages += [{"role": "user", "content": text}, {"role": "assistant", "content": reply}]
    return True


def answer(base: str, model: str, messages: list[dict], max_tokens: int, temperature: float | None) -> str:
    """One streamed chat completion, printed as it comes; the whole answer."""
    import urllib.error
    import urllib.request

    body = {"model": model, "messages": messages, "stream": True, "max_tokens": max_tokens}
    if temperature is not None:
        body["temperature"] = temperature
    req = urllib.request.Request(f"{base}/chat/completions", json.dumps(body).encode(),
                                 {"Content-Type": "application/json", "Accept": "text/event-stream"})
    parts: list[str] = []
    try:
        with urllib.request.urlopen(req, timeout=600) as resp:
            for raw in resp:  # server-sent events, one `data: {...}` line per chunk
                line = raw.decode("utf-8", "replace").strip()
                if not line.startswith("data:"):
                    continue
                data = line[len("data:"):].strip()
                if data == "[DONE]":
                    break
                choices = json.loads(data).get("choices") or [{}]
                delta = (choices[0].get("delta") or {}).get("content") or ""
                if delta:
                    parts.append(delta)
                    sys.stdout.write(delta)
                    sys.stdout.flush()
    except urllib.error.HTTPError as e:
        raise RegistryError(f"the server answered {e.code}: {e.read().decode(errors='replace')[:300]}") from None
    except (urllib.error.URLError, OSError) as e:
        raise RegistryError(f"the server at {base} did not answer: {e}; see `registry logs`") from None
    sys.stdout.write("\n")
    sys.stdout.flush()
    return "".join(parts)
