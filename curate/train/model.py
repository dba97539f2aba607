"""A small single-stream multimodal transformer (UNITER/HERO-style) with one head per task.

One sequence per sample: [CLS], the caption's tokens, one token per image region (its
thumbnail and box), one token per clip frame (its thumbnail, at the slot it is shown in).
Type embeddings tell the streams apart; text and frames get slot positions, regions carry
their box. Heads: ITM and VSM (is this text the sample's own?) on [CLS]; MLM on text tokens
(tied to the token embedding); masked-region classification on region tokens; frame order
on frame tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["ModelConfig", "Tower"]


@dataclass(frozen=True)
class ModelConfig:
    vocab: int  # the corpus's own token ids (see loop._Vocab), mask and unknown included
    text_length: int
    region_dim: int
    frame_dim: int
    regions: int  # most regions per sample
    frames: int  # frames per clip (0: none)
    classes: int  # region codebook size
    width: int = 128
    layers: int = 2
    heads: int = 4
    dropout: float = 0.2


class Tower(nn.Module):
    """The transformer and its heads; `forward` returns every token's hidden state."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d = cfg.width
        self.cfg = cfg
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        self.token = nn.Embedding(cfg.vocab, d)
        self.text_pos = nn.Parameter(torch.zeros(1, cfg.text_length, d))
        self.region = nn.Linear(cfg.region_dim, d)
        self.region_geo = nn.Linear(5, d)
        self.region_mask = nn.Parameter(torch.zeros(1, 1, d))
        self.frame = nn.Linear(cfg.frame_dim, d)
        self.frame_pos = nn.Parameter(torch.zeros(1, max(cfg.frames, 1), d))
        self.kind = nn.Embedding(4, d)  # cls, text, region, frame
        layer = nn.TransformerEncoderLayer(
            d, cfg.heads, 2 * d, cfg.dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.itm = nn.Linear(d + 1, 2)
        self.vsm = nn.Linear(d + 1, 2)
        self.align = nn.Linear(d, d)
        self.mrc = nn.Linear(d, max(cfg.classes, 1))
        self.fom = nn.Linear(d, max(cfg.frames, 1))
        self.mlm_bias = nn.Parameter(torch.zeros(cfg.vocab))
        for p in (self.cls, self.text_pos, self.region_mask, self.frame_pos):
            nn.init.normal_(p, std=0.02)
        nn.init.normal_(self.token.weight, std=0.02)  # tied to the MLM head: keep logits small
        nn.init.normal_(self.kind.weight, std=0.02)

    def forward(
        self,
        text: torch.Tensor,  # (B, L) ids of the corpus vocabulary
        text_valid: torch.Tensor,  # (B, L) bool: start token to end token
        regions: torch.Tensor,  # (B, R, region_dim + 5)
        region_valid: torch.Tensor,  # (B, R) bool
        region_masked: torch.Tensor,  # (B, R) bool: content replaced by the mask token
        frames: torch.Tensor,  # (B, K, frame_dim)
    ) -> dict[str, torch.Tensor]:
        b = text.shape[0]
        parts = [self.cls.expand(b, -1, -1) + self.kind.weight[0]]
        pad = [torch.zeros(b, 1, dtype=torch.bool, device=text.device)]
        parts.append(self.token(text) + self.text_pos[:, : text.shape[1]] + self.kind.weight[1])
        pad.append(~text_valid)
        r = regions.shape[1]
        if r:
            content = self.region(regions[..., :-5])
            content = torch.where(region_masked[..., None], self.region_mask, content)
            parts.append(content + self.region_geo(regions[..., -5:]) + self.kind.weight[2])
            pad.append(~region_valid)
        k = frames.shape[1]
        if k:
            parts.append(self.frame(frames) + self.frame_pos[:, :k] + self.kind.weight[3])
            pad.append(torch.zeros(b, k, dtype=torch.bool, device=text.device))
        x = self.encoder(torch.cat(parts, 1), src_key_padding_mask=torch.cat(pad, 1))
        x = self.norm(x)
        length = text.shape[1]
        return {
            "cls": x[:, 0],
            "text": x[:, 1 : 1 + length],
            "regions": x[:, 1 + length : 1 + length + r],
            "frames": x[:, 1 + length + r :],
            "text_valid": text_valid,
            "visual": x[:, 1 + length :],
            "visual_valid": ~torch.cat(pad[2:], 1) if len(pad) > 2 else text_valid[:, :0],
        }

    def match(self, out: dict[str, torch.Tensor], head: str) -> torch.Tensor:
        """ITM / VSM logits from [CLS] and how well each word finds a picture token (the
        mean over words of the best cosine over regions and frames, FILIP-style): a direct
        path between a word and what it names, which a small corpus needs to learn it."""
        t = nn.functional.normalize(self.align(out["text"]), dim=-1)
        v = nn.functional.normalize(self.align(out["visual"]), dim=-1)
        sim = t @ v.transpose(1, 2)  # (B, L, V)
        sim = sim.masked_fill(~out["visual_valid"][:, None, :], -1.0)
        best = sim.max(-1).values if sim.shape[-1] else sim.sum(-1)
        valid = out["text_valid"].float()
        score = (best * valid).sum(1, keepdim=True) / valid.sum(1, keepdim=True).clamp(min=1)
        return getattr(self, head)(torch.cat([out["cls"], score], 1))

    def mlm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden @ self.token.weight.T + self.mlm_bias


def parameters(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())
