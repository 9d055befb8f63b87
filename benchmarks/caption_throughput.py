"""EnCLAP captioning throughput: captions per second, batched vs one clip at a time.

    python benchmarks/caption_throughput.py                       # BART-base shape, 10 s clips
    python benchmarks/caption_throughput.py --model tiny --clips 16

Uses random weights with the real architecture (no download): decoding cost depends on the
number of generated tokens, so every caption is decoded to exactly ``--tokens`` tokens (EOS
suppressed), about the length of a real caption, instead of whatever a random model would emit.
Beam search as in EnCLAP (beam 4, no repeated 3-gram). Codec and CLAP are not included: captioning
starts from cached codes, as ``evaluate``/``predict --cache`` do.
"""
from __future__ import annotations

import argparse
import time

import torch

from training.enclap.data import EnClapCollator
from training.enclap.model import EnClapBartConfig, EnClapBartForConditionalGeneration, beam_search_config, tiny_config
from machine import describe_machine  # noqa: E402  (benchmarks/machine.py)

# BART-base / BART-large shapes (facebook/bart-*), vocabulary of the BART tokenizer.
SHAPES = {
    "base": dict(d_model=768, encoder_layers=6, decoder_layers=6, encoder_attention_heads=12,
                 decoder_attention_heads=12, encoder_ffn_dim=3072, decoder_ffn_dim=3072),
    "large": dict(d_model=1024, encoder_layers=12, decoder_layers=12, encoder_attention_heads=16,
                  decoder_attention_heads=16, encoder_ffn_dim=4096, decoder_ffn_dim=4096),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=("tiny", "base", "large"), default="base", help="(default: %(default)s)")
    p.add_argument("--clips", type=int, default=8, help="clips to caption (default: %(default)s)")
    p.add_argument("--seconds", type=float, default=10.0, help="clip length (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=8, help="clips per batch in batched mode (default: %(default)s)")
    p.add_argument("--tokens", type=int, default=16, help="caption tokens decoded per clip (default: %(default)s)")
    p.add_argument("--beams", type=int, default=4, help="(default: %(default)s)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="(default: %(default)s)")
    args = p.parse_args()

    torch.manual_seed(0)
    if args.model == "tiny":
        config = tiny_config(1000)
    else:
        config = EnClapBartConfig(vocab_size=50265, forced_bos_token_id=0, forced_eos_token_id=2, **SHAPES[args.model])
    model = EnClapBartForConditionalGeneration(config).to(args.device).eval()
    frames = int(args.seconds * 75)
    items = [{"id": str(i), "codes": torch.randint(0, 1024, (frames, 16)), "clap": torch.randn(512)}
             for i in range(args.clips)]
    collate = EnClapCollator(config)
    generation = beam_search_config(config, num_beams=args.beams, max_length=args.tokens + 1)
    generation.min_length = args.tokens + 1  # fixed caption length (see the module docstring)

    def run(batch_size: int) -> float:
        start = time.perf_counter()
        for i in range(0, len(items), batch_size):
            batch = collate(items[i : i + batch_size])
            inputs = {k: batch[k].to(args.device) for k in ("input_ids", "clap_embedding", "encodec_mask", "attention_mask")}
            model.caption_ids(**inputs, generation=generation)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return len(items) / (time.perf_counter() - start)

    with torch.autocast(args.device.split(":")[0], dtype=torch.bfloat16, enabled=args.device.startswith("cuda")):
        run(args.batch_size)  # warm-up
        batched = run(args.batch_size)
        single = run(1)
    print(f"machine: {describe_machine(args.device)}")
    print(f"model: EnCLAP {args.model} (random weights), {args.seconds:g} s clips, beam {args.beams}, "
          f"{args.tokens} tokens per caption, {args.clips} clips")
    print(f"batched (batch {args.batch_size}): {batched:.2f} captions/s")
    print(f"one at a time:       {single:.2f} captions/s")
    print(f"speed-up: {batched / single:.1f}x")


if __name__ == "__main__":
    main()
