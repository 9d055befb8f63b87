"""EnCodecMAE's pretraining CLI pieces (training/encodecmae/pretrain.py): options to configs, the
self-training stage. The shared CLI and resume: test_pretrain.py."""
import pytest

from hear_codec.checkpoint import read_checkpoint
from hear_codec import encodecmae as emae
from training.builtin.colouring import ColourConfig
from training.codec import CodecConfig
from training.builtin import targets as stand_in


@pytest.mark.slow
def test_self_training_as_a_stage_of_pretraining(tmp_path):
    """``training.pretrain --self-train-steps N``: pretraining, then self-training (v2, its own
    defaults) into OUT/self_train with the pretraining's data and engine options."""
    from training import pretrain

    out = tmp_path / "run"
    path = pretrain.main(["--out", str(out), "--synthetic-clips", "16", "--synthetic-val-clips", "2",
                          "--crop-seconds", "1.0", "--batch-size", "4", "--num-workers", "0", "--no-progress-bar",
                          "--max-steps", "1", "--val-every", "0", "--self-train-steps", "2"])
    assert path == out / "self_train" / "last.ckpt.hearcodec"
    payload = read_checkpoint(path)
    assert payload["metadata"]["teacher"] == str(out / "last.ckpt.hearcodec")
    assert payload["metadata"]["step"] == 2 and payload["metadata"]["variant"] == "v2"
    assert (payload["config"]["num_kmeans_streams"], payload["config"]["vocab_size"]) == (1, 1024)
    assert read_checkpoint(out / "last.ckpt.hearcodec")["metadata"]["step"] == 1
    pretrained = read_checkpoint(out / "last.ckpt.hearcodec")["metadata"]
    assert pretrained["augment"] == {"colour_db": 6.0, "colour_until": 0.75}  # the built-in run's colouring
    assert payload["metadata"]["augment"] is None  # self-training does not colour


def parse(*argv):
    """The options as ``python -m training.pretrain`` reads them (the built-in recipe without --data)."""
    from training import pretrain
    from training.builtin import recipes
    from training.encodecmae.pretrain import BUILTIN

    return recipes.parse_args(pretrain.build_parser(), list(argv), BUILTIN)


def test_options_give_the_built_in_run_or_the_papers_setting(tmp_path):
    """Without --data: the built-in run (the mini model, stand-in log-mel k-means targets and a 64-way head, 2 s
    crops, lr 1e-3, 2400 steps, 70 % of the frames masked); with
    --data, the paper's (published codec, 4 s crops, batch 128, lr 1e-4, 500 k steps, half the frames
    masked); an option given explicitly wins over both."""
    from training.encodecmae.pretrain import configs

    args = parse()
    model, optim, data, run, codec, colour = configs(args)
    assert (args.targets, codec) == ("mel-kmeans", None)  # no EnCodec at all
    assert (data.sources, data.crop_seconds, data.batch_size) == (None, 2.0, 16)
    assert (optim.lr, run.max_steps, run.val_every, run.ckpt_every) == (1e-3, 2400, 400, 400)
    assert (model.dim, model.front_end, model.chunk_seconds, model.codec_weights) == (128, "mel256", 2.0, "none")
    assert model == emae.preset("mini", chunk_seconds=2.0, codec_weights="none", vocab_size=64, mask_prop=0.7,
                                num_codec_streams=9, codec_stream_weights=stand_in.STREAM_WEIGHTS)
    assert model.vocab_size == stand_in.CLUSTERS == 64  # the head predicts the stand-in's codes, no more
    # ...in its 9 streams: 8 bands weighed as EnCodec's codebooks, then the modulation stream
    assert model.codec_stream_weights[:8] == emae.QUANTIZER_WEIGHTS and model.codec_stream_weights[8] == 0.224
    assert (optim.warmup_steps, optim.schedule) == (0, "constant")
    assert colour == ColourConfig(6.0, 0.75)
    offline = configs(parse("--codec", "offline"))  # an EnCodec named: its codes are the targets
    assert (offline[0].vocab_size, offline[0].num_codec_streams, offline[0].codec_stream_weights) == (
        1024, 8, emae.QUANTIZER_WEIGHTS)  # EnCodec's codebooks, the official loss's weights
    assert offline[4] == CodecConfig("offline") and offline[0].codec_weights == "offline"
    legacy = parse("--codec", "mel-kmeans")  # the former spelling of --targets mel-kmeans
    assert configs(legacy)[4] is None and legacy.targets == "mel-kmeans"

    args = parse("--data", str(tmp_path), "--preset", "base", "--front-end", "ec")
    model, optim, data, run, codec, colour = configs(args)
    assert (args.targets, codec, colour) == ("encodec", CodecConfig("pretrained"), ColourConfig(0.0, 1.0))
    assert (data.sources, data.crop_seconds, data.batch_size) == ([str(tmp_path)], 4.0, 128)
    assert (optim.lr, optim.betas, optim.weight_decay, run.max_steps) == (1e-4, (0.9, 0.95), 0.05, 500_000)
    assert (optim.warmup_steps, optim.schedule, model.vocab_size) == (0, "constant", 1024)  # the paper's
    assert (model.num_codec_streams, model.codec_stream_weights) == (8, emae.QUANTIZER_WEIGHTS)  # the paper's
    assert (model.mask_prop, model.mask_gap) == (0.5, 15)  # the paper's
    assert (model.dim, model.num_layers, model.front_end, model.chunk_seconds) == (768, 10, "ec", 4.0)
    assert configs(parse("--data", str(tmp_path)))[0].dim == 64  # no --preset with --data: tiny, as before

    _, optim, data, run, _, _ = configs(parse("--data", str(tmp_path), "--lr", "3e-4", "--batch-size", "8",
                                              "--max-steps", "5"))
    assert (optim.lr, data.batch_size, run.max_steps, data.crop_seconds) == (3e-4, 8, 5, 4.0)

    optim = configs(parse("--warmup-steps", "50", "--schedule", "cosine"))[1]
    assert (optim.warmup_steps, optim.schedule) == (50, "cosine")
    assert configs(parse("--mask-prop", "0.6"))[0].mask_prop == 0.6
    assert configs(parse("--data", str(tmp_path), "--mask-prop", "0.7"))[0].mask_prop == 0.7


def test_a_schedule_that_cannot_run_is_refused_before_training():
    """A cosine that would end before its warm-up does, or a negative warm-up, is a clear message at
    start-up, not a traceback from inside Lightning."""
    from training.encodecmae.pretrain import configs

    with pytest.raises(SystemExit, match="decays to 0 at --max-steps, which must be beyond --warmup-steps .100.; "
                                         "got --max-steps 20"):
        configs(parse("--schedule", "cosine", "--warmup-steps", "100", "--max-steps", "20"))
    with pytest.raises(SystemExit, match="beyond --warmup-steps .50.; got --max-steps 50"):
        configs(parse("--schedule", "cosine", "--warmup-steps", "50", "--max-steps", "50"))
    with pytest.raises(SystemExit, match="--warmup-steps must be 0 or more, got -3"):
        configs(parse("--warmup-steps", "-3"))
    assert configs(parse("--schedule", "cosine", "--warmup-steps", "49", "--max-steps", "50"))[1].schedule == "cosine"
    for bad in (["--decay-steps", "100"], ["--schedule", "cosine", "--decay-steps", "0"]):  # constant; no decay
        with pytest.raises(SystemExit, match="--decay-steps is the length of the cosine's decay: it needs --schedule "
                                             "cosine and at least 1 step"):
            configs(parse(*bad))
    assert configs(parse("--schedule", "cosine", "--decay-steps", "600", "--max-steps", "3000"))[1].decay_steps == 600
    assert configs(parse())[1].decay_steps is None  # the default: the whole run decays (when cosine)


def test_optimiser_options_out_of_their_range_are_refused_by_the_parser(capsys):
    """AdamW refuses a negative or NaN learning rate, a beta of 1 or more and a negative weight decay
    only when the optimiser is built, after the data and targets are set up: the parser refuses them
    first, naming the option (EnCodecMAE's options here; AudioFormer's share the types)."""
    for option, values, rule in (("--lr", ["-1"], "a number > 0"), ("--lr", ["nan"], "a number > 0"),
                                 ("--betas", ["1.5", "0.9"], r"a number in [0, 1)"),
                                 ("--weight-decay", ["-1"], "a number >= 0")):
        with pytest.raises(SystemExit) as exit_info:
            parse(option, *values)
        assert exit_info.value.code == 2
        assert f"argument {option}: must be {rule}, got '{values[0]}'" in capsys.readouterr().err


def test_a_mask_share_outside_0_to_1_is_refused(capsys):
    """--mask-prop 0 would leave no masked frame to learn from, 1 no visible frame to see: both the
    same message from the parser, before any work."""
    for value, rule in (("0", "a number > 0"), ("1", "a number in (0, 1)")):
        with pytest.raises(SystemExit) as exit_info:
            parse("--mask-prop", value)
        assert exit_info.value.code == 2
        assert f"argument --mask-prop: must be {rule}, got '{value}'" in capsys.readouterr().err


def test_the_built_in_run_colours_its_input_and_the_papers_setting_does_not(tmp_path, capsys):
    """--colour-db: 6 dB on the built-in run, none with --data (the paper has no augmentation); the
    ec front end has no log-mel frames to colour, so the built-in default drops it there and an
    explicit --colour-db is a message; a negative depth the parser's. --colour-until: the first
    three quarters of the built-in run's steps, every step with --data; a share in (0, 1]."""
    from training.encodecmae.pretrain import configs

    for argv, expected in (((), 0.75), (("--data", str(tmp_path)), 1.0), (("--colour-until", "0.5"), 0.5),
                           (("--colour-until", "1"), 1.0)):
        args = parse(*argv)
        configs(args)
        assert args.colour_until == expected, argv
    for bad, rule in (("0", "a number > 0"), ("nan", "a number > 0"), ("1.5", "a number in (0, 1]")):
        with pytest.raises(SystemExit) as exit_info:
            parse("--colour-until", bad)
        assert exit_info.value.code == 2
        assert f"argument --colour-until: must be {rule}, got '{bad}'" in capsys.readouterr().err

    for argv, expected in (((), 6.0), (("--data", str(tmp_path)), 0.0), (("--colour-db", "3"), 3.0),
                           (("--data", str(tmp_path), "--colour-db", "2"), 2.0),
                           (("--codec", "offline", "--front-end", "ec"), 0.0)):
        args = parse(*argv)
        configs(args)
        assert args.colour_db == expected, argv
    with pytest.raises(SystemExit, match="--colour-db colours log-mel frames, and the ec front end has none"):
        configs(parse("--codec", "offline", "--front-end", "ec", "--colour-db", "3"))
    with pytest.raises(SystemExit) as exit_info:
        parse("--colour-db", "-1")
    assert exit_info.value.code == 2
    assert "argument --colour-db: must be a number >= 0, got '-1'" in capsys.readouterr().err
