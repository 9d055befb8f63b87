"""Every model family on an accelerator: each test runs on ``cpu`` everywhere and on ``cuda``
(marker ``cuda``: skipped without a GPU; ``benchmarks/gpu_check.sh`` runs them with ``-m cuda``).

On the device each computation runs as users run it there (bf16 autocast on a GPU, the HEAR API's
``precision="auto"``) and is compared with the same computation in fp32 on the CPU: the bounds are
those of bf16 rounding on tiny random models, far below what a wrong kernel, a lost mask or a
tensor left on the wrong device gives.
"""
import copy

import pytest
import torch

import hear_codec
from conftest import noise
from hear_codec import audioformer as af
from hear_codec import encodecmae as emae
from hear_codec.codec import load_codec

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


def autocast(device: str):
    """What Lightning's default precision on ``device`` does: bf16 autocast on a GPU, fp32 on CPU."""
    return torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda")


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of the last dimension's vectors, in fp64 on the CPU."""
    return torch.nn.functional.cosine_similarity(a.detach().double().cpu(), b.detach().double().cpu(), dim=-1)


@pytest.fixture(scope="module")
def offline_codec():
    return load_codec("offline", seed=0)


@pytest.fixture(scope="module", params=["mel256", "ec"])
def tiny_hear_model(request):
    """(front end, a tiny random-weight EnCodecMAE through the HEAR API, fp32 on the CPU)."""
    return request.param, hear_codec.load_model(random_weights=f"encodecmae-tiny-{request.param}", precision="fp32")


@pytest.mark.parametrize("device", DEVICES)
def test_hear_api(device, tiny_hear_model):
    """Scene and timestamp embeddings of clips longer than a chunk (so chunks are stitched)."""
    front_end, reference = tiny_hear_model
    model = copy.deepcopy(reference).to(device)
    model.precision = "auto"
    if device == "cuda":
        assert model.resolved_precision == "bf16"  # every GPU this check targets has native bf16
    audio = noise(2, 2.5, 48000)
    emb, ts = hear_codec.get_timestamp_embeddings(audio.to(device), model)
    scene = hear_codec.get_scene_embeddings(audio.to(device), model)
    assert emb.device.type == ts.device.type == scene.device.type == device
    assert emb.dtype == ts.dtype == scene.dtype == torch.float32  # HEAR's contract, whatever ran inside
    ref_emb, ref_ts = hear_codec.get_timestamp_embeddings(audio, reference)
    assert emb.shape == ref_emb.shape and torch.equal(ts.cpu(), ref_ts)
    assert cosine(emb, ref_emb).min() > 0.999  # bf16 rounding: 1 - cosine near 3e-5
    assert cosine(scene, hear_codec.get_scene_embeddings(audio, reference)).min() > 0.999


def masked_batch(config: emae.EncodecMAEConfig, clips: int = 3, seconds: float = 1.0) -> dict:
    from training.encodecmae.masking import MaskingCollate

    samples = int(seconds * 24000)
    wav = noise(clips, seconds, 24000, seed=1)
    items = [dict(wav=wav[i], length=samples - 4800 * i, ok=True, seed=i) for i in range(clips)]  # some padding
    return MaskingCollate(config.front_end, samples, config.mask_prop, config.mask_gap)(items)


@pytest.mark.parametrize("device", DEVICES)
def test_encodecmae_forward_and_backward(device, offline_codec):
    """The training module's step: the codec's targets, then the masked encoder, decoder and loss,
    and their gradients."""
    from training.encodecmae.module import EncodecMAEModule
    from training.encodecmae.targets import EncodecCodes

    config = emae.preset("tiny", front_end="mel256", codec_weights="offline", chunk_seconds=1.0)
    torch.manual_seed(0)
    module = EncodecMAEModule(config, EncodecCodes(offline_codec, config.num_codec_streams))
    module.log = lambda *args, **kwargs: None  # no trainer here to log to
    batch = masked_batch(config)

    def on(device):
        module.to(device).zero_grad()
        return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}

    # The targets: the frozen codec in fp32 (TF32 convolutions on a GPU may flip a near tie)
    _, ref_codes = module.targets_and_features(on("cpu"))
    _, codes = module.targets_and_features(on(device))
    assert codes.device.type == device and (codes.cpu() == ref_codes).float().mean() > 0.99

    def step(device: str, mixed: bool):
        moved = dict(on(device), codes=ref_codes.to(device))  # the same targets (precomputed codes) for both
        with torch.autocast(device, dtype=torch.bfloat16, enabled=mixed):
            loss = module._step(moved, "train")["loss"]
        loss.backward()
        grads = torch.cat([p.grad.flatten().cpu() for p in module.model.parameters() if p.grad is not None])
        return loss.detach().float().cpu(), grads

    ref_loss, ref_grads = step("cpu", mixed=False)
    loss, grads = step(device, mixed=device == "cuda")
    assert torch.isfinite(loss) and torch.isfinite(grads).all()
    assert len(grads) == len(ref_grads) == sum(p.numel() for p in module.model.parameters())  # every weight learns
    assert loss.item() == pytest.approx(ref_loss.item(), rel=1e-2)
    # bf16 rounding leaves 1 - cosine near 2e-5 here; a padding mask lost on the way gives 6e-3
    assert cosine(grads, ref_grads) > 0.999


@pytest.mark.parametrize("device", DEVICES)
def test_audioformer_forward(device, offline_codec):
    """MLM forward over the 4 codebooks' token sequences, and the HEAR embedding from audio."""
    model = af.new_model(af.preset("tiny"), offline_codec, seed=0).eval()
    tokens = af.codes_to_tokens(torch.randint(0, 1024, (2, 4, 50), generator=torch.Generator().manual_seed(0)))
    wav = noise(2, 1.0, 16000)
    with torch.no_grad():
        ref = model(tokens)
        model.to(device)
        with autocast(device):
            out = model(tokens.to(device))
    assert out["logits"].device.type == device
    assert cosine(out["hidden"], ref["hidden"]).min() > 0.999
    assert cosine(out["logits"], ref["logits"]).min() > 0.999
    hear = hear_codec.HearModel(model.to("cpu"), sample_rate=16000, precision="fp32")
    ref_scene = hear_codec.get_scene_embeddings(wav, hear)
    hear = hear_codec.HearModel(model.to(device), sample_rate=16000)
    scene = hear_codec.get_scene_embeddings(wav.to(device), hear)
    assert scene.device.type == device and scene.dtype == torch.float32
    assert cosine(scene, ref_scene).min() > 0.999


@pytest.mark.parametrize("device", DEVICES)
def test_enclap_forward_and_beam_search(device):
    from training.enclap.data import EnClapCollator
    from training.enclap.model import EnClapBartForConditionalGeneration, beam_search_config, tiny_config
    from training.enclap.text import build_word_tokenizer

    captions = ["a dog barks twice", "rain falls on a roof", "a car passes by quickly"]
    tokenizer = build_word_tokenizer(captions)
    torch.manual_seed(0)
    model = EnClapBartForConditionalGeneration(tiny_config(len(tokenizer), max_position_embeddings=128,
                                                           init_std=0.2)).eval()
    g = torch.Generator().manual_seed(0)
    items = [{"id": f"clip{i}", "codes": torch.randint(0, 1024, (t, 16), generator=g),
              "clap": torch.nn.functional.normalize(torch.randn(512, generator=g), dim=0), "caption": captions[i]}
             for i, t in enumerate((40, 31, 25))]
    batch = EnClapCollator(model.config, tokenizer, mask_prob=0.3, mask_span=3)(items)
    keys = ("input_ids", "clap_embedding", "encodec_mask", "attention_mask", "labels", "mcm_labels")
    with torch.no_grad():
        ref = model(**{k: batch[k] for k in keys})
        model.to(device)
        moved = {k: batch[k].to(device) for k in keys}
        with autocast(device):
            out = model(**moved)
            ids = model.caption_ids(**{k: moved[k] for k in keys[:4]},
                                    generation=beam_search_config(model.config, num_beams=4, max_length=12))
    assert out.logits.device.type == device and ids.device.type == device and ids.shape[0] == 3
    assert out.lm_loss.item() == pytest.approx(ref.lm_loss.item(), rel=1e-2)  # bf16: 2e-3
    assert out.mcm_loss.item() == pytest.approx(ref.mcm_loss.item(), rel=1e-2)


@pytest.mark.parametrize("device", DEVICES)
def test_one_training_step_through_the_engine(device, tmp_path):
    """``python -m training.pretrain`` on the device with the engine's default precision there
    (bf16-mixed on a GPU): two optimiser steps move every weight and leave them finite."""
    from hear_codec.checkpoint import read_checkpoint
    from training import engine, pretrain

    assert engine.resolve_precision(engine.EngineConfig(accelerator=device)) == (
        "bf16-mixed" if device == "cuda" else "32-true")
    out = tmp_path / "run"
    pretrain.main(["--out", str(out), "--accelerator", device, "--max-steps", "2", "--synthetic-clips", "6",
                   "--synthetic-val-clips", "2", "--batch-size", "2", "--crop-seconds", "1.0", "--num-workers", "0",
                   "--no-progress-bar", "--val-every", "0"])
    before = read_checkpoint(out / "init.ckpt.hearcodec")["state_dict"]
    after = read_checkpoint(out / engine.EXPORT)["state_dict"]
    assert all(torch.isfinite(v).all() for v in after.values())
    moved = [k for k in after if not torch.equal(after[k], before[k])]
    assert len(moved) > len(after) // 2, sorted(set(after) - set(moved))
