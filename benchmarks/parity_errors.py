"""How close our EnCodecMAE is to the official code: the errors behind tests/test_parity_encodecmae.py.

    python benchmarks/parity_errors.py        # needs ../shared/fixtures (or HEAR_CODEC_FIXTURES)

For each reference model of ``encodecmae_official`` (random-weight "mel256-ec" and "ec-ec", D=64,
2 encoder + 1 decoder layers; see that folder's README) it loads the official weights into our
model, runs the same inputs and prints, for every tensor the parity tests compare, the largest
absolute difference and the relative error ``max |ours - official| / max |official|`` (the
tests require < 1e-4; the mel features have their own elementwise bound, tests/conftest.py).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from machine import describe_machine  # noqa: E402  (benchmarks/machine.py)

from hear_codec.convert import config_from_gin, convert_state_dict
from hear_codec.encodecmae import EncodecMAE

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("HEAR_CODEC_FIXTURES") or REPO.parent / "shared" / "fixtures") / "encodecmae_official"


@torch.no_grad()
def compared_tensors(name: str, encoder_state: dict) -> dict:
    """{what: (ours, official)} for one reference model."""
    ref = torch.load(FIXTURES / f"{name}.pt", weights_only=True)
    config = config_from_gin(ref["config"]["gin_text"])
    state = convert_state_dict(ref["state_dict"], config)
    if config.front_end == "ec":
        state.update({"front_end.encoder." + k: v for k, v in encoder_state.items()})
    model = EncodecMAE(config)
    model.load_state_dict(state, strict=True)
    model.eval()
    wav = ref["waveform"]
    features = model.input_features(wav)
    _, x0, x1 = model.encoder(model.position(model.input_proj(features)), return_layers=True)
    out = model(wav)
    train = model(ref["train_waveform"], mask=ref["train_non_visible_mask"])
    return {
        "input features": (features, ref["input_features"]),
        "projected features": (model.input_proj(features), ref["projected_features"]),
        "encoder output, every layer": (torch.stack(model.embed_layers(wav)), ref["encoder_activations"]),
        "x0 streams, every layer": (torch.stack(x0), ref["encoder_activations_branch0_no_postnorm"]),
        "x1 stream, last layer": (x1, ref["encoder_activations_branch1_no_postnorm"][-1]),
        "decoder input": (out["decoder_in"], ref["decoder_in"]),
        "decoder output": (out["decoder_out"], ref["decoder_out"]),
        "logits": (out["logits"], ref["eval_logits"]),
        "masked training: encoder output": (train["encoder_out"], ref["train_visible_embeddings"]),
        "masked training: decoder output": (train["decoder_out"], ref["train_decoder_out"]),
    }


def main() -> None:
    if not FIXTURES.is_dir():
        raise SystemExit(f"reference data not found at {FIXTURES} (set HEAR_CODEC_FIXTURES)")
    shared = torch.load(FIXTURES / "encodec_random_shared.pt", weights_only=True)
    encoder_state = {k: v.float() for k, v in shared["encoder_state_dict_fp16"].items()}
    print(f"machine: {describe_machine('cpu')}\n")
    print("| model | tensor | shape | max abs difference | max abs official | relative error |")
    print("|---|---|---|---|---|---|")
    for name in ("mel_small", "ec_small"):
        for what, (ours, official) in compared_tensors(name, encoder_state).items():
            diff = (ours.float() - official.float()).abs().max().item()
            scale = official.float().abs().max().item()
            print(f"| {name} | {what} | {list(official.shape)} | {diff:.2g} | {scale:.3g} | {diff / scale:.2g} |")


if __name__ == "__main__":
    main()
