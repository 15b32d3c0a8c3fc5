"""Imagen's recipe in miniature: a text encoder pretrained on captions alone, loaded into a model and kept frozen."""

import dataclasses

import pytest
import torch

from diffusion_lib.data.shapes import captioned_shapes
from diffusion_lib.models.text import TextConditionedUNet, TextEncoder, TextUNetConfig, Tokenizer
from diffusion_lib.models.text_pretraining import MaskedWordConfig, MaskedWordModel, hide_words, masked_word_loss
from diffusion_lib.models.unet import UNetConfig
from diffusion_lib.pretrained import load
from diffusion_lib.recipes.text_encoder import TEST_DRAW, TWO_OBJECT_FRACTION
from diffusion_lib.schedules import NoiseSchedule
from diffusion_lib.train import Trainer


def test_hidden_words_are_words_at_the_stated_rate_and_at_least_one_per_caption():
    lengths = torch.randint(1, 13, (4000,), generator=torch.Generator().manual_seed(0))
    mask = torch.arange(16) < lengths[:, None]
    ids = torch.where(mask, 5, 0)
    hidden = hide_words(ids, mask, 0.25, torch.Generator().manual_seed(1))
    assert not (hidden & ~mask).any()
    assert hidden.any(dim=1).all()
    # each word is hidden with probability 0.25, plus one forced word in captions that drew none
    forced = (0.75 ** lengths.double())
    expected = (0.25 * lengths.double() + forced).sum() / lengths.sum()
    assert float(hidden.sum() / mask.sum()) == pytest.approx(float(expected), abs=0.01)
    with pytest.raises(ValueError, match=r"rate must be in \(0, 1\)"):
        hide_words(ids, mask, 1.0, torch.Generator())


def load_pretrained_encoder():
    """The shipped pretrained text encoder (a TextEncoder) and its record."""
    model, _, meta = load("shapes_text_encoder")
    return model.encoder, meta


def test_the_shipped_encoder_still_scores_its_masked_word_accuracy_far_above_an_untrained_one():
    model, _, meta = load("shapes_text_encoder")
    assert isinstance(model, MaskedWordModel) and not model.training
    tokenizer = Tokenizer(meta["vocab"])
    captions = captioned_shapes(*TEST_DRAW, two_object_fraction=TWO_OBJECT_FRACTION).captions
    ids, mask = tokenizer.encode(captions, meta["model_config"]["max_len"])
    hidden = hide_words(ids, mask, meta["rate"], torch.Generator().manual_seed(1))
    with torch.no_grad():
        loss, accuracy = masked_word_loss(model, ids, mask, hidden)
        torch.manual_seed(0)
        _, untrained = masked_word_loss(MaskedWordModel(MaskedWordConfig(len(tokenizer))), ids, mask, hidden)
    assert float(accuracy) == pytest.approx(meta["test_accuracy"], abs=1e-4)
    assert float(loss) == pytest.approx(meta["test_loss"], abs=1e-4)
    assert meta["test_accuracy"] > 0.6 and float(untrained) < 0.2, (meta["test_accuracy"], float(untrained))
    assert meta["command"] == "python -m diffusion_lib.recipes.text_encoder --out diffusion_lib/pretrained"


def test_the_shipped_encoder_reads_the_vocabulary_of_the_diffusion_models_captions():
    encoder, meta = load_pretrained_encoder()
    assert isinstance(encoder, TextEncoder) and not encoder.training
    model_vocab = Tokenizer.from_captions(captioned_shapes(30000, 0, two_object_fraction=0.7).captions).vocab
    assert tuple(meta["vocab"]) == model_vocab


def text_model(vocab, freeze):
    unet = UNetConfig(in_channels=3, ch=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), image_size=8,
                      context_dim=64, num_heads=2)
    torch.manual_seed(0)
    return TextConditionedUNet(TextUNetConfig(unet, vocab, freeze_encoder=freeze))


def test_a_frozen_pretrained_encoder_stays_as_loaded_while_the_unet_trains():
    encoder, meta = load_pretrained_encoder()
    model = text_model(meta["vocab"], freeze=True)
    model.load_encoder(encoder, meta["vocab"])
    captions = ["a small red circle", "a large blue square"] * 8
    cond = model.encode_prompts(captions)
    unet_before = [p.detach().clone() for p in model.unet.parameters()]
    trainer = Trainer(model, NoiseSchedule.cosine(100), torch.rand(16, 3, 8, 8) * 2 - 1, cond=cond, batch_size=8,
                      cond_dropout=0.2)
    trainer.fit(3)
    for name, value in encoder.state_dict().items():
        assert torch.equal(model.encoder.state_dict()[name], value), name
    assert any(not torch.equal(a, b) for a, b in zip(unet_before, model.unet.parameters(), strict=True))
    # the same model unfrozen: the encoder learns too
    joint = text_model(meta["vocab"], freeze=False)
    joint.load_encoder(encoder, meta["vocab"])
    Trainer(joint, NoiseSchedule.cosine(100), torch.rand(16, 3, 8, 8) * 2 - 1, cond=cond, batch_size=8).fit(3)
    assert not torch.equal(joint.encoder.word.weight, encoder.word.weight)


def test_loading_an_encoder_of_another_vocabulary_or_size_is_an_error():
    encoder, meta = load_pretrained_encoder()
    model = text_model(meta["vocab"], freeze=True)
    with pytest.raises(ValueError, match="another vocabulary"):
        model.load_encoder(encoder, meta["vocab"][:-1])
    small = TextEncoder(len(meta["vocab"]), dim=64, depth=1)
    with pytest.raises(ValueError, match="size"):
        model.load_encoder(small, meta["vocab"])


def test_the_cli_loads_the_pretrained_encoder_and_freezes_it(tmp_path):
    from diffusion_lib.recipes.diffusion import build
    from diffusion_lib.train.config import read_config

    config_file = tmp_path / "frozen.toml"
    config_file.write_text('[data]\ndataset = "shapes"\nn_train = 2000\ntwo_object_fraction = 0.7\n'
                           '[model]\npreset = "shapes"\nch = 8\n[text]\nencoder = "shapes_text_encoder"\n'
                           'freeze_encoder = true\n[train]\nsteps = 1\n')
    config = read_config(config_file)
    model = build(config, torch.device("cpu")).model
    encoder, _ = load_pretrained_encoder()
    assert model.config.freeze_encoder and not any(p.requires_grad for p in model.encoder.parameters())
    assert all(torch.equal(a, b) for a, b in zip(model.encoder.state_dict().values(),
                                                 encoder.state_dict().values(), strict=True))
    assert dataclasses.asdict(model.config)["freeze_encoder"] is True
    config_file.write_text(config_file.read_text().replace("freeze_encoder = true", "freeze_encoder = 1"))
    with pytest.raises(ValueError, match=r"text.freeze_encoder must be bool, got 1"):
        read_config(config_file)
