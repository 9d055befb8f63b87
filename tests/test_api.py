"""The HEAR API: shapes, timestamps, chunk plans and their compute, layer choice, precision, bad input."""
import inspect
import random

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import hear_codec
from conftest import noise
from hear_codec import api, audioformer, encodecmae

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models

@pytest.fixture(scope="module")
def mel_model(tiny_checkpoints):
    return hear_codec.load_model(tiny_checkpoints["mel256"], precision="fp32")


@pytest.fixture(scope="module")
def ec_model(tiny_checkpoints):
    return hear_codec.load_model(tiny_checkpoints["ec"], precision="fp32")


def test_attributes_and_shapes(mel_model, ec_model):
    for model, frames in ((mel_model, 149), (ec_model, 150)):
        assert model.sample_rate == 48000
        assert model.scene_embedding_size == model.timestamp_embedding_size == 64
        emb, ts = hear_codec.get_timestamp_embeddings(noise(3, 2.0, 48000), model)
        assert emb.shape == (3, frames, 64) and ts.shape == (3, frames)
        assert emb.dtype == ts.dtype == torch.float32
        scene = hear_codec.get_scene_embeddings(noise(3, 2.0, 48000), model)
        assert scene.shape == (3, 64) and scene.dtype == torch.float32
        assert torch.allclose(scene, emb.mean(dim=1), atol=1e-6)


def test_timestamps_are_frame_centres_in_ms(mel_model, ec_model):
    _, ts = hear_codec.get_timestamp_embeddings(noise(1, 1.0, 48000), mel_model)
    k = torch.arange(ts.shape[1], dtype=torch.float64)
    # mel frame k covers 24 kHz samples [318 k, 318 k + 637)
    assert torch.allclose(ts[0].double(), (318 * k + 637 / 2) / 24, atol=1e-3)
    _, ts = hear_codec.get_timestamp_embeddings(noise(1, 1.0, 48000), ec_model)
    k = torch.arange(ts.shape[1], dtype=torch.float64)
    assert torch.allclose(ts[0].double(), (320 * k + 160) / 24, atol=1e-3)  # EnCodec frame k: [320 k, 320 k + 320)


def _local_features_model(model):
    """Make the model's 'embedding' its per-frame input features, which depend on the frame's own
    samples only: then any chunking error (wrong offset, wrong stitching) shows as a mismatch."""
    inner = model.model
    model.model.embed_layers = lambda wav, padding_mask=None, num_layers=None: [
        inner.input_proj(inner.input_features(wav))]
    model.layer = 0
    return model


@pytest.mark.parametrize("sample_rate", [16000, 48000])
def test_chunked_long_clip_aligns_with_frame_grid(tiny_checkpoints, sample_rate):
    model = _local_features_model(hear_codec.load_model(tiny_checkpoints["mel256"], sample_rate=sample_rate,
                                                        precision="fp32"))
    audio = noise(2, 13.0, sample_rate)
    assert len(model.chunk_plan(13 * 24000).chunks) > 2
    emb, ts = hear_codec.get_timestamp_embeddings(audio, model)
    wav24 = hear_codec.audio.resample(audio, sample_rate, 24000)
    whole = model.model.input_proj(model.model.input_features(wav24))  # one pass, no chunks
    assert emb.shape == whole.shape
    assert torch.allclose(emb, whole, atol=1e-5)
    steps = torch.diff(ts[0].double())
    assert (steps - 318 / 24).abs().max() < 1e-3  # regular to well under 1 ms


@pytest.mark.parametrize("sample_rate", [16000, 48000])
def test_click_lands_at_its_timestamp(tiny_checkpoints, sample_rate):
    """A click at time t peaks in the frame whose window centre is nearest to t, and that frame's
    timestamp is within half a hop of t: a one-frame shift anywhere would put it >= 6.6 ms off."""
    model = hear_codec.load_model(tiny_checkpoints["mel256"], sample_rate=sample_rate)
    inner = model.model
    inner.embed_layers = lambda wav, padding_mask=None, num_layers=None: [
        inner.front_end.fbank(wav).exp().sum(-1, keepdim=True)]
    model.layer = 0
    for click_s in (0.5, 5.0, 7.31, 11.9):  # 5.0 s and 7.31 s lie in chunk overlaps of a 13 s clip
        audio = torch.zeros(1, 13 * sample_rate)
        audio[0, round(click_s * sample_rate)] = 1.0
        energy, ts = hear_codec.get_timestamp_embeddings(audio, model)
        peak = int(energy[0, :, 0].argmax())
        click24 = click_s * 24000
        nearest = round((click24 - 637 / 2) / 318)  # frame k spans [318 k, 318 k + 637)
        assert peak == nearest, (click_s, peak, nearest)
        assert abs(float(ts[0, peak]) - 1000 * click_s) <= 318 / 24 / 2 + 0.05


def test_chunked_equals_unchunked_inside_one_chunk(mel_model, ec_model):
    for model in (mel_model, ec_model):
        audio = noise(2, 3.5, 48000)
        emb, _ = hear_codec.get_timestamp_embeddings(audio, model)
        direct = model.model.embed_layers(hear_codec.audio.resample(audio, 48000, 24000))[-1]
        assert torch.allclose(emb, direct, atol=1e-5)


def test_overlap_keeps_long_clip_close_to_unchunked(mel_model):
    """Every frame keeps >= 0.25 s of context on each side of a cut: outputs stay close."""
    audio = noise(1, 6.0, 48000)
    emb, _ = hear_codec.get_timestamp_embeddings(audio, mel_model)
    direct = mel_model.model.embed_layers(hear_codec.audio.resample(audio, 48000, 24000))[-1]
    cos = torch.nn.functional.cosine_similarity(emb, direct, dim=-1)
    assert cos.min() > 0.95


def record_forward_shapes(model) -> list:
    """Spy on the encoder of a loaded HEAR model: the returned list fills with the [B, S] shape of
    every batch of chunks it is called with (precision is resolved first: "auto" runs the model once
    on one frame to find its matmul shapes, hear_codec/precision.py)."""
    model.resolved_precision
    calls = []
    original = model.model.embed_layers

    def spy(wav, padding_mask=None, num_layers=None):
        calls.append(tuple(wav.shape))
        return original(wav, padding_mask, num_layers)

    model.model.embed_layers = spy
    return calls


def test_memory_is_bounded_by_the_chunk_batch(tiny_checkpoints):
    model = hear_codec.load_model(tiny_checkpoints["mel256"], batch_size=2, sample_rate=16000)
    calls = record_forward_shapes(model)
    audio = noise(3, 60.0, 16000)  # 3 one-minute clips
    emb, ts = hear_codec.get_timestamp_embeddings(audio, model)
    assert emb.shape[1] == model.model.num_frames(60 * 24000)
    assert max(b for b, _ in calls) <= 2 and max(s for _, s in calls) <= model.model.chunk_samples
    assert torch.isfinite(emb).all()


def test_twenty_minute_clip(tiny_checkpoints):
    """20 minutes at 16 kHz: the chunk plan covers every frame once and timestamps reach the end.
    (The transformer is replaced by a cheap stand-in: the arithmetic is what is under test here,
    the real forward over chunks is covered above.)"""
    model = hear_codec.load_model(tiny_checkpoints["mel256"], sample_rate=16000, batch_size=64)
    inner = model.model
    inner.embed_layers = lambda wav, padding_mask=None, num_layers=None: [  # each frame's index inside its chunk
        torch.arange(inner.num_frames(wav.shape[1]), dtype=torch.float32)[None, :, None].expand(wav.shape[0], -1, 64)]
    model.layer = 0
    audio = torch.zeros(1, 20 * 60 * 16000)
    emb, ts = hear_codec.get_timestamp_embeddings(audio, model)
    total = inner.num_frames(20 * 60 * 24000)
    assert emb.shape == (1, total, 64) and ts.shape == (1, total)
    # each frame came from a chunk in which it has local index emb; chunk starts are on the frame grid
    starts = {c.first_frame for c in model.chunk_plan(20 * 60 * 24000).chunks}
    local = emb[0, :, 0].long()
    assert all(int(k - j) in starts for k, j in zip(torch.arange(total).tolist(), local.tolist()))
    assert abs(float(ts[0, -1]) - 20 * 60 * 1000) < 20


def test_layer_choice(tiny_checkpoints):
    audio = noise(1, 1.0, 48000)
    outputs = [hear_codec.get_scene_embeddings(audio, hear_codec.load_model(tiny_checkpoints["mel256"], layer=i))
               for i in (0, 1, -1)]
    assert not torch.allclose(outputs[0], outputs[1])
    assert torch.equal(outputs[1], outputs[2])
    with pytest.raises(ValueError, match="'layer' must be an integer in \\[-2, 1\\]"):
        hear_codec.load_model(tiny_checkpoints["mel256"], layer=2)


@pytest.mark.parametrize("front_end", ["mel256", "ec"])
def test_layer_truncation_equals_the_full_forward(front_end):
    """Each layer's embedding, computed with the later layers skipped, is bit-identical to that
    layer in a forward over the whole stack, and the later layers really are not run."""
    torch.manual_seed(0)
    model = encodecmae.EncodecMAE(encodecmae.preset("tiny", front_end=front_end, num_layers=4)).eval()
    audio = noise(2, 1.5, 48000)
    with torch.no_grad():
        full = model.embed_layers(hear_codec.audio.resample(audio, 48000, 24000))
    runs = []
    for j, layer in enumerate(model.encoder.layers):
        layer.register_forward_hook(lambda module, args, out, j=j: runs.append(j))
    for i in range(4):
        runs.clear()
        hear = hear_codec.HearModel(model, layer=i, precision="fp32")
        emb, _ = hear_codec.get_timestamp_embeddings(audio, hear)
        assert torch.equal(emb, full[i]), i
        assert runs == list(range(i + 1)), (i, runs)
    hear = hear_codec.HearModel(model, layer=-1, precision="fp32")
    assert torch.equal(hear_codec.get_timestamp_embeddings(audio, hear)[0], full[-1])


def test_chunk_context_sets_the_overlap(tiny_checkpoints):
    model = hear_codec.load_model(tiny_checkpoints["mel256"], chunk_context=1.0)
    plan = model.chunk_plan(13 * 24000)
    assert len(plan.chunks) > 2
    for i, c in enumerate(plan.chunks):  # 1 s = 75 mel frames each side of a cut
        assert i == 0 or c.own_from - c.first_frame >= 75
        assert i == len(plan.chunks) - 1 or c.first_frame + plan.chunk_frames - c.own_to >= 75
    with pytest.raises(ValueError, match="'chunk_context' must be a number of seconds in \\[0, 2\\)"):
        hear_codec.load_model(tiny_checkpoints["mel256"], chunk_context=2.0)


# ---- chunk plans: invariants and compute ----
def plan_lengths():
    """Clip lengths at 24 kHz from 1 sample to 20 minutes: the edges of one and two chunks, and a
    seeded spread of everything in between."""
    edges = [1, 100, 319, 320, 321, 636, 637, 638, 24000, 95999, 96000, 96001, 96318, 96320, 96638, 96641,
             2 * 96000, 240000, 312000, 20 * 60 * 24000 - 1, 20 * 60 * 24000]
    rng = random.Random(0)
    return edges + [rng.randint(1, 24000 * 30) for _ in range(400)] + [rng.randint(1, 20 * 60 * 24000)
                                                                       for _ in range(100)]


@pytest.mark.parametrize("front_end", ["mel256", "ec"])
@pytest.mark.parametrize("context", [0.0, 0.25, 0.5, 1.0])
def test_chunk_plan_invariants(tiny_checkpoints, front_end, context):
    """Every frame owned by exactly one chunk, chunks of one length no longer than the training
    crop, the fewest of them, evenly spread, the requested context at every cut, no lost tail."""
    model = hear_codec.load_model(tiny_checkpoints[front_end], chunk_context=context)
    m = model.model
    max_frames = m.num_frames(m.chunk_samples)
    context_frames = round(context * 24000 / m.frame_hop)
    for samples in plan_lengths():
        plan = model.chunk_plan(samples)
        total = m.num_frames(max(samples, m.min_samples))
        chunks, length = plan.chunks, plan.chunk_frames
        assert plan.total_frames == total and length <= max_frames
        assert chunks[0].own_from == 0 and chunks[-1].own_to == total  # the tail is owned
        assert all(a.own_to == b.own_from for a, b in zip(chunks, chunks[1:]))  # each frame exactly once
        assert all(c.own_from < c.own_to for c in chunks)
        for i, c in enumerate(chunks):
            assert c.first_frame <= c.own_from and c.own_to <= c.first_frame + length
            assert i == 0 or c.own_from - c.first_frame >= context_frames
            assert i == len(chunks) - 1 or c.first_frame + length - c.own_to >= context_frames
        assert chunks[-1].first_frame + length == total
        if len(chunks) > 1:  # fewest: one chunk fewer could not cover the clip with this context
            k = len(chunks)
            assert (k - 1) * max_frames - (k - 2) * 2 * context_frames < total
            gaps = {b.first_frame - a.first_frame for a, b in zip(chunks, chunks[1:])}
            assert max(gaps) - min(gaps) <= 1  # evenly spread
        # the sample ranges give each chunk exactly its frames, and the last one reaches the clip's end
        padded = max(samples, m.min_samples)  # a clip shorter than one frame is padded to one
        ranges = model.chunk_samples(plan, padded)
        for c, (start, end) in zip(chunks, ranges):
            assert start == c.first_frame * m.frame_hop and end <= padded
            assert m.num_frames(end - start) == length
        assert len({end - start for start, end in ranges}) <= 2  # a shorter last EnCodec hop at most


@pytest.mark.parametrize("front_end", ["mel256", "ec"])
def test_compute_per_audio_second(tiny_checkpoints, front_end):
    """Chunk-seconds computed per audio-second, 1 s to 20 min: <= 1.05 for scene embeddings and
    <= 1.3 for timestamp embeddings with the default context (arithmetic on the plans)."""
    model = hear_codec.load_model(tiny_checkpoints[front_end])
    assert model.chunk_context == 0.25  # the default: a sixteenth of the 4 s chunk

    def ratio(samples, context):
        plan = model.chunk_plan(samples, context)
        return sum(end - start for start, end in model.chunk_samples(plan, samples)) / samples

    lengths = list(range(24000, 24000 * 120, 997)) + list(range(24000 * 120, 20 * 60 * 24000 + 1, 24000 * 7 + 13))
    assert max(ratio(s, 0.0) for s in lengths) <= 1.05
    assert max(ratio(s, model.chunk_context) for s in lengths) <= 1.3


@pytest.mark.parametrize("front_end, lengths", [("mel256", (1.0, 4.5, 10.0, 61.3)), ("ec", (1.0, 10.0))])
def test_flop_counted_compute(tiny_checkpoints, front_end, lengths):
    """The same bounds counted in FLOPs of real forwards: against a 4 s chunk's FLOPs per second."""
    model = hear_codec.load_model(tiny_checkpoints[front_end])
    model.resolved_precision  # the first use times a few matmuls ("auto"): not a forward to count

    def gflop(fn, seconds):
        with FlopCounterMode(display=False) as counter:
            fn(torch.zeros(1, int(seconds * 48000)), model)
        return counter.get_total_flops()

    per_second = gflop(hear_codec.get_scene_embeddings, 4.0) / 4.0
    for seconds in lengths:
        assert gflop(hear_codec.get_scene_embeddings, seconds) <= 1.05 * per_second * seconds
        assert gflop(hear_codec.get_timestamp_embeddings, seconds) <= 1.3 * per_second * seconds


def test_scene_and_timestamp_plans_batch_every_chunk(tiny_checkpoints):
    """A 10 s clip: scene embeddings run 3 equal chunks with no context (not 3 x 4 s), timestamps
    3 chunks with 0.25 s of context, each plan in one forward pass of all its chunks."""
    model = hear_codec.load_model(tiny_checkpoints["mel256"])
    calls = record_forward_shapes(model)
    audio = noise(2, 10.0, 48000)
    hear_codec.get_scene_embeddings(audio, model)
    assert calls == [(6, 250 * 318 + 637)]  # 753 frames = 3 x 251
    calls.clear()
    hear_codec.get_timestamp_embeddings(audio, model)
    assert calls == [(6, 276 * 318 + 637)]  # 3 x 277 frames, overlaps of 38 = 2 x 19 frames


def test_cuda_batch_fills_half_the_free_memory(monkeypatch, tiny_checkpoints):
    """On a GPU the default batch is as many chunks as fit in half the free memory, sized from
    the memory two chunks take, measured once per device and precision. (torch.cuda is faked: this
    checks the sizing and its caching, not a real GPU's memory.)"""
    model = hear_codec.load_model(tiny_checkpoints["mel256"], precision="fp32")
    memory = {"allocated": 1000, "peak": 0, "free": 30_000}
    probes = []

    def embed_probe(wav):  # two chunks take 600 bytes above what was allocated
        probes.append(tuple(wav.shape))
        memory["peak"] = memory["allocated"] + 600

    real_zeros = torch.zeros
    monkeypatch.setattr(model, "_embed", embed_probe)
    monkeypatch.setattr(torch, "zeros", lambda *shape, device=None, **kw: real_zeros(*shape, **kw))
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: memory["allocated"])
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: memory.update(peak=0))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: memory["peak"])
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (memory["free"], 10**6))
    cuda = torch.device("cuda", 0)
    assert model.effective_batch_size(cuda) == 50  # half of 30 000 free bytes at 300 bytes a chunk
    memory["free"] = 10**12
    assert model.effective_batch_size(cuda) == 50  # measured once per device
    assert probes == [(2, model.model.chunk_samples)]
    assert model.effective_batch_size(torch.device("cuda", 1)) == api.MAX_CUDA_BATCH_SIZE
    model.batch_size = 7
    assert model.effective_batch_size(cuda) == 7  # an explicit batch_size wins
    model.batch_size = None
    assert model.effective_batch_size(torch.device("cpu")) == api.CPU_BATCH_SIZE


# ---- precision (how "auto" is decided: tests/test_precision.py) ----
@pytest.mark.parametrize("speedup, expected", [(1.3, "bf16"), (1.0, "fp32"), (0.5, "fp32")])
def test_autocast_runs_exactly_when_bf16_is_resolved(monkeypatch, tmp_path, tiny_checkpoints, speedup, expected):
    from hear_codec import precision
    monkeypatch.setenv("HEAR_CODEC_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(precision, "_DECIDED", {})
    monkeypatch.setattr(precision, "busy", lambda: None)
    monkeypatch.setattr(precision, "measure", lambda shapes, rows: {"fp32": speedup, "bf16": 1.0, "seconds": 0.1})
    model = hear_codec.load_model(tiny_checkpoints["mel256"])
    assert model.precision == "auto" and model.resolved_precision == expected
    assert model.resolved_precision.source == "measured"
    assert hear_codec.load_model(tiny_checkpoints["mel256"], precision="fp32").resolved_precision == "fp32"
    assert hear_codec.load_model(tiny_checkpoints["mel256"], precision="bf16").resolved_precision == "bf16"
    seen = []  # what the transformer runs under
    original = model.model.embed_layers
    model.model.embed_layers = lambda *a, **k: seen.append(torch.is_autocast_enabled("cpu")) or original(*a, **k)
    hear_codec.get_scene_embeddings(noise(1, 0.5, 48000), model)
    assert seen == [expected == "bf16"]


@pytest.mark.parametrize("front_end", ["mel256", "ec"])
def test_bf16_stays_close_to_fp32_for_every_layer(tiny_checkpoints, front_end):
    audio = noise(2, 2.0, 48000)
    for layer in range(2):
        fp32, bf16 = (hear_codec.get_timestamp_embeddings(audio, hear_codec.load_model(
            tiny_checkpoints[front_end], precision=p, layer=layer))[0] for p in ("fp32", "bf16"))
        assert bf16.dtype == torch.float32 and not torch.equal(fp32, bf16)  # bf16 really ran
        assert torch.nn.functional.cosine_similarity(fp32, bf16, dim=-1).min() >= 0.999


def test_loud_but_finite_audio_gives_finite_embeddings(mel_model, ec_model):
    """Up to the 1e12 bound (beyond it a clear error, test_bad_input) the front ends do not overflow."""
    for model in (mel_model, ec_model):
        audio = noise(1, 2.0, 48000).sign() * 1e12
        assert torch.isfinite(hear_codec.get_scene_embeddings(audio, model)).all()


@pytest.mark.parametrize("front_end", ["mel256", "ec"])
def test_embed_stream_equals_embed_and_holds_only_what_its_chunks_need(tiny_checkpoints, front_end, monkeypatch):
    """A clip that arrives in blocks: the same embeddings as one call on the whole clip, timestamp rows
    handed over in order as they are computed, and the samples held bounded by the batch, whatever
    the clip's length."""
    model = hear_codec.load_model(tiny_checkpoints[front_end], precision="fp32", batch_size=2)
    held = []
    original = api._Samples.forget_before
    monkeypatch.setattr(api._Samples, "forget_before", lambda self, i: original(self, i) or held.append(
        sum(len(k) for k in self.kept)))
    peaks = {}
    for seconds in (20.0, 0.004, 60.0):
        wav = noise(1, seconds, 24000, seed=3)
        whole = model.embed(wav)
        rows, held[:] = [], []
        blocks = (wav[0, i:i + 7001].numpy() for i in range(0, wav.shape[1], 7001))
        out = model.embed_stream(blocks, wav.shape[1], write_frames=rows.append)
        assert "timestamp" not in out and len(rows) >= min(2, whole["timestamp"].shape[1] // 300)
        assert torch.equal(torch.from_numpy(np.concatenate(rows)), whole["timestamp"][0])
        assert (out["scene"] - whole["scene"][0]).abs().max() < 1e-6
        assert torch.equal(out["timestamps_ms"], whole["timestamps_ms"][0])
        peaks[seconds] = max(held, default=0)
    chunk = model.model.chunk_samples
    assert peaks[20.0] <= 4 * chunk + 7001 and peaks[60.0] <= 4 * chunk + 7001  # two 2-chunk batches, a block
    with pytest.raises(api.StreamLengthError, match="ended after 48000 samples"):
        model.embed_stream([np.zeros(48000, np.float32)], 96000)
    with pytest.raises(api.StreamLengthError, match="more than the 48000 samples"):
        model.embed_stream([np.zeros(48000, np.float32), np.zeros(5, np.float32)], 48000)


def test_short_audio_gives_one_frame(mel_model, ec_model):
    for model in (mel_model, ec_model):
        emb, ts = hear_codec.get_timestamp_embeddings(noise(2, 0.005, 48000), model)  # 5 ms
        assert emb.shape == (2, 1, 64) and torch.isfinite(emb).all()


@pytest.mark.parametrize("audio, error, match", [
    (torch.zeros(48000), ValueError, "n_sounds, n_samples"),
    (torch.zeros(1, 1, 48000), ValueError, "n_sounds, n_samples"),
    (torch.zeros(1, 48000, dtype=torch.int16), TypeError, "floating point"),
    (torch.zeros(0, 48000), ValueError, "empty"),
    (torch.zeros(2, 0), ValueError, "zero length"),
    (torch.full((1, 4800), float("nan")), ValueError, "NaN"),
    (torch.tensor([[0.0, float("inf")] * 100]), ValueError, "Inf"),
    (torch.tensor([[0.0, 1e18, -1e18] * 100]), ValueError, r"samples up to 1e\+18, beyond ±1e\+12"),
    (torch.tensor([[0.0, -3e38] * 100]), ValueError, r"samples up to 3e\+38"),
    ([[0.0] * 100], TypeError, "torch.Tensor"),
])
def test_bad_input(mel_model, audio, error, match):
    with pytest.raises(error, match=match):
        hear_codec.get_timestamp_embeddings(audio, mel_model)
    with pytest.raises(error, match=match):
        hear_codec.get_scene_embeddings(audio, mel_model)


def test_options_are_checked_and_random_weights_are_explicit(tiny_checkpoints):
    with pytest.raises(ValueError, match="random_weights' must look like"):
        hear_codec.load_model(random_weights="tiny")
    with pytest.raises(ValueError, match="model_file_path.*random_weights"):
        hear_codec.load_model(tiny_checkpoints["mel256"], random_weights="encodecmae-tiny-mel256")


@pytest.mark.parametrize("option, value, match", [
    ("layer", "x", "option 'layer' must be an integer in \\[-2, 1\\], got 'x'"),  # heareval --model-options
    ("layer", 1.0, "option 'layer' must be an integer"),
    ("layer", True, "option 'layer' must be an integer"),
    ("sample_rate", 24000, "option 'sample_rate' must be one of 16000, 22050, 44100, 48000, got 24000"),
    ("sample_rate", "48000", "option 'sample_rate' must be one of"),
    ("precision", "fp8", "option 'precision' must be one of 'auto', 'fp32', 'bf16', got 'fp8'"),
    ("batch_size", 0, "option 'batch_size' must be an integer >= 1, got 0"),
    ("batch_size", "16", "option 'batch_size' must be an integer >= 1"),
    ("chunk_context", "0.5", "option 'chunk_context' must be a number of seconds in \\[0, 2\\)"),
    ("chunk_context", -0.1, "option 'chunk_context'"),
    ("seed", "x", "option 'seed' must be an integer"),
    ("random_weights", 3, "option 'random_weights' must look like"),
])
def test_option_errors_name_the_option(tiny_checkpoints, option, value, match):
    path = None if option in ("seed", "random_weights") else tiny_checkpoints["mel256"]
    options = {"random_weights": "encodecmae-tiny-mel256"} if path is None else {}
    with pytest.raises(ValueError, match=match):
        hear_codec.load_model(path, **{**options, option: value})


def test_both_families_satisfy_the_model_family_protocol():
    families = {"encodecmae-mel256": encodecmae.new_model(encodecmae.preset("tiny")),
                "encodecmae-ec": encodecmae.new_model(encodecmae.preset("tiny", front_end="ec")),
                "audioformer": audioformer.new_model(audioformer.preset("tiny", codec_weights="offline"), "offline")}
    for name, model in families.items():
        assert isinstance(model, api.ModelFamily), name
        assert {"padding_mask", "num_layers"} <= set(inspect.signature(model.embed_layers).parameters), name
        with torch.no_grad():
            layers = model.embed_layers(torch.rand(1, model.chunk_samples) - 0.5, num_layers=1)
        assert len(layers) == 1 and layers[0].shape == (1, model.num_frames(model.chunk_samples), model.embedding_dim)
        hear_codec.HearModel(model)  # the wrapper takes it


def test_a_model_without_a_member_is_not_a_family():
    class NoWindow:
        sample_rate, frame_hop, min_samples, chunk_samples, embedding_dim, num_embedding_layers = 24000, 320, 1, 96000, 8, 1

        def num_frames(self, num_samples):
            return num_samples // 320

        def embed_layers(self, wav, padding_mask=None, num_layers=None):
            return []

    assert not isinstance(NoWindow(), api.ModelFamily)
