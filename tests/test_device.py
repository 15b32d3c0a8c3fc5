"""The book runs on ``budget.device``: the chapters put their models and data there, ``Trainer`` keeps all of its state
there, ``setup()`` says which device it picked, and the figure and metric helpers take tensors from any device.

No test here needs a GPU except those marked ``gpu``. A second device is imitated in two ways: PyTorch's "meta" device
(tensors with a shape and no values: enough to see where ``Trainer`` puts things, with the few calls that refuse
"meta" monkeypatched), and :class:`OffCPU`, a tensor that behaves as a CUDA tensor does towards CPU code: numpy
refuses it, and it cannot be mixed with a CPU tensor, until ``.cpu()`` brings it back.
"""

import ast
import contextlib
import json
import re
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))

# --------------------------------------------------------------------------- the chapters, read statically

LOADERS = {"load"}  # diffusion_lib.pretrained.load, the one loader of every shipped model
MODEL_BUILDERS = {"unet_from_preset", "MLPDenoiser", "UNet", "MaskedWordModel"}
SAMPLERS = {"sample_ddpm", "sample_ddim", "sample_dpmpp_2m", "ddim_invert", "sdedit", "inpaint", "generate"}
NOISE_NAMES = re.compile(r"^(x_T|x_grid|z.*)$")
# calls that draw random numbers on the device of their model or tensors, so their generator must live there too
# (generate and upscale draw their noise on the CPU from the caller's generator and move it: a CPU generator is right)
DRAWS_ON_THE_DEVICE = (SAMPLERS - {"generate"}) | {"super_resolve", "sample", "elbo", "iwae_bound", "multinomial"}

# Models that may stay on the CPU, by (chapter, source of the call), each with its reason.
CPU_EXCEPTIONS = {
    # built only to count its parameters (35.7M for the DDPM CIFAR-10 preset): nothing runs through it
    ("04_denoiser", "unet_from_preset(name)"),
    # built only to count the parameters of the class embedding
    ("04_denoiser", "unet_from_preset('digits', num_classes=10)"),
}


def _code_cells(path: Path):
    for index, cell in enumerate(json.loads(path.read_text())["cells"]):
        if cell["cell_type"] == "code":
            yield index, ast.parse("".join(cell["source"]))


def _name(func: ast.expr) -> str | None:
    """The called name: ``f`` for ``f(...)`` and for ``obj.f(...)``."""
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None


def _is_budget_device(node: ast.expr | None) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "device" and isinstance(node.value, ast.Name)
            and node.value.id == "budget")


def _device_keyword(call: ast.Call) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == "device"), None)


def _moved_to_budget_device(node: ast.expr, parents: dict) -> bool:
    """``node.to(budget.device)`` (or ``.to(device=budget.device)``)."""
    attribute = parents.get(node)
    call = parents.get(attribute)
    return (isinstance(attribute, ast.Attribute) and attribute.attr == "to" and isinstance(call, ast.Call)
            and call.func is attribute
            and (_is_budget_device(call.args[0] if call.args else None) or _is_budget_device(_device_keyword(call))))


def _is_cpu_generator(node: ast.expr) -> bool:
    """``budget.generator(k)``, ``torch.Generator()`` or ``torch.Generator().manual_seed(s)``: generators that live on
    the CPU whatever the budget's device is."""
    while isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "manual_seed":
        node = node.func.value
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    budget_generator = (isinstance(func, ast.Attribute) and func.attr == "generator"
                        and isinstance(func.value, ast.Name) and func.value.id == "budget")
    torch_generator = (_name(func) == "Generator" and not node.args and _device_keyword(node) is None)
    return budget_generator or torch_generator


def _device_problems(path: Path) -> list[str]:
    chapter = path.stem
    problems = []
    for index, tree in _code_cells(path):
        parents = {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
        calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)]
        trainer_args = {id(a) for c in calls if _name(c.func) == "Trainer" for a in c.args}
        trained_names = {a.id for c in calls if _name(c.func) == "Trainer" for a in c.args if isinstance(a, ast.Name)}
        for call in calls:
            name, where = _name(call.func), f"{chapter} cell {index}: {ast.unparse(call)[:90]}"
            if name == "Trainer" and not _is_budget_device(_device_keyword(call)):
                problems.append(f"{where}: Trainer without device=budget.device")
            if name in LOADERS and not _is_budget_device(_device_keyword(call)):
                problems.append(f"{where}: loader without device=budget.device")
            if name in MODEL_BUILDERS and (chapter, ast.unparse(call)) not in CPU_EXCEPTIONS:
                parent = parents.get(call)
                assigned = (isinstance(parent, ast.Assign) and len(parent.targets) == 1
                            and isinstance(parent.targets[0], ast.Name) and parent.targets[0].id in trained_names)
                if not (id(call) in trainer_args or assigned or _moved_to_budget_device(call, parents)):
                    problems.append(f"{where}: model neither given to a Trainer nor moved to budget.device")
            if (isinstance(call.func, ast.Attribute) and call.func.attr == "randn"
                    and not _moved_to_budget_device(call, parents)):
                parent = parents.get(call)
                to_sampler = isinstance(parent, ast.Call) and _name(parent.func) in SAMPLERS and call in (
                    *parent.args, *(k.value for k in parent.keywords))
                named_noise = (isinstance(parent, ast.Assign) and any(
                    isinstance(t, ast.Name) and NOISE_NAMES.match(t.id) for t in parent.targets))
                if to_sampler or named_noise:
                    problems.append(f"{where}: starting noise not moved to budget.device")
            if name in DRAWS_ON_THE_DEVICE:
                for argument in (*call.args, *(k.value for k in call.keywords)):
                    if _is_cpu_generator(argument):
                        problems.append(f"{where}: a CPU generator ({ast.unparse(argument)}) where the draws happen "
                                        f"on budget.device: use budget.device_generator(k)")
    return problems


def test_every_chapter_runs_its_models_and_data_on_the_budgets_device():
    """Read every code cell of every chapter and check these rules:

    1. ``Trainer(...)`` is given ``device=budget.device``.
    2. Every model loaded (``pretrained.load``, the one loader of every shipped model) is given
       ``device=budget.device``.
    3. A model the chapter builds (``MODEL_BUILDERS``: ``unet_from_preset``, ``MLPDenoiser``, ...) is passed to a
       ``Trainer`` in the same cell (directly, or through the name it is assigned to), or is moved:
       ``unet_from_preset(...).to(budget.device)``. Exceptions: ``CPU_EXCEPTIONS``, each with its reason.
    4. Starting noise, a ``torch.randn(...)`` passed straight to a sampler (``SAMPLERS``) or assigned to ``x_T``,
       ``x_grid`` or a name starting with ``z``, is drawn on the CPU from the chapter's generator and moved:
       ``torch.randn(..., generator=budget.generator(k)).to(budget.device)``, so that a CPU and a GPU start from
       the same numbers.
    5. A call that draws random numbers on the device of its tensors (the samplers and editors, the family models'
       ``sample``/``elbo``/``iwae_bound``, ``torch.multinomial``) is not given a CPU generator
       (``budget.generator(k)``, ``torch.Generator()``): ``budget.device_generator(k)`` is the one on the device,
       and on a CPU the very same generator.
    """
    problems = [problem for path in NOTEBOOKS for problem in _device_problems(path)]
    assert not problems, "\n".join(problems)


def test_the_static_check_catches_each_kind_of_cpu_bound_cell(tmp_path):
    source = "\n".join([
        "model = unet_from_preset('digits')",
        "trainer = Trainer(MLPDenoiser(dim=2), schedule, data)",
        "shipped, schedule, meta = pretrained.load('digits')",
        "x_T = torch.randn(4, 1, 8, 8, generator=budget.generator(1))",
        "images = sample_ddim(shipped, torch.randn(4, 1, 8, 8), schedule, 10, generator=budget.generator(2))",
        "fine = sample_ddpm(model.to(budget.device), x_T.to(budget.device), schedule,",
        "                   generator=budget.device_generator(3))",
    ])
    notebook = {"cells": [{"cell_type": "code", "source": source}]}
    path = tmp_path / "99_example.ipynb"
    path.write_text(json.dumps(notebook))
    problems = _device_problems(path)
    assert sorted(p.rsplit(": ", 1)[1] for p in problems) == sorted([
        "model neither given to a Trainer nor moved to budget.device",
        "Trainer without device=budget.device",
        "loader without device=budget.device",
        "starting noise not moved to budget.device",
        "starting noise not moved to budget.device",
        "use budget.device_generator(k)",
    ])


def test_the_chapters_no_longer_point_at_a_configs_folder():
    """The training configs ship inside the package, and the command takes a shipped name:
    ``python -m diffusion_lib.train NAME --out runs``."""
    stale = [f"{path.stem} cell {i}" for path in NOTEBOOKS
             for i, cell in enumerate(json.loads(path.read_text())["cells"])
             if re.search(r"(?<![\w/])configs/\w+\.toml", "".join(cell["source"]))]
    assert not stale, stale


# --------------------------------------------------------------------------- setup() and the budget's generators


def test_setup_reports_the_gpu_it_picked(monkeypatch, capsys):
    from diffusion_lib.notebook import setup

    monkeypatch.delenv("DIFFUSION_BUDGET", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    budget = setup()
    assert (budget.device, budget.name) == (torch.device("cuda"), "full")
    assert capsys.readouterr().out.startswith("device: cuda (Tesla T4) | budget: full (")


def test_device_generator_lives_on_the_budgets_device_and_is_the_cpu_generator_on_a_cpu(monkeypatch):
    from diffusion_lib.notebook import setup

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    budget = setup("quick", seed=3, verbose=False)
    generator = budget.device_generator(2)
    assert generator.device == budget.device == torch.device("cpu")
    torch.testing.assert_close(torch.randn(5, generator=generator), torch.randn(5, generator=budget.generator(2)),
                               rtol=0, atol=0)


# --------------------------------------------------------------------------- Trainer


class _TinyConditional(nn.Module):
    """A denoiser small enough for the meta device: a linear map of x_t plus a class embedding."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 2)
        self.embed = nn.Embedding(3, 2)

    def forward(self, x_t, t, cond):
        return self.linear(x_t) + self.embed(cond)


def _where_trainer_puts_things(trainer) -> dict[str, torch.device]:
    places = {
        "model": next(trainer.model.parameters()).device,
        "ema_model": next(trainer.ema_model.parameters()).device,
        "data": trainer.data.device,
        "cond": trainer.cond.device,
        "data_generator": trainer.data_generator.device,
        "noise_generator": trainer.noise_generator.device,
    }
    for state in trainer.optimizer.state.values():
        places |= {f"optimizer {k}": v.device for k, v in state.items() if k != "step"}
    return places


def _one_recorded_step(trainer) -> dict[str, torch.device]:
    batches = []
    draw = trainer._batch
    trainer._batch = lambda: batches.append(draw()) or batches[-1]
    trainer.train_step()
    x0, cond, t, noise = batches[0][:4]
    return {"batch x0": x0.device, "batch cond": cond.device, "batch t": t.device, "batch noise": noise.device}


def test_trainer_keeps_model_ema_optimiser_data_and_generators_on_the_cpu_it_is_given():
    from diffusion_lib.schedules import NoiseSchedule
    from diffusion_lib.train import Trainer

    torch.manual_seed(0)
    trainer = Trainer(_TinyConditional(), NoiseSchedule.linear(), torch.randn(16, 2), cond=torch.arange(16) % 3,
                      batch_size=4, ema_decay=0.9, amp=None, device="cpu")
    places = _one_recorded_step(trainer) | _where_trainer_puts_things(trainer)
    assert "optimizer exp_avg" in places
    assert set(places.values()) == {torch.device("cpu")}, places


def test_trainer_moves_a_model_built_on_the_cpu_and_all_its_state_to_another_device(monkeypatch):
    """Trains one step on the "meta" device, a model built on the CPU. Three calls refuse "meta", and are patched:
    ``torch.Generator`` (a stand-in that records its device), the random draws that take it (which then draw
    without it) and ``torch.autocast`` (a no-op: no mixed precision here anyway)."""
    from diffusion_lib.schedules import NoiseSchedule
    from diffusion_lib.train import Trainer

    class RecordingGenerator:
        def __init__(self, device="cpu"):
            self.device = torch.device(device)

        def manual_seed(self, seed):
            return self

    def without_generator(draw):
        def wrapped(*args, generator=None, **kwargs):
            if generator is not None:
                assert isinstance(generator, RecordingGenerator) and generator.device == kwargs.get("device")
            return draw(*args, **kwargs)
        return wrapped

    for name in ("randint", "randn", "rand"):
        monkeypatch.setattr(torch, name, without_generator(getattr(torch, name)))
    monkeypatch.setattr(torch, "Generator", RecordingGenerator)
    monkeypatch.setattr(torch, "autocast", lambda *args, **kwargs: contextlib.nullcontext())

    model = _TinyConditional()
    trainer = Trainer(model, NoiseSchedule.linear(), torch.randn(16, 2), cond=torch.arange(16) % 3,
                      batch_size=4, ema_decay=0.9, amp=None, device="meta")
    places = _one_recorded_step(trainer) | _where_trainer_puts_things(trainer)
    assert "optimizer exp_avg" in places
    assert set(places.values()) == {torch.device("meta")}, places
    assert next(model.parameters()).device == torch.device("meta")  # the chapter's own handle moved with it


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_trainer_keeps_everything_on_the_gpu_it_is_given():
    from diffusion_lib.schedules import NoiseSchedule
    from diffusion_lib.train import Trainer

    trainer = Trainer(_TinyConditional(), NoiseSchedule.linear(), torch.randn(16, 2), cond=torch.arange(16) % 3,
                      batch_size=4, ema_decay=0.9, device="cuda")
    places = _one_recorded_step(trainer) | _where_trainer_puts_things(trainer)
    assert {d.type for d in places.values()} == {"cuda"}, places


# --------------------------------------------------------------------------- figures and metrics take any device


class OffCPU(torch.Tensor):
    """A CPU tensor that behaves as a CUDA tensor does towards CPU code: numpy refuses it, and an operation that mixes
    it with a CPU tensor of one or more dimensions raises (as CUDA and CPU tensors do), until ``.cpu()`` or
    ``.to("cpu")`` brings it back as a plain tensor. Its ``.device`` still says "cpu", so code that moves other
    tensors to ``x.device`` is not what it tests: it tests code that brings results back with ``.cpu()``."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (torch.Tensor.numpy, torch.Tensor.__array__):
            raise TypeError("can't convert an OffCPU tensor to numpy: use Tensor.cpu() first")
        tensors = [a for a in (*args, *kwargs.values(), *(x for a in args if isinstance(a, list | tuple) for x in a))
                   if isinstance(a, torch.Tensor)]
        back = func is torch.Tensor.cpu or (func is torch.Tensor.to and _to_the_cpu(args[1:], kwargs))
        if (not back and any(isinstance(t, OffCPU) for t in tensors)
                and any(not isinstance(t, OffCPU) and t.ndim > 0 for t in tensors)):
            raise RuntimeError(f"Expected all tensors to be on the same device ({func.__name__} mixes OffCPU and cpu)")
        with torch._C.DisableTorchFunctionSubclass():
            result = func(*args, **kwargs)
        if back:
            return result.as_subclass(torch.Tensor)
        if not any(isinstance(t, OffCPU) for t in tensors):
            return result
        return result.as_subclass(OffCPU) if isinstance(result, torch.Tensor) and type(result) is torch.Tensor \
            else result


def _to_the_cpu(args, kwargs) -> bool:
    target = kwargs.get("device", args[0] if args else None)
    if isinstance(target, torch.Tensor):
        return not isinstance(target, OffCPU)
    return isinstance(target, str | torch.device) and torch.device(target).type == "cpu"


def _off_cpu(tensor: torch.Tensor) -> OffCPU:
    return tensor.as_subclass(OffCPU)


def test_the_off_cpu_stand_in_refuses_what_a_cuda_tensor_refuses():
    x = _off_cpu(torch.ones(3))
    with pytest.raises(TypeError, match="numpy"):
        x.numpy()
    with pytest.raises(RuntimeError, match="same device"):
        x + torch.ones(3)
    assert type(x * 2) is OffCPU and type(x.cpu()) is torch.Tensor and type(x.to("cpu")) is torch.Tensor
    assert float(x.sum()) == 3.0


def test_figure_helpers_take_tensors_that_are_not_on_the_cpu():
    from diffusion_lib.viz import animate_images, image_grid, scatter_panels, show_images, show_strip, to_display

    images = _off_cpu(torch.rand(4, 1, 8, 8) * 2 - 1)
    expected = to_display(images.cpu())
    assert (to_display(images) == expected).all()
    assert image_grid(images).shape == image_grid(images.cpu()).shape
    show_images(images)
    show_strip(_off_cpu(torch.zeros(2, 3, 1, 8, 8)), ["a", "b"])
    animate_images(_off_cpu(torch.zeros(2, 3, 1, 8, 8)), ["a", "b"])
    points = _off_cpu(torch.randn(2, 50, 2))
    scatter_panels(points, ["a", "b"], color=_off_cpu(torch.rand(50)))
    scatter_panels(torch.randn(2, 50, 2, requires_grad=True), ["a", "b"], color=torch.rand(50, requires_grad=True))
    plt.close("all")


def test_field_panels_runs_the_denoiser_on_the_device_of_its_parameters():
    from diffusion_lib.schedules import NoiseSchedule
    from diffusion_lib.viz import field_panels

    class Elsewhere(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.zeros(2, device="meta"))
            self.seen = set()

        def forward(self, x_t, t, cond):
            self.seen |= {x_t.device, t.device}
            return torch.zeros(x_t.shape)

    denoiser = Elsewhere()
    field_panels(denoiser, NoiseSchedule.linear(), [10, 500], ["a", "b"], data=_off_cpu(torch.randn(20, 2)))
    plt.close("all")
    assert denoiser.seen == {torch.device("meta")}


def test_image_metrics_take_tensors_that_are_not_on_the_cpu():
    from diffusion_lib.data import load_digits
    from diffusion_lib.evaluation.digits import sample_quality
    from diffusion_lib.metrics import (
        class_histogram,
        conditional_accuracy,
        frechet_distance,
        kernel_inception_distance,
        memorisation_rate,
        nearest_neighbour_distances,
        psnr,
        within_class_spread,
    )

    test = load_digits("test")[0]
    samples = test[:40] + 0.1 * torch.randn(test[:40].shape, generator=torch.Generator().manual_seed(0))
    here, there = sample_quality(samples), sample_quality(_off_cpu(samples))
    assert there["fd"] == here["fd"] and there["memorisation_rate"] == here["memorisation_rate"]
    assert type(there["class_histogram"]) is torch.Tensor
    assert psnr(_off_cpu(samples), test[:40]) == psnr(samples, test[:40])
    features, labels = torch.randn(40, 3), torch.arange(40) % 4
    assert within_class_spread(_off_cpu(features), labels) == within_class_spread(features, labels)
    assert conditional_accuracy(_off_cpu(labels), labels) == 1.0
    assert type(class_histogram(_off_cpu(labels), 4)) is torch.Tensor
    assert frechet_distance(_off_cpu(features), features + 1) == frechet_distance(features, features + 1)
    assert kernel_inception_distance(_off_cpu(features), features + 1) == kernel_inception_distance(features,
                                                                                                   features + 1)
    assert type(nearest_neighbour_distances(_off_cpu(samples), test)) is torch.Tensor
    assert memorisation_rate(_off_cpu(samples), test, test) == memorisation_rate(samples, test, test)


def test_point_cloud_metrics_run_on_the_device_of_x_with_a_cpu_generator():
    """The chapters draw the projections of the sliced Wasserstein distance from their CPU generator, whatever the
    device of the points: the same directions on a CPU and a GPU."""
    from diffusion_lib.metrics import mmd_rbf, sliced_wasserstein

    x, y = torch.randn(30, 2), torch.randn(30, 2) + 1  # equal sizes: "meta" has no torch.unique
    distance = sliced_wasserstein(x.to("meta"), y, generator=torch.Generator().manual_seed(0))
    assert distance.device == torch.device("meta") and distance.shape == ()
    assert mmd_rbf(x.to("meta"), y, bandwidth=1.0).device == torch.device("meta")


def test_the_reference_classifiers_take_images_from_any_device_and_answer_on_the_cpu():
    from diffusion_lib.pretrained import load

    digits = load("digits_classifier").model
    images = torch.rand(5, 1, 8, 8) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(digits(_off_cpu(images)).cpu(), digits(images))
    shapes = load("shapes_classifier").model
    read = shapes.predict(_off_cpu(torch.rand(3, 3, 16, 16) * 2 - 1))
    assert {type(v) for v in read.values()} == {torch.Tensor}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_figures_and_metrics_take_cuda_tensors():
    from diffusion_lib.data import load_digits
    from diffusion_lib.evaluation.digits import sample_quality
    from diffusion_lib.metrics import mmd_rbf, psnr, sliced_wasserstein, within_class_spread
    from diffusion_lib.pretrained import load
    from diffusion_lib.viz import scatter_panels, show_images

    test = load_digits("test")[0]
    samples = test[:40].cuda()
    show_images(samples)
    scatter_panels(torch.randn(1, 50, 2, device="cuda"), ["a"], color=torch.rand(50, device="cuda"))
    plt.close("all")
    assert sample_quality(samples, classifier=load("digits_classifier", device="cuda").model)["fd"] >= 0
    assert psnr(samples + 0.1, test[:40]) == pytest.approx(psnr(test[:40] + 0.1, test[:40]))
    assert within_class_spread(torch.randn(40, 3, device="cuda"), torch.arange(40) % 4) > 0
    x, y = torch.randn(30, 2, device="cuda"), torch.randn(20, 2)
    assert sliced_wasserstein(x, y, generator=torch.Generator().manual_seed(0)).device.type == "cuda"
    assert mmd_rbf(x, y).device.type == "cuda"
