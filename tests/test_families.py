"""The VAE, GAN and autoregressive families: they learn, their likelihoods are what they claim (normalised, causal,
bounds in the right order), the shipped ones still score what their JSON records, and the command line makes them."""

import dataclasses
import itertools
import json
import math
import statistics
from pathlib import Path

import pytest
import torch

from diffusion_lib import checkpoints
from diffusion_lib.data import load_digits
from diffusion_lib.families import (
    GAN,
    VAE,
    AutoregressiveConfig,
    AutoregressiveTransformer,
    GANConfig,
    VAEConfig,
    bits_per_pixel,
    from_tokens,
    to_tokens,
)
from diffusion_lib.pretrained import load
from diffusion_lib.train import train_family
from diffusion_lib.train.command import main as train_main
from diffusion_lib.train.config import CONFIGS
from diffusion_lib.train.config import read_family_config as read_config

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ("digits_vae", "digits_gan", "digits_autoregressive")
SMALL = {  # fast stand-ins for the tests that train
    "vae": lambda: VAE(VAEConfig(latent_dim=8, channels=8)),
    "gan": lambda: GAN(GANConfig(noise_dim=16, channels=16)),
    "autoregressive": lambda: AutoregressiveTransformer(AutoregressiveConfig(dim=32, depth=2, heads=2)),
}


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def train_images():
    return load_digits("train")[0]


@pytest.fixture(scope="module")
def test_images():
    return load_digits("test")[0]


@pytest.mark.parametrize("family", sorted(SMALL))
def test_each_family_learns_the_digits_within_a_few_dozen_steps(family, train_images):
    """The VAE's and the autoregressive model's -log p (bits per pixel) fall from about log2(17) = 4.1; the GAN's
    discriminator loss falls from 2 (chance, for the hinge loss) as it learns to tell real from fake."""
    torch.manual_seed(0)
    run = train_family(SMALL[family](), train_images, steps=40, batch_size=32, lr=2e-3, seed=0)
    history = run.history["d_loss" if family == "gan" else "loss"]
    assert len(history) == 40 == run.steps and run.train_seconds > 0
    assert statistics.mean(history[-5:]) < 0.8 * statistics.mean(history[:5]), history


def test_training_is_reproducible_from_the_seed(train_images):
    runs = []
    for seed in (0, 0, 1):
        torch.manual_seed(0)
        runs.append(train_family(SMALL["gan"](), train_images, steps=5, batch_size=16, seed=seed).history)
    assert runs[0] == runs[1] != runs[2]


def test_a_tiny_autoregressive_model_sums_to_one_over_every_image():
    """levels = 3 on a 2x2 image: 3^4 = 81 possible images, whose probabilities must sum to 1."""
    torch.manual_seed(0)
    model = AutoregressiveTransformer(AutoregressiveConfig(image_size=2, levels=3, dim=16, depth=2, heads=2)).eval()
    with torch.no_grad():
        torch.nn.init.normal_(model.head.weight, std=2.0)  # far from uniform, so the check has something to check
        every = torch.tensor(list(itertools.product(range(3), repeat=4))).view(81, 2, 2)
        probs = model.log_prob(every).exp()
    assert probs.max() > 5 * probs.min()
    assert float(probs.sum()) == pytest.approx(1.0, abs=1e-5)


def test_the_autoregressive_model_is_causal():
    """Changing pixel j (raster order) leaves p(x_i | x_<i) unchanged for every i <= j, and changes some i > j."""
    torch.manual_seed(0)
    model = SMALL["autoregressive"]().eval()
    tokens = torch.randint(0, 17, (2, 8, 8), generator=_gen(0))
    with torch.no_grad():
        before = model.conditionals(tokens)
        for j in (0, 9, 37, 62):
            changed = tokens.clone().view(2, 64)
            changed[:, j] = (changed[:, j] + 5) % 17
            after = model.conditionals(changed.view(2, 8, 8))
            torch.testing.assert_close(after[:, : j + 1], before[:, : j + 1], rtol=0, atol=1e-6)
            assert (after[:, j + 1:] - before[:, j + 1:]).abs().max() > 1e-4, j


def test_the_vae_bounds_rise_from_the_elbo_with_k(test_images):
    """E[IWAE_1] = ELBO <= IWAE_10 <= IWAE_100 <= log p(x), averaged over 64 test digits with fixed seeds."""
    model = load("digits_vae").model
    x = test_images[:64]
    with torch.no_grad():
        elbo = model.elbo(x, _gen(0)).mean()
        bound = {k: model.iwae_bound(x, k, _gen(1)).mean() for k in (1, 10, 100)}
    assert float(bound[1]) == pytest.approx(float(elbo), abs=2.0)  # nats per image; one z each, so only roughly
    assert elbo < bound[10] < bound[100] < 0, (elbo, bound)
    assert bound[100] - bound[10] > 0.5, bound


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_family_model_was_made_by_its_config_and_still_scores_its_test_metric(name, test_images):
    model, _, meta = load(name)
    assert not model.training
    assert meta["command"] == f"python -m diffusion_lib.train {name} --out runs"
    config = read_config(CONFIGS / f"{name}.toml")
    assert meta["config"] == config
    assert meta["steps"] == config["train"]["steps"] and 0 < meta["train_seconds"] < 6 * 60
    with torch.no_grad():
        if isinstance(model, VAE):
            measured = bits_per_pixel(-model.elbo(test_images, _gen(0))).mean()
        elif isinstance(model, AutoregressiveTransformer):
            measured = bits_per_pixel(-model.log_prob(model.to_tokens(test_images))).mean()
        else:
            from diffusion_lib.evaluation.digits import sample_quality

            measured = sample_quality(model.sample(1000, _gen(0)))["fd"]
    assert float(measured) == pytest.approx(meta["test_metric"]["value"], rel=1e-4)


@pytest.mark.parametrize("name", SHIPPED)
def test_samples_are_images_in_range_and_repeat_with_the_seed(name):
    model = load(name).model
    a, b = model.sample(16, _gen(3)), model.sample(16, _gen(3))
    assert a.shape == (16, 1, 8, 8) and a.dtype == torch.float32
    assert a.min() >= -1 and a.max() <= 1 and a.std() > 0.1
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_images_and_tokens_round_trip_and_off_grid_values_are_refused(train_images):
    tokens = to_tokens(train_images)
    assert tokens.shape == (1437, 8, 8) and tokens.dtype == torch.int64
    assert int(tokens.min()) == 0 and int(tokens.max()) == 16
    torch.testing.assert_close(from_tokens(tokens), train_images, rtol=0, atol=0)
    assert to_tokens(torch.tensor([[[-1.0, 0.0], [0.0, 1.0]]]), levels=3).tolist() == [[[0, 1], [1, 2]]]
    off_grid = train_images[:2].clone()
    off_grid[1, 0, 3, 4] = 0.0625  # half-way between two levels
    with pytest.raises(ValueError, match=r"grid of 17 grey levels .* found 0\.0625"):
        to_tokens(off_grid)
    with pytest.raises(ValueError, match=r"grid of 17 grey levels .* found 1\.125"):
        to_tokens(torch.full((1, 1, 8, 8), 1.125))
    with pytest.raises(ValueError, match=r"tokens must lie in 0..16"):
        from_tokens(torch.full((1, 8, 8), 17))


@pytest.mark.parametrize(("text", "message"), [
    ('[family]\nname = "vae"\nwidth = 3\n[train]\nsteps = 1\n', r"unknown key family\.width"),
    ('[family]\nname = "vae"\nlatent_dim = "8"\n[train]\nsteps = 1\n', r"family\.latent_dim must be int"),
    ('[family]\nname = "vae"\nlatent_dim = 0\n[train]\nsteps = 1\n', r"latent_dim must be an int >= 1"),
    ('[family]\nname = "autoregressive"\ndropout = true\n[train]\nsteps = 1\n', r"family\.dropout must be float"),
    ('[family]\nname = "flow"\n[train]\nsteps = 1\n', r"family\.name must be one of .*'vae'.*'flow'"),
    ('[family]\nname = "gan"\n[train]\nsteps = 1.5\n', r"train\.steps must be int"),
    ('[family]\nname = "gan"\n[train]\nbatch_size = 8\n', r"missing required key train\.steps"),
    ('[family]\nname = "gan"\n[train]\nsteps = 1\n[data]\ndataset = "digits"\n', r"unknown table \[data\]"),
])
def test_config_errors_name_the_key_and_the_file(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as error:
        read_config(path)
    assert str(path) in str(error.value)


@pytest.mark.parametrize("family", sorted(SMALL))
def test_a_saved_and_loaded_model_gives_the_same_outputs(family, tmp_path, test_images):
    torch.manual_seed(0)
    model = SMALL[family]().eval()
    meta = {"model_class": type(model).__name__, "model_config": dataclasses.asdict(model.config)}
    checkpoints.save(tmp_path / family, dict(model.state_dict()), meta)
    loaded = load(tmp_path / family).model
    torch.testing.assert_close(loaded.sample(8, _gen(0)), model.sample(8, _gen(0)), rtol=0, atol=0)
    if family != "gan":
        x = test_images[:8]
        score = (lambda m: m.elbo(x, _gen(1))) if family == "vae" else (lambda m: m.log_prob(m.to_tokens(x)))
        torch.testing.assert_close(score(loaded), score(model), rtol=0, atol=0)


@pytest.mark.parametrize("name", SHIPPED)
def test_the_training_command_line_writes_a_checkpoint_that_loads(name, tmp_path, capsys):
    config = f"diffusion_lib/configs/{name}.toml"
    assert train_main([str(ROOT / config), "--steps", "3", "--out", str(tmp_path)]) == 0
    model, _, meta = load(tmp_path / name)
    record = json.loads((tmp_path / f"{name}.json").read_text())
    assert record == meta and meta["steps"] == 3 and meta["train_seconds"] >= 0
    assert meta["command"] == f"python -m diffusion_lib.train {ROOT / config} --steps 3 --out {tmp_path}"
    assert meta["config"] == read_config(ROOT / config) and meta["model_class"] == type(model).__name__
    assert math.isfinite(meta["test_metric"]["value"]) and not model.training
    assert "wrote" in capsys.readouterr().out
