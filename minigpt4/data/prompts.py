"""Instruction pools, the prompt template and the one prompt builder used by training and evaluation.

The builder turns an instruction with modality placeholders into token ids plus a parallel ``slots`` list
that says which positions the model fills with modality embeddings. Placeholders never enter the vocabulary,
so any backbone works without resizing its embeddings.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Sequence

from transformers import PreTrainedTokenizerBase

from minigpt4 import modalities
from minigpt4.config import ModelConfig
from minigpt4.data.labels import LabelSet
from minigpt4.data.samples import Sample

_PLACEHOLDER = {m.name: m.placeholder for m in modalities.REGISTRY}
_PLACEHOLDER_RE = re.compile("(" + "|".join(map(re.escape, _PLACEHOLDER.values())) + ")")
_SLOT_OF = {v: k for k, v in _PLACEHOLDER.items()}
_BLOCKS = {block: modalities.block_order(block) for block in ("video", "feature")}

# Upstream's instruction lists labels in its own order, not the label-index order.
_UPSTREAM_LABEL_TEXT = {
    "merr": "happy, sad, neutral, angry, worried, surprise, fear, contempt, doubt",
    "mer2023": "happy, sad, neutral, angry, worried, surprise",
}
EMOTION_POOL: tuple[str, ...] = (
    "Please determine which emotion label in the video represents: {labels}.",
    "Which emotion does the person in the video express? Choose one of: {labels}.",
    "Identify the emotion of the speaker in the video. The options are: {labels}.",
    "Classify the emotional state shown in the video as one of the following: {labels}.",
    "From the facial expression, the voice and the words, which emotion is shown: {labels}?",
)
MULTI_EMOTION_POOL: tuple[str, ...] = (
    "Please determine which emotion labels in the video apply, listing every one that does: {labels}.",
    "Which emotions does the person in the video express? Name all that apply from: {labels}.",
    "List every emotion shown by the speaker in the video, choosing from: {labels}.",
)
REASON_POOL: tuple[str, ...] = (
    "Please analyze all the clues in the video and reason out the emotional label of the person in the video.",
    "What is the emotional state of the person in the video? Please tell me the reason.",
    "What are the facial expressions and vocal tone used in the video? What is the intended meaning behind his "
    "words? Which emotion does this reflect?",
    "Please integrate information from various modalities to infer the emotional category of the person in the "
    "video.",
    "Could you describe the emotion-related features of the individual in the video? What emotional category do "
    "they fall into?",
)


EXPLAIN_INSTRUCTION = "The emotion is {label}. In one sentence, explain which clues in the video and the words show it."
"""The ``reason`` instruction asked after the label of a real LLM that was not trained on reasons: the
sentence it generates is the explanation ``predict.py`` and the page show."""


def emotion_pool(label_set: LabelSet, label_mode: str, custom: Sequence[str] | None = None) -> list[str]:
    """The ``emotion`` instructions for a label set, with its labels written in."""
    labels = _UPSTREAM_LABEL_TEXT.get(label_set.name, ", ".join(label_set.labels))
    pool = custom or (MULTI_EMOTION_POOL if label_mode == "multi" else EMOTION_POOL)
    return [p.format(labels=labels) if "{labels}" in p else p for p in pool]


def all_pool_text() -> str:
    """Every fixed word of the prompts (for training the tiny tokenizer)."""
    parts = [*EMOTION_POOL, *MULTI_EMOTION_POOL, *REASON_POOL, "[INST] [/INST] <video></video> <feature></feature>",
             "The person in video says:", "Earlier in the conversation:", "[emotion] [reason]"]
    return " ".join(parts)


def normalize_caption(text: str, max_words: int = 200) -> str:
    """Upstream's ``blip_caption`` for reason answers: lower case, punctuation to spaces, at most 200 words."""
    text = re.sub(r"[.!\"()*#:;~]", " ", text.lower())
    return " ".join(text.split()[:max_words])


def choose_instruction(pool: Sequence[str], fixed: int | None, rng: random.Random | None) -> str:
    """A fixed pool entry, a random one (training), or the first (deterministic evaluation)."""
    if fixed is not None:
        if not 0 <= fixed < len(pool):
            raise ValueError(f"data.instruction={fixed} is outside the instruction pool (size {len(pool)})")
        return pool[fixed]
    return rng.choice(list(pool)) if rng is not None else pool[0]


@dataclass(frozen=True)
class Shot:
    """A labelled example shown before the question (few-shot prompting): what was said, and its answer."""

    transcript: str
    answer: str


SHOT_WORDS = (4, 12)
"""Few-shot examples are utterances of this many words: long enough to carry the emotion, short enough to be cheap."""


def pick_shots(samples: Sequence[Sample], label_set: LabelSet, count: int) -> list[Shot]:
    """Up to ``count`` examples, one per label in label order: of the samples with that primary label, the first
    by id whose transcript has ``SHOT_WORDS`` words (else the shortest). Deterministic for a given split."""
    shots = []
    for label in label_set.labels[:count]:
        pool = sorted((s for s in samples if s.label == label and s.text), key=lambda s: s.id)
        if not pool:
            continue
        fit = [s for s in pool if SHOT_WORDS[0] <= len(s.text.split()) <= SHOT_WORDS[1]]
        chosen = fit[0] if fit else min(pool, key=lambda s: len(s.text.split()))
        shots.append(Shot(chosen.text, label_set.format_answer([label])))
    return shots


@dataclass(frozen=True)
class EncodedPrompt:
    """A tokenised prompt: token ids and, per position, which modality slot (if any) it is."""
    ids: list[int]
    slots: list[int]
    """Per position: 0 for a text token, else the slot id (``modalities.SLOT_IDS``) of the embedding there."""


class PromptBuilder:
    """Writes and tokenises prompts: ``BOS [INST] <video>..</video> <feature>..</feature> says.. [task] ... [/INST]``."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, slot_tokens: dict[str, int], template: str,
                 use_chat_template: bool = False, max_prompt_tokens: int = 384, max_answer_tokens: int = 64,
                 system_prompt: str | None = None, shots: Sequence[Shot] = ()) -> None:
        self.tokenizer = tokenizer
        self.shots = tuple(shots)
        """Answered examples put before every ``emotion`` question as earlier turns (``data.few_shot``)."""
        self.system_prompt = system_prompt
        self.slot_tokens = dict(slot_tokens)
        self.template = template
        self.use_chat_template = use_chat_template
        self.max_prompt_tokens = max_prompt_tokens
        self.max_answer_tokens = max_answer_tokens
        if "{}" not in template and not use_chat_template:
            raise ValueError(f"prompt_template {template!r} must contain '{{}}' where the instruction goes")
        self._pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def instruction(self, task: str, instruction: str, slots: Sequence[str], transcript: str | None,
                    context: Sequence[str] = ()) -> str:
        """The user turn with placeholders, upstream's exact wording (double space included)."""
        head = ""
        for block, names in _BLOCKS.items():
            inner = "".join(_PLACEHOLDER[s] for s in names if s in slots)
            if inner:
                head += f"<{block}>{inner}</{block}> "
        said = ""
        if context:
            said += "Earlier in the conversation: " + " ".join(f'"{c}"' for c in context) + ". "
        if transcript is not None:
            said += f"The person in video says: {transcript}. "
        return f"{head}{said} [{task}] {instruction} "

    @classmethod
    def for_model(cls, tokenizer: PreTrainedTokenizerBase, slot_tokens: dict[str, int],
                  model_cfg: ModelConfig, shots: Sequence[Shot] = ()) -> PromptBuilder:
        """The builder ``model`` config describes (template or chat template, system turn, token budgets)."""
        llm = model_cfg.llm
        return cls(tokenizer, slot_tokens, llm.prompt_template, llm.use_chat_template, model_cfg.max_prompt_tokens,
                   model_cfg.max_answer_tokens, llm.system_prompt, shots)

    def wrap(self, instruction: str, history: Sequence[tuple[str, str]] = ()) -> str:
        """The user turn in the template (or chat template), after ``history``: earlier (user, answer) turns."""
        if self.use_chat_template:
            system = [] if self.system_prompt is None else [{"role": "system", "content": self.system_prompt}]
            earlier = [{"role": role, "content": text} for turn in history
                       for role, text in zip(("user", "assistant"), turn)]
            return self.tokenizer.apply_chat_template(
                [*system, *earlier, {"role": "user", "content": instruction}], tokenize=False,
                add_generation_prompt=True)
        return "".join(f"{self.template.format(u)} {a} " for u, a in history) + self.template.format(instruction)

    def encode(self, instruction: str, history: Sequence[tuple[str, str]] = ()) -> EncodedPrompt:
        """Tokenise the wrapped prompt; each placeholder becomes ``slot_tokens[slot]`` positions."""
        pieces = _PLACEHOLDER_RE.split(self.wrap(instruction, history))
        texts = [p for p in pieces if p and p not in _SLOT_OF]
        encoded = iter(self.tokenizer(texts, add_special_tokens=False)["input_ids"]) if texts else iter(())
        ids: list[int] = []
        slots: list[int] = []
        bos = self.tokenizer.bos_token_id
        if bos is not None and not self.use_chat_template:
            ids.append(bos)
            slots.append(0)
        for piece in pieces:
            if not piece:
                continue
            if piece in _SLOT_OF:
                name = _SLOT_OF[piece]
                n = self.slot_tokens[name]
                ids.extend([self._pad] * n)
                slots.extend([modalities.SLOT_IDS[name]] * n)
            else:
                tok = next(encoded)
                ids.extend(tok)
                slots.extend([0] * len(tok))
        return EncodedPrompt(ids, slots)

    def build(self, task: str, instruction: str, slots: Sequence[str], transcript: str | None,
              context: Sequence[str] = ()) -> EncodedPrompt:
        """Encode, dropping the oldest context turns and then transcript words until the text fits (few-shot
        examples, before an ``emotion`` question, count towards the budget and are kept whole)."""
        context = list(context)
        words = transcript.split() if transcript is not None else None
        history = [(self.instruction(task, instruction, (), shot.transcript), shot.answer)
                   for shot in (self.shots if task == "emotion" else ())]
        while True:
            said = " ".join(words) if words is not None else None
            enc = self.encode(self.instruction(task, instruction, slots, said, context), history)
            text_tokens = sum(1 for s in enc.slots if s == 0)
            if text_tokens <= self.max_prompt_tokens:
                return enc
            if context:
                context.pop(0)
            elif words:
                words = words[: max(0, len(words) - max(1, (text_tokens - self.max_prompt_tokens) // 2))]
            else:
                raise ValueError(
                    f"the instruction alone takes {text_tokens} tokens, more than model.max_prompt_tokens="
                    f"{self.max_prompt_tokens}")

    def encode_answer(self, answer: str) -> list[int]:
        """Answer tokens plus EOS: the training target and the candidates that ``score`` ranks.

        A longer answer (a long reason) keeps its first ``max_answer_tokens - 1`` tokens, then EOS, so training
        never learns answers longer than generation is allowed to produce.
        """
        ids = self.tokenizer(answer, add_special_tokens=False)["input_ids"][:self.max_answer_tokens - 1]
        return ids + [self.tokenizer.eos_token_id]
