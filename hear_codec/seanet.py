"""EnCodec's SEANet encoder run on CPU in channels-last layout, each padding written once.

The same layers and weights as ``encodec``'s own ``SEANetEncoder.forward``, computed another way,
because on a CPU that forward spends most of its time moving memory rather than multiplying:

* Its activations are channels-first [batch, channels, time], a layout oneDNN's convolutions are
  slow on: the 1x1 and strided convolutions at 48-12 kHz ran 2-8x slower than on the same data
  channels-last (docs/embedding.md, "The ec front end").
* Every ``SConv1d`` pads its input with ``F.pad`` (reflect), a full copy of the activation even
  when the padding is zero (the 1x1 convolutions), and most of them follow an ELU, another full
  pass: 19 % and 12 % of the encoder's time (torch profiler, 16 x 4 s chunks).

Here activations are kept as [batch, time, channels]; each convolution runs as a 2-d convolution
over a channels-last [batch, channels, 1, time] view of them, so oneDNN reads and writes them in
place; an ELU before a convolution writes straight into the padded buffer the convolution reads;
only the few reflected samples at the edges are copied. The first convolution (one input
channel, where oneDNN is slowest) is a matrix product over the input's sliding windows.

The result equals the module's own forward up to float32 rounding (another summation order:
max |difference| 3e-7 on features of max 0.1, tests/test_seanet.py); EnCodec's codes can then
differ only where two codewords are equally near (the parity tests allow such ties).
Weights are read from the modules at every call (weight norm included), so a state dict loaded
into the encoder is always what runs.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.weight_norm import WeightNorm

__all__ = ["encode"]


def encode(encoder: nn.Module, wav: torch.Tensor, micro_batch: int) -> torch.Tensor:
    """encodec's SEANetEncoder over a batch: [batch, samples] -> [batch, frames, dim].

    The layers before the LSTM run on ``micro_batch`` items at a time (their activations at
    24 kHz are wide: small batches keep them in cache), the LSTM and the rest on the whole batch
    (an LSTM step costs the same for 1 item or 16: it reads its weights)."""
    layers = list(encoder.model)
    split = next((i for i, layer in enumerate(layers) if type(layer).__name__ == "SLSTM"), len(layers))
    x = wav.unsqueeze(-1)  # [B, S, 1]: time-major
    hidden = torch.cat([_run(layers[:split], x[i:i + micro_batch]) for i in range(0, len(x), micro_batch)])
    return _run(layers[split:], hidden).contiguous()


def _run(layers: list, x: torch.Tensor) -> torch.Tensor:
    """Apply a list of SEANet layers to time-major activations [B, T, C]."""
    i = 0
    while i < len(layers):
        layer, name = layers[i], type(layers[i]).__name__
        if name == "ELU" and i + 1 < len(layers) and type(layers[i + 1]).__name__ == "SConv1d":
            x = _conv(layers[i + 1], x, elu_alpha=layer.alpha)  # the ELU fused into the padding
            i += 2
            continue
        if name == "SConv1d":
            x = _conv(layer, x)
        elif name == "SEANetResnetBlock":
            shortcut = layer.shortcut
            skip = _conv(shortcut, x) if type(shortcut).__name__ == "SConv1d" else _channels_first(shortcut, x)
            x = skip + _run(list(layer.block), x)
        elif name == "SLSTM":
            y, _ = layer.lstm(x.transpose(0, 1))  # [T, B, C], as SLSTM feeds it
            x = (y + x.transpose(0, 1) if layer.skip else y).transpose(0, 1)
        else:
            x = _channels_first(layer, x)
        i += 1
    return x


def _channels_first(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A layer this module does not know, run as encodec runs it: on [B, C, T]."""
    return layer(x.transpose(1, 2)).transpose(1, 2)


def _conv(sconv: nn.Module, x: torch.Tensor, elu_alpha: float | None = None) -> torch.Tensor:
    """encodec's SConv1d (optionally after an ELU) on time-major [B, T, C_in] -> [B, T', C_out].

    SConv1d pads (kernel - 1) * dilation - (stride - 1) samples by reflection (on the left when
    causal, split otherwise), plus, on the right, what makes the last window full."""
    from encodec.modules.conv import get_extra_padding_for_conv1d  # imported already: sconv is encodec's

    conv = sconv.conv.conv  # SConv1d -> NormConv1d -> nn.Conv1d
    (kernel,), (stride,), (dilation,) = conv.kernel_size, conv.stride, conv.dilation
    total = (kernel - 1) * dilation - (stride - 1)
    extra = get_extra_padding_for_conv1d(x.transpose(1, 2), kernel, stride, total)
    left, right = (total, extra) if sconv.causal else (total - total // 2, total // 2 + extra)
    if (sconv.pad_mode != "reflect" or not isinstance(sconv.conv.norm, nn.Identity)
            or x.shape[1] <= max(left, right)):  # encodec zero-pads such short inputs before reflecting
        return _channels_first(sconv, _elu(x, elu_alpha))
    padded = _padded(x, left, right, elu_alpha)  # [B, left + T + right, C_in]
    weight = _weight(conv)  # [C_out, C_in, kernel]
    if conv.in_channels == 1 and dilation == 1:  # a matrix product over the sliding windows
        windows = padded.squeeze(-1).unfold(1, kernel, stride)  # [B, T', kernel]
        return F.linear(windows, weight.squeeze(1), conv.bias)
    out = F.conv2d(padded.transpose(1, 2).unsqueeze(2), weight.unsqueeze(2), conv.bias,
                   stride=(1, stride), dilation=(1, dilation))  # channels-last [B, C_out, 1, T']
    return out.squeeze(2).transpose(1, 2)


def _padded(x: torch.Tensor, left: int, right: int, elu_alpha: float | None) -> torch.Tensor:
    """[B, T, C] -> [B, left + T + right, C]: (ELU of) x with reflected edges, written once."""
    if left == right == 0:
        return _elu(x, elu_alpha)
    b, t, c = x.shape
    out = x.new_empty(b, left + t + right, c)
    body = out[:, left:left + t]
    if elu_alpha is not None:  # F.elu has no out=; this is the op it calls (alpha, scale, input_scale)
        torch._C._nn.elu(x, elu_alpha, 1.0, 1.0, out=body)
    else:
        body.copy_(x)
    if left:
        out[:, :left] = out[:, left + 1:2 * left + 1].flip(1)
    if right:
        out[:, left + t:] = out[:, left + t - right - 1:left + t - 1].flip(1)
    return out


def _elu(x: torch.Tensor, alpha: float | None) -> torch.Tensor:
    return x if alpha is None else F.elu(x, alpha)


def _weight(conv: nn.Conv1d) -> torch.Tensor:
    """The convolution's weight as its forward would use it: weight norm applied if present."""
    for hook in conv._forward_pre_hooks.values():
        if isinstance(hook, WeightNorm):
            return hook.compute_weight(conv)
    return conv.weight
