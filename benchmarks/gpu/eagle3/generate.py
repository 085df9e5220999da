"""Self-distillation data: SmolLM2 answers the synthesised prompts itself, with vLLM.

    python benchmarks/gpu/eagle3/generate.py --target /tmp/models/smollm2-135m --out /tmp/eagle3/data.pt

Each prompt is answered at T=0 (what greedy acceptance is measured on) and at T=0.8 (so the head
also sees the text a sampling user gets). Prompts are rendered with the chat template, as the
plugin renders its workloads. Writes a list of {"prompt": ids, "answer": ids}.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from prompts import training_prompts  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--prompts", type=int, default=3000)
    parser.add_argument("--max-tokens", type=int, default=384)
    parser.add_argument("--temperatures", type=float, nargs="+", default=[0.0, 0.8])
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.4)
    args = parser.parse_args()

    from vllm import LLM, SamplingParams

    started = time.perf_counter()
    llm = LLM(model=args.target, dtype="bfloat16", max_model_len=2048, enforce_eager=True,
              gpu_memory_utilization=args.gpu_memory_utilization, seed=0)
    tokenizer = llm.get_tokenizer()
    texts = training_prompts(args.prompts)
    # rendered to text and tokenized by vLLM, exactly as the plugin sends its workloads
    rendered = [
        tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False)
        for text in training_prompts(args.prompts)
    ]
    samples = []
    for temperature in args.temperatures:
        params = SamplingParams(temperature=temperature, max_tokens=args.max_tokens, seed=0)
        outputs = llm.generate(rendered, params, use_tqdm=False)
        samples += [{"prompt": list(out.prompt_token_ids), "answer": list(out.outputs[0].token_ids)} for out in outputs]
    import torch

    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(samples, args.out)
    answer_tokens = sum(len(s["answer"]) for s in samples)
    print(f"generate: {len(samples)} answers, {answer_tokens} answer tokens in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
