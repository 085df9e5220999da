"""Train an EAGLE-3 head for SmolLM2-135M-Instruct by self-distillation, with `speculators`.

    python benchmarks/gpu/eagle3/train.py --target /tmp/models/smollm2-135m --data /tmp/eagle3/data.pt \
        --out /tmp/models/smollm2-135m-eagle3 --minutes 4 --log $OUT/eagle3-train.json

The head is speculators' own `Eagle3DraftModel` (one decoder layer fed with three of the target's
hidden layers, a pruned draft vocabulary), so vLLM loads the saved folder directly
(`method = "eagle3"`). Hidden states come from the frozen target, computed batch by batch while
training (no hidden-state files: a 135M target costs less to re-run than to store). The loss is
speculators' (KL to the target's next-token distribution over `--ttt-steps` unrolled steps).
The learning rate decays with wall-clock time, so a run of `--minutes` ends fully decayed
whatever the GPU's speed. `--log` gets loss and per-position accuracy on held-out answers.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import math
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch

#: how long saving and the held-out pass may go on before every thread's stack is printed (each time)
WATCHDOG_S = 60


def _import_speculators_without_datasets() -> None:
    """speculators' eagle3 package imports `datasets` for its file-based trainer, which this
    script does not use; a GPU machine whose pyarrow is older than datasets wants still trains."""
    try:
        import datasets  # noqa: F401
    except Exception as error:  # an ImportError, or a version check of pyarrow failing at import
        import sys
        import types

        print(f"datasets unavailable ({error}); training without it", flush=True)
        stub = types.ModuleType("datasets")
        stub.load_from_disk = None
        sys.modules["datasets"] = stub


def vocab_mapping(samples: list[dict], draft_vocab: int, target_vocab: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The `draft_vocab` most frequent answer tokens (d2t offsets, t2d mask), speculators' way."""
    from speculators.train.vocab_mapping import build_vocab_mappings_from_distribution

    counts = Counter(token for sample in samples for token in sample["answer"])
    return build_vocab_mappings_from_distribution(dict(counts), draft_vocab, target_vocab)


def pack(samples: list[dict], tokens: int, max_doc: int, rng: random.Random) -> list[list[dict]]:
    """Samples grouped into batches of at most `tokens` tokens (one epoch, shuffled)."""
    order = list(range(len(samples)))
    rng.shuffle(order)
    batches: list[list[dict]] = []
    current: list[dict] = []
    used = 0
    for index in order:
        size = min(len(samples[index]["prompt"]) + len(samples[index]["answer"]), max_doc)
        if current and used + size > tokens:
            batches.append(current)
            current, used = [], 0
        current.append(samples[index])
        used += size
    if current:
        batches.append(current)
    return batches


class TargetFeatures:
    """Hidden states of the frozen target: the three auxiliary layers EAGLE-3 reads, and the
    last layer's output before the final norm (the head's loss applies norm and lm_head itself).

    HF's `hidden_states[i]` is the input of decoder layer i, which is what vLLM hands an EAGLE-3
    head for layer id i. The pre-norm last state is taken with a hook on the final norm, since
    HF's last `hidden_states` entry is already normed.
    """

    def __init__(self, target_dir: str, layer_ids: list[int], device: str) -> None:
        from transformers import AutoModelForCausalLM

        self.model = AutoModelForCausalLM.from_pretrained(target_dir, dtype=torch.bfloat16).to(device).eval()
        self.layer_ids = layer_ids
        self.device = device
        self._pre_norm: torch.Tensor | None = None
        self.model.model.norm.register_forward_pre_hook(self._keep_pre_norm)

    def _keep_pre_norm(self, module: Any, inputs: tuple[torch.Tensor, ...]) -> None:
        self._pre_norm = inputs[0]

    @torch.no_grad()
    def packed(self, docs: list[dict], length: int, max_doc: int) -> dict[str, torch.Tensor]:
        """One [1, length] packed batch in speculators' layout, already shifted by one token
        (token t+1's embedding meets position t's hidden state; see speculators' shift_batch)."""
        ids = [(doc["prompt"] + doc["answer"])[:max_doc] for doc in docs]
        longest = max(len(x) for x in ids)
        input_ids = torch.zeros(len(ids), longest, dtype=torch.long)
        attention = torch.zeros(len(ids), longest, dtype=torch.long)
        for row, x in enumerate(ids):
            input_ids[row, : len(x)] = torch.tensor(x)
            attention[row, : len(x)] = 1
        out = self.model.model(
            input_ids=input_ids.to(self.device), attention_mask=attention.to(self.device), output_hidden_states=True
        )
        aux = torch.cat([out.hidden_states[i] for i in self.layer_ids], dim=-1)
        last = self._pre_norm
        parts: dict[str, list[torch.Tensor]] = {k: [] for k in ("input_ids", "hidden_states", "verifier", "loss_mask",
                                                                  "position_ids", "document_ids")}
        for row, (doc, x) in enumerate(zip(docs, ids)):
            n = len(x)
            mask = torch.zeros(n, dtype=torch.bool)
            mask[len(doc["prompt"]):] = True
            parts["input_ids"].append(input_ids[row, 1:n])
            parts["hidden_states"].append(aux[row, : n - 1])
            parts["verifier"].append(last[row, 1:n])
            parts["loss_mask"].append(mask[1:])
            parts["position_ids"].append(torch.arange(1, n))
            parts["document_ids"].append(torch.full((n - 1,), row))
        total = sum(len(p) for p in parts["input_ids"])
        pad = length - total
        if pad < 0:
            raise ValueError(f"batch of {total} tokens exceeds the packed length {length}")
        hidden = aux.shape[-1]
        parts["input_ids"].append(torch.zeros(pad, dtype=torch.long))
        parts["hidden_states"].append(torch.zeros(pad, hidden, dtype=aux.dtype, device=self.device))
        parts["verifier"].append(torch.zeros(pad, last.shape[-1], dtype=last.dtype, device=self.device))
        parts["loss_mask"].append(torch.zeros(pad, dtype=torch.bool))
        parts["position_ids"].append(torch.arange(1, pad + 1))
        parts["document_ids"].append(torch.full((pad,), len(docs)))
        batch = {k: torch.cat([p.to(self.device) for p in v]).unsqueeze(0) for k, v in parts.items()}
        batch["verifier_last_hidden_states"] = batch.pop("verifier")
        return batch


def accuracies(metrics: dict[str, torch.Tensor], steps: int) -> list[float]:
    """Per-position accuracy given all earlier positions were right (what acceptance measures)."""
    return [
        float(metrics[f"cond_acc_{k}_sum"]) / max(float(metrics[f"cond_acc_{k}_total"]), 1.0) for k in range(steps)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--log", type=Path)
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--draft-vocab", type=int, default=16384)
    parser.add_argument("--ttt-steps", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=16384, help="packed tokens per batch")
    parser.add_argument("--max-doc", type=int, default=1024)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--held-out", type=float, default=0.05, help="share of answers kept for validation")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--attention", default=None,
                        help="speculators' draft attention (default: simple_flex_attention on CUDA; eager on CPU, "
                             "where FlexAttention has no backward)")
    args = parser.parse_args()

    _import_speculators_without_datasets()
    from speculators.losses import resolve_loss_config
    from speculators.models.eagle3 import Eagle3DraftModel
    from transformers import AutoConfig

    started = time.perf_counter()
    samples = [s for s in torch.load(args.data) if s["answer"]]
    rng = random.Random(0)
    rng.shuffle(samples)
    n_val = max(1, int(len(samples) * args.held_out))
    val, train = samples[:n_val], samples[n_val:]
    verifier_config = AutoConfig.from_pretrained(args.target)
    layer_config = AutoConfig.from_pretrained(args.target)
    # the head is one decoder layer shaped like the target's, with its own (untied) lm_head
    layer_config.num_hidden_layers, layer_config.tie_word_embeddings = 1, False
    d2t, t2d = vocab_mapping(train, args.draft_vocab, verifier_config.vocab_size)
    draft = Eagle3DraftModel.from_training_args(
        layer_config, t2d=t2d, d2t=d2t, verifier_name_or_path=args.target, draft_vocab_size=args.draft_vocab,
        norm_before_residual=True, ttt_steps=args.ttt_steps,
        draft_attn_impl=args.attention or ("simple_flex_attention" if args.device.startswith("cuda") else "eager"),
    ).to(args.device)
    # speculators' eager KL loss: its fused Triton loss runs only on CUDA, and there torch 2.11's
    # dynamo fails tracing it inside the compiled forward ("ListVariable ... already tracked")
    loss_config = resolve_loss_config("kl_div", "eager")
    features = TargetFeatures(args.target, list(draft.target_layer_ids), args.device)
    trainable = [p for p in draft.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=args.lr, weight_decay=0.0, betas=(0.9, 0.95))
    budget = args.minutes * 60
    log: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}, "train_samples": len(train),
                           "val_samples": len(val), "layer_ids": list(draft.target_layer_ids), "steps": []}
    step, epoch, train_start = 0, 0, time.perf_counter()

    def run(docs: list[dict], train_mode: bool) -> tuple[float, list[float]]:
        batch = features.packed(docs, args.tokens, args.max_doc)
        with torch.autocast(device_type=args.device.split(":")[0], dtype=torch.bfloat16):
            _, loss, metrics = draft(**batch, ttt_steps=args.ttt_steps, ttt_step_loss_decay=1.0,
                                     loss_config=loss_config)
        if train_mode:
            loss.backward()
        return float(loss), accuracies(metrics, args.ttt_steps)

    while time.perf_counter() - train_start < budget:
        epoch += 1
        for docs in pack(train, args.tokens, args.max_doc, rng):
            elapsed = time.perf_counter() - train_start if step else 0.0
            if elapsed >= budget:
                break
            warm = min(1.0, (step + 1) / 20)
            for group in optimizer.param_groups:
                group["lr"] = args.lr * warm * max(0.02, 0.5 * (1 + math.cos(math.pi * elapsed / budget)))
            draft.train()
            optimizer.zero_grad(set_to_none=True)
            loss, acc = run(docs, train_mode=True)
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            step += 1
            if step == 1:
                # the first step compiles (torch.compile, FlexAttention): the budget is for learning
                log["first_step_s"] = round(time.perf_counter() - train_start, 1)
                train_start = time.perf_counter()
            if step % 20 == 1:
                log["steps"].append({"step": step, "epoch": epoch, "s": round(elapsed, 1), "loss": loss, "acc": acc})
                print(f"step {step} epoch {epoch} {elapsed:.0f}s loss {loss:.3f} acc {[round(a, 3) for a in acc]}",
                      flush=True)

    # A second-session H200 call learned its minutes and then printed nothing for 220 s, saving no head
    # (benchmarks/gpu/eagle3/README.md). So the head is saved first, and every minute of what follows
    # without an end prints where each thread is: the next hang names its line.
    log["train_steps"], log["epochs"] = step, epoch
    write_log(args.log, log)
    faulthandler.dump_traceback_later(WATCHDOG_S, repeat=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    print(f"saving: {step} steps, {epoch} epochs, to {args.out}", flush=True)
    # held out below: the head as saved, in bf16 (earlier logs held out the fp32 head before saving)
    draft.to(torch.bfloat16).save_pretrained(args.out)
    print(f"saved in {time.perf_counter() - train_start - budget:.0f}s after the budget", flush=True)
    draft.eval()
    held_out = pack(val, args.tokens, args.max_doc, random.Random(1))
    print(f"held-out: {len(held_out)} batches", flush=True)
    totals = [0.0] * args.ttt_steps
    losses = []
    with torch.no_grad():
        for docs in held_out:
            loss, acc = run(docs, train_mode=False)
            losses.append(loss)
            totals = [t + a for t, a in zip(totals, acc)]
    faulthandler.cancel_dump_traceback_later()
    log["held_out"] = {"loss": sum(losses) / max(1, len(losses)), "acc": [t / max(1, len(held_out)) for t in totals]}
    log["seconds"] = round(time.perf_counter() - started, 1)
    print(f"held-out: loss {log['held_out']['loss']:.3f} per-position accuracy "
          f"{[round(a, 3) for a in log['held_out']['acc']]} after {step} steps, {epoch} epochs", flush=True)
    write_log(args.log, log)


def write_log(path: Path | None, log: dict[str, Any]) -> None:
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(log, indent=1))


if __name__ == "__main__":
    main()
