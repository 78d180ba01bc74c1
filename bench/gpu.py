"""Upstream Emotion-LLaMA's scale on one accelerator: a LLaMA-2-7B-shaped backbone and an EVA ViT-g-shaped frame
encoder with random weights (no files) in bf16, LoRA r=64 on q/v as upstream, and the real prompt shape (256
image tokens + the CLS, face, video and audio slots = 260 slot tokens, plus instruction text and an answer).

    python bench/gpu.py [--tiny] [--device cuda] [--text-tokens 48] [--answer-tokens 8] [--gen-tokens 64]
                        [--max-batch 64] [--steps 5] [--gradient-checkpointing]

Prints: training samples/s and peak memory at the largest batch that fits (tried 1, 2, 4, ... up to
``--max-batch``), score-mode evaluation samples/s (one forward per batch ranking every label answer, our
evaluation) and upstream-style generation samples/s (batch 1, greedy with KV cache, ``--gen-tokens`` new tokens:
random weights never stop at EOS, so every sample decodes exactly that many). ``--tiny`` runs the same code on a
tiny shape on CPU in seconds (the test suite runs it). Last line: ``ratio: R`` (score-mode samples/s over
upstream-style generation samples/s).
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from minigpt4.config.schema import LoraSettings, VisionConfig, VisionKind  # noqa: E402
from minigpt4.modalities import SLOT_IDS  # noqa: E402
from minigpt4.models.assemble import wrap_lora  # noqa: E402
from minigpt4.models.model import EmotionLLaMA  # noqa: E402
from minigpt4.models.tiny_tokenizer import ASSET_DIR  # noqa: E402
from minigpt4.models.vision import FrameEncoder  # noqa: E402

FEATURES = ("face", "video", "audio")
LABEL_ANSWERS = 9
"""Candidate answers score mode ranks per prompt (MER2023's six labels plus three two-label sets)."""


@dataclass(frozen=True)
class Shape:
    vocab: int
    hidden: int
    intermediate: int
    layers: int
    heads: int
    image: int
    patch: int
    vit_width: int
    vit_depth: int
    vit_heads: int
    feature_dim: int
    lora_r: int


SHAPES = {
    "7b": Shape(32000, 4096, 11008, 32, 32, 448, 14, 1408, 39, 16, 1024, 64),  # LLaMA-2-7B + EVA ViT-g at 448
    "tiny": Shape(512, 64, 128, 2, 4, 56, 14, 32, 2, 2, 16, 8),
}


def build(shape: Shape, device: torch.device, dtype: torch.dtype, checkpointing: bool) -> EmotionLLaMA:
    """Random-weight model built directly on ``device`` in ``dtype`` (no fp32 copy of 7B weights on the host)."""
    tokenizer = AutoTokenizer.from_pretrained(str(ASSET_DIR), local_files_only=True)
    config = LlamaConfig(vocab_size=shape.vocab, hidden_size=shape.hidden, intermediate_size=shape.intermediate,
                         num_hidden_layers=shape.layers, num_attention_heads=shape.heads,
                         num_key_value_heads=shape.heads, max_position_embeddings=4096,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
    vision_cfg = VisionConfig(kind=VisionKind.eva_upstream, image_size=shape.image, patch_size=shape.patch,
                              width=shape.vit_width, depth=shape.vit_depth, heads=shape.vit_heads, mlp_ratio=4.3637,
                              merge=4)
    lora = LoraSettings(r=shape.lora_r)  # upstream's: alpha 16, dropout 0.05, q_proj / v_proj
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            llm = LlamaForCausalLM(config).requires_grad_(False)
            vision = FrameEncoder(vision_cfg, load_weights=False)
    finally:
        torch.set_default_dtype(default)
    if checkpointing:
        llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    llm = wrap_lora(llm, lora)
    model = EmotionLLaMA(llm, tokenizer, vision, feature_dims=dict.fromkeys(FEATURES, shape.feature_dim),
                         feature_tokens=dict.fromkeys(FEATURES, 1), projector_kinds=dict.fromkeys(FEATURES, "linear"))
    return model.to(device)


def prompt_batch(shape: Shape, batch: int, text: int, answer: int, device: torch.device,
                 generator: torch.Generator) -> dict[str, Any]:
    """One batch in the collator's layout: ``text`` instruction tokens around the 260 slot positions (image,
    then CLS, face, video, audio as the prompt builder orders them), then ``answer`` tokens (labels) if any."""
    slot_ids = [SLOT_IDS["image"]] * ((shape.image // shape.patch) ** 2 // 4)
    slot_ids += [SLOT_IDS[name] for name in ("face", "video", "audio", "cls")]
    head = text // 2
    slots = torch.tensor([0] * head + slot_ids + [0] * (text - head + answer))
    length = len(slots)
    ids = torch.randint(3, shape.vocab, (batch, length), generator=generator)
    labels = torch.full((batch, length), -100)
    if answer:
        labels[:, -answer:] = ids[:, -answer:]
    return {"input_ids": ids.to(device), "slots": slots.expand(batch, -1).to(device),
            "attention_mask": torch.ones(batch, length, dtype=torch.long, device=device), "labels": labels.to(device),
            "image": torch.randn(batch, 3, shape.image, shape.image, generator=generator).to(device),
            "features": {m: torch.randn(batch, 1, shape.feature_dim, generator=generator).to(device) for m in FEATURES}}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rate(fn: Callable[[], None], samples: int, steps: int, device: torch.device) -> float:
    """Samples/s of ``fn`` (``samples`` per call) over ``steps`` calls after one untimed warm-up call."""
    fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    sync(device)
    return samples * steps / (time.perf_counter() - start)


def peak_memory_gib(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.max_memory_allocated(device) / 2 ** 30:.1f} GiB"
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20:.2f} GiB (process max RSS, CPU)"


def train_step(model: EmotionLLaMA, optimizer: torch.optim.Optimizer, batch: dict[str, Any]) -> None:
    model(batch).loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def out_of_memory(err: BaseException) -> bool:
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower()


def largest_training_batch(model: EmotionLLaMA, optimizer: torch.optim.Optimizer, make: Callable[[int], dict],
                           limit: int, device: torch.device) -> int:
    """The largest power-of-two batch up to ``limit`` whose training step runs (an OOM ends the search)."""
    best, size = 0, 1
    while size <= limit:
        try:
            train_step(model, optimizer, make(size))
            sync(device)
        except (torch.OutOfMemoryError, RuntimeError) as err:
            if not out_of_memory(err):
                raise
            optimizer.zero_grad(set_to_none=True)
            break
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()
        best, size = size, size * 2
    if not best:
        raise SystemExit("bench/gpu.py: not even a batch of 1 fits on this device")
    return best


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny shape on CPU (seconds; what the test suite runs)")
    parser.add_argument("--device", help="default: cuda when available (the 7B shape needs it), else cpu")
    parser.add_argument("--text-tokens", type=int, default=48, help="instruction + transcript tokens per prompt")
    parser.add_argument("--answer-tokens", type=int, default=8, help="answer tokens per training sample (EOS incl.)")
    parser.add_argument("--gen-tokens", type=int, default=64, help="new tokens per upstream-style generation")
    parser.add_argument("--max-batch", type=int, default=64, help="largest training batch tried")
    parser.add_argument("--eval-batch", type=int, default=32, help="score-mode batch")
    parser.add_argument("--steps", type=int, default=5, help="timed calls per figure (after one warm-up)")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    args = parser.parse_args(argv)
    if args.tiny:
        args.max_batch, args.eval_batch, args.gen_tokens, args.steps = min(args.max_batch, 4), 4, 8, 2
    return args


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() and not args.tiny else "cpu"))
    if device.type == "cpu" and not args.tiny:
        raise SystemExit("bench/gpu.py: the 7B shape needs a GPU (--device cuda); --tiny runs the same code on CPU")
    shape = SHAPES["tiny" if args.tiny else "7b"]
    dtype = torch.bfloat16 if device.type == "cuda" or not args.tiny else torch.float32
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    model = build(shape, device, dtype, args.gradient_checkpointing)
    trainable = [p for p in model.parameters() if p.requires_grad]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"{'tiny' if args.tiny else 'LLaMA-2-7B + EVA ViT-g'} shape, random weights in {str(dtype)[6:]} on {name}; "
          f"{model.trainable_summary()}; built in {time.perf_counter() - start:.0f}s")
    optimizer = torch.optim.AdamW(trainable, lr=1e-4)
    text, answer = args.text_tokens, args.answer_tokens
    make = lambda b: prompt_batch(shape, b, text, answer, device, generator)  # noqa: E731
    batch = largest_training_batch(model, optimizer, make, args.max_batch, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    train_batch = make(batch)
    train = rate(lambda: train_step(model, optimizer, train_batch), batch, args.steps, device)
    slots = int((train_batch["slots"][0] > 0).sum())
    print(f"prompt: {slots + text} tokens ({slots} slot + {text} text), answer {answer}")
    print(f"training (LoRA r={shape.lora_r} q/v + projectors, AdamW): batch {batch} (largest tried that fits, "
          f"<= {args.max_batch}), {train:.2f} samples/s, peak memory {peak_memory_gib(device)}")
    del optimizer, train_batch
    model.eval()
    score = score_rate(model, shape, args, device, generator)
    generate = generate_rate(model, shape, args, device, generator)
    print(f"score-mode evaluation (batch {args.eval_batch}, {LABEL_ANSWERS} candidate answers): {score:.2f} samples/s")
    print(f"upstream-style generation (batch 1, greedy, KV cache, {args.gen_tokens} new tokens): {generate:.3f} "
          f"samples/s = {generate * args.gen_tokens:.1f} tokens/s")
    print(f"total {time.perf_counter() - start:.0f}s")
    print(f"ratio: {score / generate:.1f}")


@torch.no_grad()
def score_rate(model: EmotionLLaMA, shape: Shape, args: argparse.Namespace, device: torch.device,
               generator: torch.Generator) -> float:
    batch = prompt_batch(shape, args.eval_batch, args.text_tokens, 0, device, generator)
    eos = model.tokenizer.eos_token_id
    candidates = [torch.randint(3, shape.vocab, (1 + i % 3,), generator=generator).tolist() + [eos]
                  for i in range(LABEL_ANSWERS)]
    return rate(lambda: model.score(batch, candidates), args.eval_batch, args.steps, device)


@torch.no_grad()
def generate_rate(model: EmotionLLaMA, shape: Shape, args: argparse.Namespace, device: torch.device,
                  generator: torch.Generator) -> float:
    batch = prompt_batch(shape, 1, args.text_tokens, 0, device, generator)
    n = args.gen_tokens

    def one() -> None:
        out = model.llm.generate(inputs_embeds=model.embed(batch), attention_mask=batch["attention_mask"],
                                 max_new_tokens=n, min_new_tokens=n, do_sample=False, use_cache=True,
                                 pad_token_id=model.tokenizer.pad_token_id or model.tokenizer.eos_token_id)
        if out.shape[1] != n:
            raise RuntimeError(f"generation gave {out.shape[1]} new tokens, expected {n}")

    return rate(one, 1, max(1, args.steps // 2), device)


if __name__ == "__main__":
    main(sys.argv[1:])
