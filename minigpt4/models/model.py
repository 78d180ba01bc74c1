"""EmotionLLaMA: frozen frame encoder + per-modality projectors + a Hugging Face causal LM with LoRA.

The collator already placed ``n`` slot positions per modality in ``input_ids`` (see ``prompts.PromptBuilder``);
the model embeds the text, projects every modality once for the whole batch and writes each into its slot
positions with one ``masked_scatter``. No per-sample Python runs in ``forward``.

The ``text`` slot reads cached sentence embeddings, or a trainable MiniLM (``text_encoder``) run on the
batch's tokenised transcript. With ``model.head: classifier`` there is no LLM: the projected modality tokens
are pooled into a ``ClassifierHead``.
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from transformers.modeling_outputs import (
    CausalLMOutputWithPast,
    SequenceClassifierOutput,
)

from minigpt4.data.batch import Batch
from minigpt4.modalities import REGISTRY, SLOT_IDS
from minigpt4.models.classifier import ClassifierHead
from minigpt4.models.projectors import FeatureNorm, make_projector
from minigpt4.models.text_encoder import TextEncoder
from minigpt4.models.vision import FrameEncoder
from minigpt4.runtime.errors import CheckpointError


class SlotCountError(ValueError):
    """The prompt holds a different number of slot positions than the modality produced tokens."""


def answer_logits_to_keep(labels: torch.Tensor) -> int:
    """How many trailing positions need logits: from just before the earliest answer token to the end.

    The LM head over the whole prompt (hundreds of image tokens with real backbones) would be wasted work.
    """
    first = int((labels != -100).float().argmax(dim=1).min())
    return labels.shape[1] - first + 1 if first > 0 else labels.shape[1]


class EmotionLLaMA(nn.Module):
    """The multimodal model: frozen frame encoder + one projector per modality, fused into an LLM's embeddings.

    Exactly one of two heads answers. With ``llm`` (``model.head: lm``), a Hugging Face causal LM (LoRA via
    peft) reads the prompt with each modality's projected tokens in its slot positions, and answers by
    :meth:`generate` or :meth:`score`. With ``head`` (``model.head: classifier``) there is no LLM at all: the
    fused modality tokens are mean-pooled into a :class:`ClassifierHead` (:meth:`classify`). Inputs are a
    :class:`~minigpt4.data.batch.Batch`.
    """

    def __init__(self, llm: PreTrainedModel | None, tokenizer: PreTrainedTokenizerBase, vision: FrameEncoder | None,
                 feature_dims: Mapping[str, int], feature_tokens: Mapping[str, int],
                 projector_kinds: Mapping[str, str], projector_hidden: int = 0,
                 text_encoder: TextEncoder | None = None, head: ClassifierHead | None = None,
                 width: int = 0) -> None:
        super().__init__()
        if (llm is None) == (head is None):
            raise ValueError("EmotionLLaMA needs exactly one of an LLM (head lm) and a classifier head")
        self.llm = llm
        self.tokenizer = tokenizer
        self.vision = vision
        self.text_encoder = text_encoder
        self.head = head
        width = llm.get_input_embeddings().embedding_dim if llm is not None else width
        projectors: dict[str, nn.Module] = {}
        self.frame_slots: dict[str, tuple[int, int]] = {}
        """Slots the frame encoder fills: name -> (input width, tokens), by registry source."""
        if vision is not None:
            shapes = {"frame": (vision.width * vision.merge, vision.tokens), "frame-cls": (vision.width, 1)}
            self.frame_slots = {m.name: shapes[m.source] for m in REGISTRY if m.source in shapes}
            for name, (in_dim, _) in self.frame_slots.items():
                projectors[name] = nn.Linear(in_dim, width)
        for name, dim in feature_dims.items():
            projectors[name] = make_projector(projector_kinds[name], dim, width, projector_hidden)
        self.projectors = nn.ModuleDict(projectors)
        self.feature_norm = nn.ModuleDict({name: FeatureNorm(dim) for name, dim in feature_dims.items()})
        self.feature_tokens = dict(feature_tokens)

    @property
    def slot_tokens(self) -> dict[str, int]:
        """How many LLM positions each slot occupies (what the prompt builder expands placeholders to)."""
        out = dict(self.feature_tokens)
        out.update({name: tokens for name, (_, tokens) in self.frame_slots.items()})
        return out

    @property
    def device(self) -> torch.device:
        return next(self.projectors.parameters()).device

    def modality_tokens(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Project every modality present in the batch: slot -> [b, tokens, width]."""
        out: dict[str, torch.Tensor] = {}
        image = batch.get("image")
        if image is not None and self.vision is not None:
            patches, cls = self.vision(image.to(self.device, next(self.vision.parameters()).dtype))
            encoded = {"frame": patches, "frame-cls": cls}
            for m in REGISTRY:
                if m.name in self.frame_slots:
                    proj = self.projectors[m.name]
                    out[m.name] = proj(encoded[m.source].to(proj.weight.dtype))
        for name, feats in batch.get("features", {}).items():
            proj = self.projectors[name]
            out[name] = proj(self.feature_norm[name](feats.to(self.device, next(proj.parameters()).dtype)))
        text = batch.get("text_input")
        if text is not None:
            if self.text_encoder is None:
                raise ValueError("the batch carries text-encoder input but model.text_encoder.enabled is false")
            feats = self.text_encoder(**{k: v.to(self.device) for k, v in text.items()})
            out["text"] = self.projectors["text"](feats.to(next(self.projectors["text"].parameters()).dtype))
        return out

    def embed(self, batch: Batch) -> torch.Tensor:
        """Text embeddings with every slot span replaced by its modality tokens: [b, s, width]."""
        input_ids = batch["input_ids"].to(self.device)
        slots = batch["slots"].to(self.device)
        embeds = self.llm.get_input_embeddings()(input_ids)
        tokens = self.modality_tokens(batch)
        for name, slot_id in SLOT_IDS.items():
            mask = slots == slot_id
            if name not in tokens:
                if bool(mask.any()):
                    raise SlotCountError(f"the prompt has {name} positions but the batch carries no {name} input")
                continue
            feats = tokens[name]
            per_sample = mask.sum(dim=1)
            if bool((per_sample != feats.shape[1]).any()):
                raise SlotCountError(
                    f"{name}: the prompt holds {per_sample.tolist()} placeholder positions per sample but the "
                    f"modality produced {feats.shape[1]} tokens per sample")
            embeds = embeds.masked_scatter(mask.unsqueeze(-1), feats.to(embeds.dtype))
        return embeds

    def forward(self, batch: Batch) -> CausalLMOutputWithPast | SequenceClassifierOutput:
        """Causal-LM loss on answer tokens only (labels are -100 elsewhere), optionally weighted per sample;
        with a classifier head, its loss on the pooled modality tokens."""
        if self.head is not None:
            logits = self.classifier_logits(batch)
            weight = batch.get("weight")
            loss = self.head.loss(logits, batch["targets"].to(self.device),
                                  None if weight is None else weight.to(self.device, torch.float32))
            return SequenceClassifierOutput(loss=loss, logits=logits)
        embeds = self.embed(batch)
        mask = batch["attention_mask"].to(self.device)
        labels = batch["labels"].to(self.device)
        keep = answer_logits_to_keep(labels)
        out = self.llm(inputs_embeds=embeds, attention_mask=mask, use_cache=False, logits_to_keep=keep)
        logits = out.logits[:, :-1].float()
        target = labels[:, labels.shape[1] - keep + 1:]
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100,
                             reduction="none").view_as(target)
        weight = (target != -100).float()
        if batch.get("weight") is not None:
            weight = weight * batch["weight"].to(self.device, torch.float32).unsqueeze(1)
        loss = (ce * weight).sum() / weight.sum().clamp(min=1e-8)
        return CausalLMOutputWithPast(loss=loss, logits=out.logits)

    def classifier_logits(self, batch: Batch) -> torch.Tensor:
        """``[b, labels]``: every modality's projected tokens, in slot order, pooled by the head."""
        tokens = self.modality_tokens(batch)
        if not tokens:
            raise ValueError("the classifier head got a batch without any modality input")
        return self.head(torch.cat([tokens[name] for name in SLOT_IDS if name in tokens], dim=1))

    @torch.no_grad()
    def classify(self, batch: Batch) -> torch.Tensor:
        """Label probabilities ``[b, labels]`` (softmax, or per-class sigmoid for multi-label)."""
        return self.head.probabilities(self.classifier_logits(batch))

    @torch.no_grad()
    def generate(self, batch: Batch, max_new_tokens: int = 16) -> list[str]:
        """Greedy answers for a left-padded prompt batch, with KV cache, stopping at EOS; one string each."""
        embeds = self.embed(batch)
        mask = batch["attention_mask"].to(self.device)
        out = self.llm.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=max_new_tokens,
                                do_sample=False, eos_token_id=self.tokenizer.eos_token_id,
                                pad_token_id=self.tokenizer.pad_token_id, use_cache=True)
        return [t.strip() for t in self.tokenizer.batch_decode(out, skip_special_tokens=True)]

    @torch.no_grad()
    def score(self, batch: Batch, candidates: list[list[int]]) -> torch.Tensor:
        """Log-likelihood of each candidate answer (token ids incl. EOS) after each prompt: [b, c].

        The prompt runs once; its KV cache is repeated per candidate and all candidates run in one forward.
        """
        embeds = self.embed(batch)
        mask = batch["attention_mask"].to(self.device)
        b, c = embeds.shape[0], len(candidates)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self.llm(inputs_embeds=embeds, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1)
        first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)
        length = max(len(x) for x in candidates)
        cand = torch.full((c, length), self.tokenizer.pad_token_id, dtype=torch.long, device=self.device)
        cand_mask = torch.zeros((c, length), dtype=torch.long, device=self.device)
        for j, ids in enumerate(candidates):
            cand[j, : len(ids)] = torch.tensor(ids, device=self.device)
            cand_mask[j, : len(ids)] = 1
        total = first[:, cand[:, 0]]
        if length > 1:
            cache = out.past_key_values
            cache.batch_repeat_interleave(c)
            ids = cand[:, :-1].repeat(b, 1)
            full_mask = torch.cat([mask.repeat_interleave(c, 0), cand_mask[:, :-1].repeat(b, 1)], dim=1)
            step_pos = pos[:, -1:].repeat_interleave(c, 0) + 1 + torch.arange(length - 1, device=self.device)
            rest = self.llm(input_ids=ids, attention_mask=full_mask, position_ids=step_pos, past_key_values=cache,
                            use_cache=False).logits.float().log_softmax(-1)
            target = cand[:, 1:].repeat(b, 1)
            picked = rest.gather(-1, target.unsqueeze(-1)).squeeze(-1) * cand_mask[:, 1:].repeat(b, 1)
            total = total + picked.sum(-1).view(b, c)
        return total

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """What a checkpoint holds: projectors, LoRA adapters (LLM and text encoder), unfrozen encoder layers,
        the feature statistics, the classifier head and its tuned thresholds (the frozen backbones are never
        saved)."""
        state = {n: p.detach() for n, p in self.named_parameters() if p.requires_grad}
        state.update({n: b.detach() for n, b in self.named_buffers() if n.startswith("feature_norm.")})
        if self.head is not None:
            state["head.thresholds"] = self.head.thresholds.detach()
        return state

    def load_trainable_state_dict(self, state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
        """Load trainable weights after checking coverage: no expected key missing, no stray key."""
        expected = set(self.trainable_state_dict())
        missing = sorted(expected - set(state))
        stray = sorted(set(state) - expected)
        if missing or stray:
            raise CheckpointError(f"{source}: trainable weights do not match the model; missing: "
                                  f"{missing or 'none'}; unexpected: {stray or 'none'}")
        self.copy_parameters(state, source)

    def copy_parameters(self, state: Mapping[str, torch.Tensor], source: str) -> None:
        """Copy named tensors into parameters and buffers (feature statistics, head thresholds), checking every
        shape and kind of dtype (coverage is the caller's check): ``copy_`` would silently turn integers into
        weights, or truncate floats into an integer buffer."""
        params = {**dict(self.named_parameters()), **dict(self.named_buffers())}
        with torch.no_grad():
            for name, value in state.items():
                if params[name].shape != value.shape:
                    raise CheckpointError(f"{source}: {name} has shape {tuple(value.shape)}, the model expects "
                                          f"{tuple(params[name].shape)}")
                if params[name].is_floating_point() != value.is_floating_point() or value.dtype == torch.bool:
                    raise CheckpointError(f"{source}: {name} holds {value.dtype}, the model expects "
                                          f"{params[name].dtype} (a tensor of another kind: wrong file or key?)")
                params[name].copy_(value)

    def trainable_summary(self) -> str:
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        total = sum(p.numel() for p in self.parameters())
        return f"trainable parameters: {trainable:,} of {total:,} ({100 * trainable / total:.2f}%)"
