"""The gin-text reader: every syntax the published EnCodecMAE configs use, on small hand-written texts."""
import textwrap

import pytest

from hear_codec.gin import GinConfig, GinError, parse_gin, reference


def test_macros_scopes_and_references():
    gin = GinConfig(textwrap.dedent("""
        MODEL_DIM=64
        encoder/pkg.models.TransformerEncoder.model_dim=%MODEL_DIM
        pkg.models.TransformerEncoder.model_dim=32
        pkg.models.EncodecMAE.visible_encoder=@encoder/pkg.models.TransformerEncoder
        pkg.models.EncodecMAE.head=@pkg.heads.FrameLevelClassificationHead()
    """))
    assert gin.macro("MODEL_DIM") == 64
    assert gin.get("TransformerEncoder", "model_dim", scope="encoder") == 64  # the macro, resolved
    assert gin.get("TransformerEncoder", "model_dim", scope="decoder") == 32  # falls back to unscoped
    assert gin.get("TransformerEncoder", "num_layers", default=5) == 5
    assert reference(gin.get("EncodecMAE", "visible_encoder")) == ("encoder", "TransformerEncoder")
    assert reference(gin.get("EncodecMAE", "head")) == ("", "FrameLevelClassificationHead")
    assert reference(64) == (None, None)
    assert gin.mentions("FrameLevelClassificationHead") and not gin.mentions("SEANetEncoder")


def test_blocks_continuations_and_multiline_values():
    text = textwrap.dedent("""
        pkg.Masker:
            p_mask = 0.5
            gap_size = 15
        pkg.Loss.weights = [0.5,
                            0.25,  # coarse codebooks weigh more
                            0.25]
        pkg.Reader.max_length = \\
            4
    """)
    assert parse_gin(text) == {"pkg.Masker.p_mask": "0.5", "pkg.Masker.gap_size": "15",
                               "pkg.Loss.weights": "[0.5, 0.25, 0.25]", "pkg.Reader.max_length": "4"}
    gin = GinConfig(text)
    assert gin.get("Loss", "weights") == [0.5, 0.25, 0.25] and gin.get("Reader", "max_length") == 4


def test_comments_strings_and_skipped_lines():
    text = textwrap.dedent("""
        include 'base.gin'
        import pkg.models
        pkg.Encoder.norm_type = 'ResiDual'  # the official default
        pkg.Proc.name = "a#b"
        pkg.Proc.callbacks += [@pkg.A]
        pkg.Proc.refs = [@pkg.A, @pkg.B()]
    """)
    gin = GinConfig(text)
    assert gin.get("Encoder", "norm_type") == "ResiDual"
    assert gin.get("Proc", "name") == "a#b"  # '#' inside a string is not a comment
    assert gin.get("Proc", "callbacks") is None  # '+=' is skipped
    assert gin.get("Proc", "refs") == ["@pkg.A", "@pkg.B()"]
    assert "include 'base.gin'" not in str(parse_gin(text))


def test_the_newest_binding_wins():
    bindings = parse_gin("A.x = 1\nB.y = 2\nA.x = 3\n")
    assert bindings == {"B.y": "2", "A.x": "3"} and list(bindings) == ["B.y", "A.x"]
    assert GinConfig("A.x = 1\nA.x = 3\n").get("A", "x") == 3


def test_an_unbound_macro_is_named():
    gin = GinConfig("pkg.Encoder.model_dim = %MODEL_DIM\n")
    with pytest.raises(GinError, match="does not set the macro MODEL_DIM"):
        gin.get("Encoder", "model_dim")
    assert gin.macro("MAX_AUDIO_DURATION", 4) == 4
