"""Short text prompts for lesson 08: a fixed word vocabulary, a tokenizer, and a tiny text encoder that is
trained together with the diffusion model (as Stable Diffusion's U-Net is trained against CLIP's text encoder,
here both are learned from scratch).

A prompt such as "a thick tilted seven" becomes ``TEXT_LENGTH`` token ids, padded with ``PAD`` (0). The id
``NO_LABEL`` (-1) in every position means "no prompt": the unconditional model that classifier-free guidance
needs, exactly as for class labels. This module imports only torch.
"""

from __future__ import annotations

import torch
from torch import nn

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
ATTRIBUTE_WORDS = ("thin", "thick", "small", "large", "upright", "tilted")
VOCABULARY = ("<pad>", "a", *ATTRIBUTE_WORDS, *DIGIT_WORDS)  # token id = position; 0 is padding
PAD = 0
TEXT_LENGTH = 6  # "a thick small tilted seven" is 5 words; one spare


def tokenize(prompts: str | list[str], length: int = TEXT_LENGTH) -> torch.Tensor:
    """Prompts -> (B, length) int64 token ids, padded with PAD. Unknown words raise, naming the vocabulary."""
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    ids = torch.full((len(prompts), length), PAD, dtype=torch.long)
    for row, prompt in enumerate(prompts):
        words = prompt.lower().split()
        unknown = [w for w in words if w not in VOCABULARY[1:]]
        if unknown:
            raise ValueError(
                f"prompt {prompt!r}: unknown word(s) {unknown}; this tiny model knows only: {' '.join(VOCABULARY[1:])}"
            )
        if len(words) > length:
            raise ValueError(f"prompt {prompt!r} has {len(words)} words; at most {length} fit")
        ids[row, : len(words)] = torch.tensor([VOCABULARY.index(w) for w in words], dtype=torch.long)
    return ids


def detokenize(ids: torch.Tensor) -> list[str]:
    """(B, L) token ids -> prompts (padding dropped; a row of NO_LABEL reads as the empty prompt)."""
    return [
        " ".join(VOCABULARY[i] for i in row.tolist() if i > PAD) for row in torch.as_tensor(ids).reshape(len(ids), -1)
    ]


class TextEncoder(nn.Module):
    """Token ids (B, L) -> one vector (B, dim): word + position embeddings, one transformer layer, mean over the
    words that are not padding. A row of NO_LABEL (-1) ids gives a learned "no prompt" vector instead."""

    def __init__(self, dim: int, vocab_size: int = len(VOCABULARY), length: int = TEXT_LENGTH, heads: int = 4):
        super().__init__()
        self.length = length
        self.words = nn.Embedding(vocab_size, dim, padding_idx=PAD)
        self.positions = nn.Parameter(torch.zeros(length, dim))
        self.layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=2 * dim, dropout=0.0, batch_first=True)
        self.no_prompt = nn.Parameter(torch.zeros(dim))
        self.out = nn.Linear(dim, dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        ids = ids.long()
        unconditional = (ids < 0).all(dim=1)  # (B,): every position NO_LABEL
        tokens = ids.clamp(min=PAD)
        pad = tokens == PAD  # (B, L)
        h = self.words(tokens) + self.positions  # (B, L, dim)
        h = self.layer(h, src_key_padding_mask=pad & ~pad.all(dim=1, keepdim=True))  # keep one key if all pad
        keep = (~pad).float().unsqueeze(-1)  # (B, L, 1)
        pooled = (h * keep).sum(1) / keep.sum(1).clamp(min=1)  # mean over real words: (B, dim)
        pooled = torch.where(unconditional.unsqueeze(-1), self.no_prompt.expand_as(pooled), pooled)
        return self.out(pooled)
