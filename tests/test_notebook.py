"""setup(): budget choice, seeding, device report, bad input; glue(): what the prose of a page reads."""

import random

import matplotlib as mpl
import numpy as np
import pytest
import torch

from diffusion_lib.notebook import BUDGETS, GLUE_PREFIX, Budget, glue, setup


@pytest.fixture(autouse=True)
def no_budget_env(monkeypatch):
    monkeypatch.delenv("DIFFUSION_BUDGET", raising=False)


def test_quick_budget_on_a_cpu_by_default(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    budget = setup()
    assert budget == Budget(name="quick", device=torch.device("cpu"), seed=0, **BUDGETS["quick"])
    expected = ("device: cpu | budget: quick (n_points=2,000, n_images=1,797, train_steps=4,000, "
                "image_train_steps=600) | seed: 0\n")
    assert capsys.readouterr().out == expected


def test_full_budget_when_cuda_is_available(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    budget = setup(verbose=False)
    assert (budget.name, budget.device.type) == ("full", "cuda")
    assert budget.n_points == BUDGETS["full"]["n_points"] > BUDGETS["quick"]["n_points"]


def test_environment_variable_overrides_the_device_default(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("DIFFUSION_BUDGET", "full")
    assert setup(verbose=False).name == "full"


def test_argument_overrides_the_environment_variable(monkeypatch):
    monkeypatch.setenv("DIFFUSION_BUDGET", "full")
    assert setup("quick", verbose=False).name == "quick"


def test_unknown_budget_is_rejected_naming_its_source(monkeypatch):
    with pytest.raises(ValueError, match=r"budget must be one of \('quick', 'full'\), got 'huge'"):
        setup("huge")
    monkeypatch.setenv("DIFFUSION_BUDGET", "tiny")
    with pytest.raises(ValueError, match=r"DIFFUSION_BUDGET must be one of \('quick', 'full'\), got 'tiny'"):
        setup()


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True])
def test_bad_seed_is_rejected(seed):
    with pytest.raises(ValueError, match="seed must be an int >= 0"):
        setup(seed=seed, verbose=False)


def test_setup_seeds_python_numpy_and_torch():
    def draw():
        return random.random(), np.random.rand(), torch.rand(1).item()  # noqa: NPY002 - the legacy global state

    setup(seed=3, verbose=False)
    first = draw()
    setup(seed=3, verbose=False)
    assert draw() == first
    setup(seed=4, verbose=False)
    assert draw() != first


def test_budget_generators_are_independent_and_reproducible():
    budget = setup(seed=5, verbose=False)
    a, b = torch.rand(3, generator=budget.generator(1)), torch.rand(3, generator=budget.generator(1))
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, torch.rand(3, generator=budget.generator(2)))


def test_setup_sets_the_figure_style():
    mpl.rcParams["axes.spines.top"] = True
    setup(verbose=False)
    assert mpl.rcParams["axes.spines.top"] is False
    assert mpl.rcParams["figure.facecolor"] == "white"


def test_glue_stores_the_value_where_myst_nb_reads_it_and_rounds_floats(monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda *args, **kwargs: shown.append((args, kwargs)))
    glue("fd", 174.301734)
    glue("count", 3272)
    glue("psnr", 25.86, digits=2)
    bundles = [args[0] for args, _ in shown]
    assert bundles == [{GLUE_PREFIX + "text/plain": "174.3"}, {GLUE_PREFIX + "text/plain": "3272"},
                       {GLUE_PREFIX + "text/plain": "26.0"}]
    assert [kwargs["metadata"]["scrapbook"] for _, kwargs in shown] == [
        {"name": n, "mime_prefix": GLUE_PREFIX} for n in ("fd", "count", "psnr")]
    assert all(kwargs["raw"] for _, kwargs in shown)


@pytest.mark.parametrize("name, value, message", [
    ("two words", 1, "name must be a Python identifier"),
    ("fd", True, "value must be an int or a finite float"),
    ("fd", float("nan"), "value must be an int or a finite float"),
    ("fd", "174", "value must be an int or a finite float"),
])
def test_glue_rejects_bad_names_and_values(name, value, message):
    with pytest.raises(ValueError, match=message):
        glue(name, value)
