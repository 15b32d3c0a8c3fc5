"""The full training path: EMA, checkpoints, exact resume, distributed training, and the command line."""

import itertools
import json
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from diffusion_lib import checkpoints
from diffusion_lib.data import load_digits
from diffusion_lib.models import MLPDenoiser
from diffusion_lib.models.unet import unet_from_preset
from diffusion_lib.pretrained import load
from diffusion_lib.schedules import NoiseSchedule
from diffusion_lib.train import Trainer
from diffusion_lib.train.command import main
from diffusion_lib.train.config import read_config

DIGITS = load_digits("train")[0][:256]


def _unet_trainer(seed=0, **kwargs):
    torch.manual_seed(seed)
    model = unet_from_preset("digits_small", dropout=0.1)  # dropout: its masks must be drawn again exactly
    options = dict(batch_size=16, lr=1e-3, warmup_steps=2, ema_decay=0.99, log_every=2)
    return Trainer(model, NoiseSchedule.cosine(), DIGITS, **(options | kwargs))


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_training_n_steps_equals_n_over_2_then_resume_bit_for_bit(tmp_path):
    straight = _unet_trainer()
    straight.fit(6)

    first_half = _unet_trainer()
    first_half.fit(3)
    first_half.save(tmp_path / "state")
    torch.manual_seed(123)  # disturb the global RNG: resuming must restore it
    resumed = _unet_trainer(seed=99)  # different initial weights: they must be overwritten
    resumed.load_state(tmp_path / "state")
    assert first_half.train_seconds > 0
    assert resumed.train_seconds == round(first_half.train_seconds, 1)  # the clock carries over (to 0.1 s)
    resumed.fit(3)
    assert resumed.train_seconds > round(first_half.train_seconds, 1)

    assert resumed.step == straight.step == 6
    assert _same(resumed.model, straight.model)
    assert _same(resumed.ema_model, straight.ema_model)
    assert resumed.history == straight.history
    torch.testing.assert_close(resumed.loss_by_t()[1], straight.loss_by_t()[1], equal_nan=True)


def test_ema_follows_its_warmed_up_decay():
    trainer = _unet_trainer(ema_decay=0.999)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.fit(1)
    weight = 1 - min(0.999, 1 / 10)  # step 0: the warm-up decay (1 + 0) / (10 + 0)
    for ema, old, new in zip(trainer.ema_model.parameters(), before, trainer.model.parameters(), strict=True):
        torch.testing.assert_close(ema, old + weight * (new.detach() - old))
    assert trainer.ema_decay_at(10_000) == 0.999


def test_loss_by_t_counts_every_example():
    trainer = _unet_trainer()
    trainer.fit(4)
    centres, means = trainer.loss_by_t()
    assert centres.tolist() == [50.0 + 100 * i for i in range(10)]
    assert trainer.bucket_count.sum().item() == 4 * 16
    occupied = trainer.bucket_count > 0
    assert torch.isfinite(means[occupied.cpu()]).all()


# --------------------------------------------------------------------------- checkpoint files


def test_a_checkpoint_round_trips_and_records_its_hash(tmp_path):
    tensors = {"a": torch.arange(6.0).reshape(2, 3), "b": torch.tensor([1, 2], dtype=torch.int64)}
    checkpoints.save(tmp_path / "ck", tensors, {"note": "x"})
    loaded, meta = checkpoints.load(tmp_path / "ck.json")
    assert torch.equal(loaded["a"], tensors["a"]) and torch.equal(loaded["b"], tensors["b"])
    assert meta["note"] == "x" and meta["format"] == checkpoints.FORMAT and len(meta["tensors_sha256"]) == 64
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.json", "ck.safetensors"]  # no temporary files left


def test_corrupt_truncated_or_mismatched_checkpoints_are_refused(tmp_path):
    checkpoints.save(tmp_path / "ck", {"a": torch.zeros(100)}, {})
    tensor_file = tmp_path / "ck.safetensors"
    good = tensor_file.read_bytes()

    tensor_file.write_bytes(good[: len(good) // 2])  # truncated
    with pytest.raises(ValueError, match=r"does not match .*ck\.json: its SHA-256 is"):
        checkpoints.load(tmp_path / "ck")

    checkpoints.save(tmp_path / "other", {"a": torch.ones(100)}, {})
    tensor_file.write_bytes((tmp_path / "other.safetensors").read_bytes())  # a file from another save
    with pytest.raises(ValueError, match="files from two different saves"):
        checkpoints.load(tmp_path / "ck")

    (tmp_path / "ck.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"ck\.json is not valid JSON"):
        checkpoints.load(tmp_path / "ck")
    (tmp_path / "ck.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ValueError, match=r"is not a diffusion_lib\.checkpoint/2 checkpoint \(format: .something"):
        checkpoints.load(tmp_path / "ck")
    (tmp_path / "ck.json").write_text(json.dumps({"format": "diffusion_lib.checkpoint/1"}))  # config not hashed
    with pytest.raises(ValueError, match=r"not a diffusion_lib\.checkpoint/2 checkpoint \(format: .*checkpoint/1"):
        checkpoints.load(tmp_path / "ck")
    with pytest.raises(FileNotFoundError, match=r"missing\.json does not exist"):
        checkpoints.load(tmp_path / "missing")


def test_a_failed_save_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    checkpoints.save(tmp_path / "ck", {"a": torch.zeros(3)}, {"version": 1})

    def broken(tensors, filename):
        Path(filename).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoints, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        checkpoints.save(tmp_path / "ck", {"a": torch.ones(3)}, {"version": 2})
    tensors, meta = checkpoints.load(tmp_path / "ck")
    assert meta["version"] == 1 and torch.equal(tensors["a"], torch.zeros(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.json", "ck.safetensors"]


def test_a_checkpoint_of_another_model_is_refused_and_changes_nothing(tmp_path):
    small = _unet_trainer()
    small.save(tmp_path / "small")
    torch.manual_seed(0)
    other = Trainer(unet_from_preset("digits"), NoiseSchedule.cosine(), DIGITS, ema_decay=0.99)
    before = {k: v.clone() for k, v in other.model.state_dict().items()}
    with pytest.raises(ValueError, match=r"does not fit this model: model\..* should have shape"):
        other.load_state(tmp_path / "small")
    assert all(torch.equal(before[k], v) for k, v in other.model.state_dict().items())
    assert other.step == 0


# --------------------------------------------------------------------------- several processes


def _mlp_trainer() -> Trainer:
    """In float64: Adam divides each gradient by its running size, so float32 rounding in the order of the sums
    (one process or two) becomes visible in weights whose gradient is near 0; float64 keeps it below 1e-12."""
    torch.manual_seed(0)
    data = torch.randn(512, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return Trainer(MLPDenoiser(dim=2).double(), NoiseSchedule.linear(), data, batch_size=64, lr=1e-2, ema_decay=0.9,
                   log_every=1)


def _ddp_worker(rank: int, world_size: int, folder: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=world_size)
    try:
        trainer = _mlp_trainer()
        trainer.fit(3)
        if rank == 0:
            save_file({k: v.contiguous() for k, v in trainer.model.state_dict().items()}, f"{folder}/ddp.safetensors")
            save_file({"history": torch.tensor(trainer.history, dtype=torch.float64)}, f"{folder}/history.safetensors")
    finally:
        dist.destroy_process_group()


def test_two_processes_make_the_same_updates_as_one_on_the_whole_batch(tmp_path):
    mp.spawn(_ddp_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    single = _mlp_trainer()
    single.fit(3)
    distributed = load_file(tmp_path / "ddp.safetensors")
    for name, value in single.model.state_dict().items():
        assert (distributed[name] - value).abs().max() < 1e-6, name
    history = load_file(tmp_path / "history.safetensors")["history"]
    assert (history - torch.tensor(single.history, dtype=torch.float64)).abs().max() < 1e-6


# --------------------------------------------------------------------------- the command line

TINY = """
[data]
dataset = "digits"

[model]
preset = "digits_small"

[schedule]
name = "cosine"
T = 100

[train]
steps = 3
batch_size = 8
warmup_steps = 1
ema_decay = 0.9
log_every = 1
checkpoint_every = 2
"""


def test_the_command_line_trains_saves_resumes_and_exports(tmp_path, capsys):
    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    assert main([str(config), "--out", str(tmp_path / "runs")]) == 0
    for name in ("tiny.json", "tiny.safetensors", "tiny-ema.json", "tiny-ema.safetensors"):
        assert (tmp_path / "runs" / name).is_file()
    assert main([str(config), "--out", str(tmp_path / "runs"), "--resume", "--steps", "5"]) == 0
    assert "resumed from" in capsys.readouterr().out
    model, schedule, meta = load(tmp_path / "runs" / "tiny-ema")
    assert meta["steps"] == 5 and meta["command"].startswith("python -m diffusion_lib.train ")
    assert "in_progress" not in meta  # the export of a finished run; those written beside each state are marked
    assert schedule.T == 100 and meta["library_version"]
    x = torch.randn(4, 1, 8, 8)
    assert model(x, torch.full((4,), 10)).shape == x.shape


TINY_TEXT = """
[data]
dataset = "shapes"
n_train = 64

[model]
preset = "shapes"
ch = 8

[text]
dim = 16
depth = 1
heads = 2

[schedule]
name = "cosine"
T = 100

[train]
steps = 2
batch_size = 8
ema_decay = 0.9
cond_dropout = 0.2
log_every = 1
"""


@pytest.mark.parametrize("mode", ["cross", "pooled"])
def test_the_command_line_trains_and_exports_a_text_model_that_loads_back_the_same(tmp_path, mode):
    from diffusion_lib.models.text import TextConditionedUNet

    config = tmp_path / "text.toml"
    config.write_text(TINY_TEXT.replace("heads = 2", f'heads = 2\nmode = "{mode}"'))
    assert main([str(config), "--out", str(tmp_path / "runs")]) == 0
    model, _, meta = load(tmp_path / "runs" / "text-ema")
    assert isinstance(model, TextConditionedUNet) and model.config.mode == mode
    assert meta["model_class"] == "TextConditionedUNet" and meta["test_loss"] > 0
    assert "circle" in model.tokenizer.vocab and model.tokenizer.vocab[0] == "<pad>"
    tensors, _ = checkpoints.load(tmp_path / "runs" / "text-ema")
    assert all(torch.equal(tensors[k], v) for k, v in model.state_dict().items())
    cond = model.encode_prompts(["a small red circle", "a red circle to the left of a blue square"])
    assert model(torch.randn(2, 3, 16, 16), torch.tensor([5, 50]), cond).shape == (2, 3, 16, 16)


def test_resuming_with_conditioning_dropout_is_exact(tmp_path):
    labels = load_digits("train")[1][:256]

    def trainer(seed=0):
        torch.manual_seed(seed)
        model = unet_from_preset("digits_small", num_classes=10)
        return Trainer(model, NoiseSchedule.cosine(), DIGITS, cond=labels, cond_dropout=0.3, batch_size=16,
                       ema_decay=0.99, log_every=2)

    straight = trainer()
    straight.fit(4)
    half = trainer()
    half.fit(2)
    half.save(tmp_path / "state")
    resumed = trainer(seed=5)
    resumed.load_state(tmp_path / "state")
    resumed.fit(2)
    assert _same(resumed.model, straight.model) and resumed.history == straight.history


def test_help_describes_the_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "CONFIG" in capsys.readouterr().out.upper()


@pytest.mark.parametrize(("text", "message"), [
    (TINY.replace("batch_size = 8", "batch_sise = 8"), r"unknown key train\.batch_sise"),
    (TINY.replace("batch_size = 8", 'batch_size = "8"'), r"train\.batch_size must be int, got '8'"),
    (TINY.replace("steps = 3\n", ""), r"missing required key train\.steps"),
    (TINY + "\n[optimizer]\nname = 'sgd'\n", r"unknown table \[optimizer\]"),
    (TINY.replace('preset = "digits_small"', 'preset = "digits_small"\nwidth = 3'), r"unknown key model\.width"),
    (TINY.replace('"digits"', '"imagenet"', 1), r"data\.dataset must be one of"),
    (TINY.replace("ema_decay = 0.9", "ema_decay = true"), r"train\.ema_decay must be float, got True"),
    (TINY + "\n[text]\ndim = 16\n",
     r"a \[text\] table needs a data set with captions, data\.dataset = one of \('shapes', 'emoji'\)"),
    (TINY.replace('dataset = "digits"', 'dataset = "emoji"\nmirror = true') + "\n[text]\ndim = 16\n",
     r"data\.mirror cannot be combined with \[text\]"),
    (TINY.replace('dataset = "digits"', 'dataset = "digits"\nmirror = 1'), r"data\.mirror must be bool, got 1"),
    (TINY.replace('dataset = "digits"', 'dataset = "digits"\nclass_conditional = true\nlow_resolution = 4'),
     r"choose one kind of conditioning, got data\.class_conditional and data\.low_resolution"),
    (TINY.replace('dataset = "digits"', 'dataset = "shapes"') + "\n[text]\ndepht = 1\n", r"unknown key text\.depht"),
])
def test_bad_configs_name_the_key_and_the_file(tmp_path, text, message):
    config = tmp_path / "bad.toml"
    config.write_text(text)
    with pytest.raises(ValueError, match=rf"bad\.toml: {message}"):
        read_config(config)


def test_a_missing_config_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere\.toml does not exist"):
        read_config(tmp_path / "nowhere.toml")


def test_the_shipped_configs_are_valid():
    from diffusion_lib.train.config import CONFIGS as root
    from diffusion_lib.train.config import read_family_config

    names = sorted(p.name for p in root.glob("*.toml"))
    families = ["digits_autoregressive.toml", "digits_gan.toml", "digits_vae.toml"]
    assert names == sorted(["cifar10.toml", "digits.toml", "digits_class.toml", "digits_consistency.toml",
                            "digits_dit.toml", "digits_flow.toml", "digits_progressive.toml", "digits_reflow.toml",
                            "emoji.toml", "emoji64.toml", "emoji_control.toml", "emoji_latent.toml",
                            "emoji_latent_flow.toml", "emoji_latent_v.toml", "emoji_sr.toml", "emoji_text.toml",
                            "emoji_text_v.toml", "mnist.toml",
                            "shapes_control.toml", "shapes_latent.toml", "shapes_pooled.toml", "shapes_sr.toml",
                            "shapes_text.toml", "shapes_text_frozen.toml", "shapes_text_v.toml", *families])
    for name in names:
        config = (read_family_config if name in families else read_config)(root / name)
        if "model" in config and "preset" in config["model"]:  # the model it names can be built
            overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in config["model"].items() if k != "preset"}
            unet_from_preset(config["model"]["preset"], **overrides)
        elif "control" in config:  # a ControlNet: its network is its base's
            assert config["model"] == {}
        elif "model" in config:  # a DiT: read_config built its config
            assert config["model"]["arch"] == "dit"



def test_the_unet_loss_falls_on_digits_within_a_few_dozen_steps():
    """Measured: the mean loss of steps 31-40 is about 0.45 of that of steps 1-10 (0.6 bound)."""
    trainer = _unet_trainer(batch_size=64, lr=2e-3, warmup_steps=5, log_every=10)
    history = torch.tensor(trainer.fit(40))
    assert history[-10:].mean() < 0.6 * history[:10].mean(), history


def test_the_learning_rate_warms_up_then_stays_or_follows_a_cosine_to_a_tenth(tmp_path):
    constant = _unet_trainer(lr=1e-3, warmup_steps=4)
    assert [constant.lr_at(s) for s in (0, 1, 3, 4, 1000)] == pytest.approx([2.5e-4, 5e-4, 1e-3, 1e-3, 1e-3])
    cosine = _unet_trainer(lr=1e-3, warmup_steps=4, decay_steps=14)
    assert [cosine.lr_at(s) for s in (0, 3, 4, 9, 14, 100)] == pytest.approx([2.5e-4, 1e-3, 1e-3, 5.5e-4, 1e-4,
                                                                               1e-4])
    rates = [cosine.lr_at(s) for s in range(4, 15)]
    assert all(a > b for a, b in itertools.pairwise(rates))  # decays at every step
    cosine.fit(10)
    assert cosine.optimizer.param_groups[0]["lr"] == pytest.approx(cosine.lr_at(9))
    with pytest.raises(ValueError, match=r"decay_steps must be an int >= 5, got 4"):
        _unet_trainer(warmup_steps=4, decay_steps=4)
    config = tmp_path / "c.toml"
    config.write_text('[data]\ndataset = "digits"\n[model]\npreset = "digits_small"\n'
                      '[train]\nsteps = 20\nwarmup_steps = 5\nlr_schedule = "cosine"\n')
    from diffusion_lib.recipes.diffusion import build, make_trainer

    checked = read_config(config)
    assert make_trainer(checked, build(checked, torch.device("cpu")), torch.device("cpu")).decay_steps == 20
    config.write_text(config.read_text().replace("steps = 20", "steps = 5"))
    with pytest.raises(ValueError, match=r"train\.lr_schedule = 'cosine' decays after the warm-up until "
                                         r"train\.steps; it needs train\.steps > train\.warmup_steps, got 5 and 5"):
        read_config(config)
    config.write_text(config.read_text().replace('"cosine"', '"linear"'))
    with pytest.raises(ValueError, match=r"train\.lr_schedule must be one of \('constant', 'cosine'\)"):
        read_config(config)
