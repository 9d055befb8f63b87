"""Transformer blocks shared by the models: EnCodecMAE's ResiDual encoder and its pieces.

They follow the published EnCodecMAE code closely enough that its weights load (see
hear_codec/convert.py for the name and layout mapping):

* attention has no biases and runs through ``scaled_dot_product_attention``;
* one feed-forward block is shared by every layer of a stack;
* ResiDual normalisation keeps two streams per layer: ``x0`` (post-LN) and ``x1`` (the plain
  residual sum); the stack's output is ``x0_L + final_norm(x1_L)``.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class SelfAttention(nn.Module):
    """Bias-free multi-head self-attention. Channels are head-major: channel c is in head c // head_dim.

    Heads are ``dim // num_heads`` wide, as in the official code, so when ``num_heads`` does not
    divide ``dim`` the attention works in fewer channels (the published large model: 1024
    channels, 12 heads of 85 = 1020); the scale is head_dim ** -0.5.
    """

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        inner = self.head_dim * num_heads
        self.wq = nn.Linear(dim, inner, bias=False)
        self.wk = nn.Linear(dim, inner, bias=False)
        self.wv = nn.Linear(dim, inner, bias=False)
        self.wo = nn.Linear(inner, dim, bias=False)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: [batch, time, dim]; attn_mask: [batch, 1, 1, time] bool, True where a key may be attended."""
        b, t, _ = x.shape
        h, hd = self.num_heads, self.head_dim

        def heads(proj):
            return proj(x).view(b, t, h, hd).transpose(1, 2)  # [batch, heads, time, head_dim]

        out = F.scaled_dot_product_attention(heads(self.wq), heads(self.wk), heads(self.wv), attn_mask=attn_mask)
        return self.wo(out.transpose(1, 2).reshape(b, t, h * hd))


class FeedForward(nn.Sequential):
    """Linear -> ReLU -> Linear. Indices 0 and 2 match the published ``ff_layer.{0,2}`` names."""

    def __init__(self, dim: int, hidden: int):
        super().__init__(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))


class ResiDualLayer(nn.Module):
    """One ResiDual layer; the feed-forward block is owned by the stack and passed in."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.attention = SelfAttention(dim, num_heads)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x0, x1, ffn: nn.Module, attn_mask=None):
        a = self.attention(x0, attn_mask)
        x0 = self.norm1(x0 + a)
        x1 = x1 + a
        f = ffn(x0)
        return self.norm2(x0 + f), x1 + f


class ResiDualTransformer(nn.Module):
    """A stack of ResiDual layers sharing one feed-forward block.

    forward: x [batch, time, dim], padding_mask [batch, time] bool (True = padding) ->
    out [batch, time, dim] and, with ``return_layers``, the per-layer x0 streams as a list of
    [batch, time, dim] (what EnCodecMAE exposes as layer activations) plus the final x1.
    """

    def __init__(self, dim: int, num_layers: int, num_heads: int, ff_dim: int):
        super().__init__()
        self.ffn = FeedForward(dim, ff_dim)
        self.layers = nn.ModuleList(ResiDualLayer(dim, num_heads) for _ in range(num_layers))
        self.final_norm = nn.LayerNorm(dim)

    def streams(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None, num_layers: int | None = None):
        """Run the first ``num_layers`` layers (default: all), and no more: an embedding of an
        early layer needs none of the later ones. Returns (the x0 stream after each layer run,
        a list of [batch, time, dim]; the x1 stream after the last layer run)."""
        attn_mask = None if padding_mask is None else ~padding_mask[:, None, None, :]
        x0 = x1 = x
        x0_streams = []
        for layer in self.layers[:num_layers]:
            x0, x1 = layer(x0, x1, self.ffn, attn_mask)
            x0_streams.append(x0)
        return x0_streams, x1

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None, return_layers: bool = False):
        x0_streams, x1 = self.streams(x, padding_mask)
        out = x0_streams[-1] + self.final_norm(x1)
        if return_layers:
            return out, x0_streams, x1
        return out


def sinusoidal_table(length: int, dim: int, device=None) -> torch.Tensor:
    """[length, dim]: sin on even channels, cos on odd, frequencies 10000^(-2i/dim)."""
    position = torch.arange(length, dtype=torch.float32, device=device).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim, device=device)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq[: dim // 2])
    return table


class ScaledSinusoidalPosition(nn.Module):
    """Adds ``scale * sinusoidal_table`` to [batch, time, dim]; ``scale`` is learnable (init 1)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.scale = nn.Parameter(torch.tensor(1.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.scale * sinusoidal_table(x.shape[1], self.dim, x.device).to(x.dtype)
