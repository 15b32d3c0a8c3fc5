"""The training command never loses work, and a checkpoint is validated whole (config included)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from diffusion_lib import checkpoints
from diffusion_lib.data import load_digits
from diffusion_lib.losses import evaluate_loss
from diffusion_lib.models.unet import unet_from_preset
from diffusion_lib.pretrained import load
from diffusion_lib.recipes.diffusion import load_data
from diffusion_lib.schedules import NoiseSchedule
from diffusion_lib.train import Trainer
from diffusion_lib.train.command import main
from diffusion_lib.train.config import CONFIGS, config_path, read_config

ROOT = Path(__file__).resolve().parent.parent

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
ema_decay = 0.9
log_every = 1
checkpoint_every = 2
"""


def _config(tmp_path: Path, name: str = "tiny.toml", text: str = TINY) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _run(argv: list[str], capsys) -> tuple[int, str]:
    """main(argv) -> (exit status, what it wrote to stderr), whether it returns or exits."""
    capsys.readouterr()  # forget what earlier calls wrote
    try:
        status = main(argv)
    except SystemExit as exit_info:
        status = exit_info.code
    return status, capsys.readouterr().err


# --------------------------------------------------------------------------- names with dots


@pytest.mark.parametrize("name", ["digits.v2", "lr2.5e-4"])
def test_a_config_named_with_dots_keeps_the_state_and_the_export_apart_and_resumes(tmp_path, capsys, name):
    config, out = _config(tmp_path, f"{name}.toml"), tmp_path / "runs"
    assert main([str(config), "--out", str(out)]) == 0
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(f"{name}{suffix}" for suffix in (".json", ".safetensors", "-ema.json",
                                                              "-ema.safetensors"))
    assert main([str(config), "--out", str(out), "--resume", "--steps", "5"]) == 0
    assert f"resumed from {out / name} at step 3" in capsys.readouterr().out
    assert load(out / f"{name}-ema")[2]["steps"] == 5


def test_checkpoint_names_with_dots_are_names_not_extensions(tmp_path):
    tensors = {"w": torch.arange(3.0)}
    checkpoints.save(tmp_path / "lr2.5e-4", tensors, {"a": 1})
    checkpoints.save(tmp_path / "lr2.5e-3", {"w": torch.zeros(3)}, {"a": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lr2.5e-3.json", "lr2.5e-3.safetensors",
                                                         "lr2.5e-4.json", "lr2.5e-4.safetensors"]
    loaded, meta = checkpoints.load(tmp_path / "lr2.5e-4")
    assert torch.equal(loaded["w"], tensors["w"]) and meta["a"] == 1
    assert checkpoints.load(tmp_path / "lr2.5e-4.json")[1]["a"] == 1  # a file name names the same checkpoint


# --------------------------------------------------------------------------- refusing to lose work


def test_a_second_run_into_the_same_out_is_refused_and_changes_nothing(tmp_path, capsys):
    config, out = _config(tmp_path), tmp_path / "runs"
    assert main([str(config), "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    status, err = _run([str(config), "--out", str(out), "--steps", "1"], capsys)
    assert status == 2 and err.count("\n") == 1
    assert "tiny.json exists: pass --resume to continue that run, or --overwrite" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert main([str(config), "--out", str(out), "--steps", "1", "--overwrite"]) == 0
    assert load(out / "tiny-ema")[2]["steps"] == 1


def test_resume_without_a_checkpoint_says_so_instead_of_starting_again(tmp_path, capsys):
    status, err = _run([str(_config(tmp_path)), "--out", str(tmp_path / "runs"), "--resume"], capsys)
    assert status == 2 and "--resume: there is no training state to resume at" in err
    assert not (tmp_path / "runs" / "tiny.json").exists()


def test_resume_with_another_config_is_refused_naming_each_change_and_changes_nothing(tmp_path, capsys):
    """A resumed run must continue the training its state holds: only train.steps and train.checkpoint_every may
    change. Anything else (here the learning rate, the target and the network's dropout) is refused before any
    training, one line naming each change."""
    config, out = _config(tmp_path), tmp_path / "runs"
    assert main([str(config), "--out", str(out)]) == 0
    config.write_text(TINY.replace("steps = 3", "steps = 5").replace("checkpoint_every = 2",
                                                                     "checkpoint_every = 1"))
    assert main([str(config), "--out", str(out), "--resume"]) == 0  # more steps, saved more often: resumable
    assert load(out / "tiny-ema")[2]["steps"] == 5
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    config.write_text(TINY.replace("steps = 3", "steps = 6\nlr = 5e-4\nparameterization = 'v'")
                      .replace('preset = "digits_small"', 'preset = "digits_small"\ndropout = 0.2'))
    status, err = _run([str(config), "--out", str(out), "--resume"], capsys)
    assert status == 2 and err.count("\n") == 1, err
    assert (f"--resume: {out / 'tiny.json'} was trained with another config (model.dropout: (absent) -> 0.2; "
            "train.lr: 0.0002 -> 0.0005; train.parameterization: 'eps' -> 'v')") in err and "--overwrite" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_the_changes_of_a_config_name_tables_and_keys_and_skip_what_a_resume_may_change():
    from diffusion_lib.train.runs import config_changes

    saved = {"train": {"steps": 3, "lr": 1e-3, "checkpoint_every": 2}, "model": {"ch_mult": [1, 2]}}
    now = {"train": {"steps": 9, "lr": 1e-3, "checkpoint_every": 5}, "model": {"ch_mult": (1, 2)},
           "distill": {"method": "progressive"}}
    assert config_changes(saved, now) == ["[distill] added"]
    assert config_changes(now, saved) == ["[distill] removed"]
    assert config_changes(saved, {**now, "model": {"ch_mult": (1, 2, 2)}})[1] == \
        "model.ch_mult: [1, 2] -> (1, 2, 2)"
    assert config_changes({"data": {"mirror": True}}, {"data": {}}) == ["data.mirror: True -> (absent)"]


def test_resume_from_a_file_that_is_not_a_training_state_is_refused(tmp_path, capsys):
    config, out = _config(tmp_path), tmp_path / "runs"
    out.mkdir()
    (out / "tiny.json").write_text("{ not json")
    status, err = _run([str(config), "--out", str(out), "--resume"], capsys)
    assert status == 2 and f"--resume: {out / 'tiny.json'} is not a training state this command wrote" in err


def test_resume_and_overwrite_together_are_refused(tmp_path, capsys):
    status, err = _run([str(_config(tmp_path)), "--out", str(tmp_path), "--resume", "--overwrite"], capsys)
    assert status == 2 and "--resume and --overwrite contradict each other" in err


def test_an_unwritable_out_is_refused_before_training(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    status, err = _run([str(_config(tmp_path)), "--out", str(blocker / "runs")], capsys)
    assert status == 2 and f"--out {blocker / 'runs'} is not a writable folder" in err
    assert err.count("\n") == 1


# --------------------------------------------------------------------------- config errors: one line, naming the key


@pytest.mark.parametrize(("edit", "message"), [
    (("checkpoint_every = 2", "checkpoint_every = 0"), "train.checkpoint_every must be an int >= 1"),
    (("checkpoint_every = 2", "checkpoint_every = -5"), "train.checkpoint_every must be an int >= 1"),
    (("batch_size = 8", "batch_size = 0"), "train.batch_size must be an int >= 1"),
    (("log_every = 1", "log_every = 0"), "train.log_every must be an int >= 1"),
    (("ema_decay = 0.9", "ema_decay = 1.5"), r"train.ema_decay must be a number in (0, 1)"),
    (("ema_decay = 0.9", "ema_decay = 0.9\nlr = nan"), "train.lr must be a finite number > 0"),
    (("ema_decay = 0.9", "ema_decay = 0.9\ngrad_clip = true"), "train.grad_clip must be a finite number > 0, or false"),
    (("ema_decay = 0.9", "ema_decay = 0.9\ngrad_clip = 0"), "train.grad_clip must be a finite number > 0, or false"),
    (("ema_decay = 0.9", 'ema_decay = 0.9\namp = "fp8"'), "train.amp must be one of"),
    (("ema_decay = 0.9", 'ema_decay = 0.9\ncompile = "fast"'), "train.compile must be true, false or one of"),
    (("T = 100", "T = 0"), "schedule.T must be an int >= 1"),
    (("ema_decay = 0.9", 'ema_decay = 0.9\nparameterization = "score"'), "train.parameterization must be one of"),
])
def test_a_bad_config_value_is_one_line_naming_the_key_and_the_file(tmp_path, capsys, edit, message):
    config = _config(tmp_path, "bad.toml", TINY.replace(*edit))
    status, err = _run([str(config), "--out", str(tmp_path / "runs")], capsys)
    assert status == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"bad.toml: {message}" in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_grad_clip_false_switches_clipping_off(tmp_path):
    config = _config(tmp_path, text=TINY.replace("ema_decay = 0.9", "ema_decay = 0.9\ngrad_clip = false"))
    assert read_config(config)["train"]["grad_clip"] is False
    assert main([str(config), "--out", str(tmp_path / "runs")]) == 0
    assert json.loads((tmp_path / "runs" / "tiny.json").read_text())["trainer"]["grad_clip"] is None


# --------------------------------------------------------------------------- shipped configs by name


def test_a_shipped_config_is_found_by_name_and_a_wrong_name_lists_them(capsys, tmp_path):
    assert config_path("digits") == CONFIGS / "digits.toml"
    assert read_config(config_path("digits")) == read_config(CONFIGS / "digits.toml")
    status, err = _run(["imagenet", "--out", str(tmp_path)], capsys)
    assert status == 2 and "'imagenet' is not a shipped config; the shipped ones are [" in err and "'digits'" in err


def test_the_shipped_configs_travel_with_the_package():
    assert CONFIGS.parent == Path(__import__("diffusion_lib").__file__).resolve().parent
    assert {"digits", "digits_class", "shapes_text", "cifar10", "digits_vae"} <= {p.stem for p in
                                                                                  CONFIGS.glob("*.toml")}


# --------------------------------------------------------------------------- the loss history across checkpoints


DIGITS = load_digits("train")[0][:256]


def _trainer(**kwargs) -> Trainer:
    torch.manual_seed(0)
    return Trainer(unet_from_preset("digits_small"), NoiseSchedule.cosine(100), DIGITS, batch_size=16,
                   ema_decay=0.9, **kwargs)


def test_every_checkpoint_holds_the_whole_loss_history_up_to_its_step(tmp_path, monkeypatch):
    trainer = _trainer(log_every=4)
    saved = []
    original = trainer.save

    def save(path, meta=None):
        saved.append((trainer.step, len(trainer.history)))
        result = original(path, meta)
        if trainer.step == 3:  # keep the checkpoint of step 3: a run killed after it resumes from there
            for file in checkpoints.files(path):
                (tmp_path / f"step3{file.suffix}").write_bytes(file.read_bytes())
        return result

    monkeypatch.setattr(trainer, "save", save)
    trainer.fit(10, checkpoint_every=3, checkpoint_path=tmp_path / "state")
    assert saved == [(3, 3), (6, 6), (9, 9), (10, 10)]
    resumed = _trainer(log_every=4)
    resumed.load_state(tmp_path / "step3")
    resumed.fit(7)
    assert resumed.history == trainer.history and len(resumed.history) == 10


def test_fit_rejects_a_checkpoint_interval_below_one(tmp_path):
    with pytest.raises(ValueError, match="checkpoint_every must be an int >= 1"):
        _trainer().fit(2, checkpoint_every=0, checkpoint_path=tmp_path / "state")


def test_a_stop_request_saves_a_checkpoint_that_resumes_exactly(tmp_path):
    straight = _trainer(log_every=5)
    straight.fit(8)
    asked = []

    def should_stop() -> bool:
        asked.append(True)
        return len(asked) == 3

    stopped = _trainer(log_every=5)
    stopped.fit(8, checkpoint_every=100, checkpoint_path=tmp_path / "state", should_stop=should_stop)
    assert stopped.step == 3 and len(stopped.history) == 3
    resumed = _trainer(log_every=5)
    resumed.load_state(tmp_path / "state")
    resumed.fit(5)
    assert resumed.history == straight.history
    for a, b in zip(resumed.model.parameters(), straight.model.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_saves_a_resumable_checkpoint_and_exits_with_one_line(tmp_path, sig):
    config = _config(tmp_path, text=TINY.replace("steps = 3", "steps = 100000").replace(
        "checkpoint_every = 2", "checkpoint_every = 100000"))
    out = tmp_path / "runs"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "diffusion_lib.train", str(config), "--out", str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        line = process.stdout.readline()  # "N parameters; ...; steps 0 -> 100000": training starts next
        assert "steps 0 -> 100000" in line, line
        time.sleep(2.0)
        process.send_signal(sig)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 128 + sig
    lines = [x for x in err.splitlines() if x.startswith(signal.Signals(sig).name)]
    assert len(lines) == 1 and "continue with --resume" in lines[0] and "Traceback" not in err
    state, meta = checkpoints.load(out / "tiny")
    assert meta["step"] >= 1 and len(state["history"]) == meta["step"]
    model, _, record = load(out / "tiny-ema")  # the weights of a stopped run load, as the state's message says
    assert record["in_progress"] and record["steps"] == meta["step"]
    assert all(torch.equal(value, state[f"ema.{key}"]) for key, value in model.state_dict().items())
    assert main([str(config), "--out", str(out), "--resume", "--steps", str(meta["step"] + 1)]) == 0


INTERRUPT_WHILE_LOADING = """
import os
import signal
import sys

from diffusion_lib.recipes import diffusion
from diffusion_lib.train.command import main

build = diffusion.build


def interrupted_build(config, device):  # Ctrl-C arrives while the data and the model load
    os.kill(os.getpid(), signal.SIGINT)
    return build(config, device)


diffusion.build = interrupted_build
sys.exit(main(sys.argv[1:]))
"""


def test_ctrl_c_while_the_data_and_model_load_exits_130_with_one_line_and_writes_nothing(tmp_path):
    config, out = _config(tmp_path), tmp_path / "runs"
    script = tmp_path / "interrupt.py"
    script.write_text(INTERRUPT_WHILE_LOADING)
    result = subprocess.run([sys.executable, str(script), str(config), "--out", str(out)], capture_output=True,
                            text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=ROOT, timeout=300)
    assert result.returncode == 128 + signal.SIGINT, result.stderr
    assert "Traceback" not in result.stderr and "KeyboardInterrupt" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("SIGINT")]
    assert len(lines) == 1 and "outside the training steps" in lines[0]
    assert list(out.iterdir()) == []


def test_a_record_whose_parameterization_was_dropped_is_refused_against_its_config(tmp_path):
    """A v-prediction model's record re-saved without its parameterization would load as an ε model and sample
    wrongly; the config in the record says what it was trained to predict."""
    path = _export_copy(tmp_path, "emoji_text_v", lambda meta: meta.pop("parameterization"))
    with pytest.raises(ValueError, match=r"emoji_text_v\.json: parameterization is 'eps' \(or absent: 'eps'\) but "
                                         r"config\.train\.parameterization says the model was trained to predict 'v'"):
        load(path)


# --------------------------------------------------------------------------- checkpoints validated whole


def _export_copy(tmp_path: Path, name: str, edit) -> Path:
    """A copy of a shipped denoiser whose JSON record went through ``edit(meta)``, saved (and hashed) again."""
    tensors, meta = checkpoints.load(checkpoints.resolve(name))
    edit(meta)
    return checkpoints.save(tmp_path / name, tensors, meta)


def test_a_json_edited_by_hand_is_refused(tmp_path):
    path = _export_copy(tmp_path, "shapes_sr", lambda meta: None)
    json_file = checkpoints.files(path)[0]
    meta = json.loads(json_file.read_text())
    meta["model_config"]["groups"] *= 2  # a model the weights were not trained as
    json_file.write_text(json.dumps(meta, indent=1, sort_keys=True))
    with pytest.raises(ValueError, match=r"shapes_sr\.json was changed after it was written"):
        load(path)


def test_a_model_config_missing_a_field_is_refused_not_filled_with_defaults(tmp_path):
    path = _export_copy(tmp_path, "shapes_sr", lambda meta: meta["model_config"].pop("groups"))
    with pytest.raises(ValueError, match=r"shapes_sr\.json: model_config lacks UNetConfig field 'groups'"):
        load(path)


def test_a_nested_config_missing_a_field_is_refused(tmp_path):
    path = _export_copy(tmp_path, "shapes_text", lambda meta: meta["model_config"]["unet"].pop("ch_mult"))
    with pytest.raises(ValueError, match=r"model_config\.unet lacks UNetConfig field 'ch_mult'"):
        load(path)


def test_an_unknown_model_config_field_is_refused(tmp_path):
    path = _export_copy(tmp_path, "digits", lambda meta: meta["model_config"].update(width=3))
    with pytest.raises(ValueError, match=r"digits\.json: model_config has unknown field 'width'"):
        load(path)


@pytest.mark.parametrize("key", ["config", "model_config", "model_class", "clip_x0"])
def test_a_record_without_a_key_of_an_export_names_the_key(tmp_path, key):
    path = _export_copy(tmp_path, "digits", lambda meta: meta.pop(key))
    with pytest.raises(ValueError, match=rf"digits\.json lacks the key '{key}'"):
        load(path)


def test_loading_the_training_state_as_a_denoiser_points_to_the_export(tmp_path):
    config = _config(tmp_path)
    assert main([str(config), "--out", str(tmp_path / "runs")]) == 0
    with pytest.raises(ValueError, match=r"tiny\.json is a training state .* load .*tiny-ema instead"):
        load(tmp_path / "runs" / "tiny")


def test_a_local_folder_named_like_a_shipped_model_does_not_hide_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "digits").mkdir()
    _, _, meta = load("digits")
    assert meta["command"] == "python -m diffusion_lib.train digits --out runs"


def test_neither_a_checkpoint_nor_a_shipped_name_says_both(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no checkpoint at .*nowhere\.json, and .* is not a shipped "
                                                r"checkpoint; the shipped ones are \["):
        load(tmp_path / "nowhere")


def test_every_shipped_checkpoint_is_whole():
    for json_file in sorted(checkpoints.PRETRAINED.glob("*.json")):
        checkpoints.load(json_file.with_suffix(""))  # raises unless both hashes match


@pytest.mark.parametrize(("name", "clip_x0"), [("digits", 1.0), ("shapes_text", 1.0), ("shapes_latent", None)])
def test_a_loaded_denoiser_carries_the_bound_of_its_data(name, clip_x0):
    model, _, meta = load(name)
    assert model.clip_x0 == meta["clip_x0"] == clip_x0  # pixels lie in [-1, 1]; latents have no fixed bound


def test_an_export_records_what_the_model_predicts_and_the_loaded_model_carries_it(tmp_path):
    config = _config(tmp_path, text=TINY.replace("ema_decay = 0.9", 'ema_decay = 0.9\nparameterization = "v"'))
    assert main([str(config), "--out", str(tmp_path / "runs")]) == 0
    model, schedule, meta = load(tmp_path / "runs" / "tiny-ema")
    assert meta["parameterization"] == model.parameterization == "v"
    assert json.loads((tmp_path / "runs" / "tiny.json").read_text())["trainer"]["parameterization"] == "v"
    test_images, _ = load_data(read_config(config)["data"], "test")
    as_v = evaluate_loss(model, test_images, schedule, seed=0, parameterization="v")
    assert meta["test_loss"] == pytest.approx(as_v, rel=1e-5)  # the recorded loss is the v loss
    assert evaluate_loss(model, test_images, schedule, seed=0) == as_v  # by default, what the model predicts
    assert evaluate_loss(model, test_images, schedule, seed=0, parameterization="eps") != pytest.approx(as_v)
    assert load("digits").model.parameterization == "eps"  # a record from before the key: an ε model


def test_a_record_with_an_unknown_parameterization_is_refused(tmp_path):
    path = _export_copy(tmp_path, "digits", lambda meta: meta.update(parameterization="score"))
    message = r"digits\.json: parameterization must be one of \('eps', 'x0', 'v'\), got 'score'"
    with pytest.raises(ValueError, match=message):
        load(path)


def test_an_export_records_the_bound_of_its_data(tmp_path):
    assert main([str(_config(tmp_path)), "--out", str(tmp_path / "runs")]) == 0
    model, _, meta = load(tmp_path / "runs" / "tiny-ema")
    assert meta["clip_x0"] == 1.0 and model.clip_x0 == 1.0


def test_seed_and_device_on_the_command_line_are_recorded_and_checked(tmp_path, capsys):
    config, out = _config(tmp_path), tmp_path / "runs"
    assert main([str(config), "--out", str(out), "--seed", "7", "--device", "cpu", "--steps", "1"]) == 0
    _, _, record = load(out / "tiny-ema")
    assert record["config"]["train"]["seed"] == 7 and record["steps"] == 1
    other = tmp_path / "other"
    assert main([str(config), "--out", str(other), "--steps", "1"]) == 0
    assert not torch.equal(load(out / "tiny-ema").model.conv_in.weight, load(other / "tiny-ema").model.conv_in.weight)
    for argv, message in ((["--seed", "-1"], "--seed must be an int >= 0, got -1"),
                          (["--device", "gpu"], "--device must be cpu, cuda, cuda:N or mps, got 'gpu'"),
                          (["--device", f"cuda:{torch.cuda.device_count()}"],
                           f"--device cuda:{torch.cuda.device_count()}: this machine has no such device")):
        status, err = _run([str(config), "--out", str(tmp_path / "refused"), *argv], capsys)
        assert status == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "refused").exists()


def test_the_installed_console_command_and_its_version():
    from diffusion_lib import __version__

    command = Path(sys.executable).parent / "diffusion-train"  # installed beside the interpreter by pip
    result = subprocess.run([str(command), "--version"], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == f"diffusion_lib {__version__}"
