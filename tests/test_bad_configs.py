"""The training command refuses a bad config in one line that names the key, writes nothing and takes a moment: a
property test over every shipped diffusion config, each mutated in one field to each value of a list of bad ones
(a wrong type, a value out of range, a name of no model, a model of the wrong kind or schedule, a network that does
not read the data's shape)."""

import json
import time

import pytest

from diffusion_lib.train.command import main
from diffusion_lib.train.config import CONFIGS, is_family_config, read_toml

BAD_VALUES = {
    "data.dataset": ["mnits", 3],
    "data.size": [48],
    "data.styles": [["comic"]],
    "data.hold_out": [["no such emoji"]],
    "data.crop": [-1],
    "data.noise_augmentation": [5000],
    "data.latent": ["no_such_model", "digits", "shapes_autoencoder"],
    "data.reflow": ["no_such_model", "digits", "emoji_latent_flow"],
    "model.preset": ["digitz"],
    "model.in_channels": [5],
    "model.image_size": [12],
    "model.ch_mult": [[]],
    "schedule.name": ["cosin"],
    "schedule.T": [0],
    "train.steps": [-1, 1.5],
    "train.lr": [0, "fast"],
    "train.batch_size": [0],
    "train.ema_decay": [1.5],
    "train.parameterization": ["noise"],
    "text.dim": [0],
    "text.mode": ["concat"],
    "text.encoder": ["no_such_model", "digits"],
    "distill.teacher": ["no_such_model", "emoji_text_v", "emoji_autoencoder", "digits_flow", "shapes_text"],
    "distill.student_steps": [1024, 3],
    "distill.grid_steps": [2000, 0],
    "control.base": ["no_such_model", "digits", "emoji_text_v"],
}
ALWAYS = ("data", "schedule", "train")  # tables every diffusion config has (filled with defaults where absent)
SHIPPED = sorted(path for path in CONFIGS.glob("*.toml") if not is_family_config(path))


def toml_text(config: dict) -> str:
    """Tables of strings, numbers, booleans and lists of them, as TOML."""
    return "\n".join(f"[{table}]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in values.items())
                     for table, values in config.items())


def mutations(path):
    """(key, value, the config with that one field changed) for every bad value whose table the config has."""
    raw = read_toml(path)
    for key, values in BAD_VALUES.items():
        table, field = key.split(".")
        if table not in raw and table not in ALWAYS:
            continue
        for value in values:
            if raw.get(table, {}).get(field) != value:
                yield key, value, {**raw, table: {**raw.get(table, {}), field: value}}


@pytest.mark.parametrize("path", SHIPPED, ids=[path.stem for path in SHIPPED])
def test_every_one_field_mutation_of_a_shipped_config_is_refused_in_one_line_naming_the_key(path, tmp_path, capsys,
                                                                                          monkeypatch):
    from diffusion_lib.recipes import diffusion

    def accepted(*args, **kwargs):
        raise AssertionError("the config was accepted and would train")

    monkeypatch.setattr(diffusion, "train_and_export", accepted)
    cases = list(mutations(path))
    assert len(cases) >= 20
    for key, value, mutated in cases:
        config = tmp_path / path.name
        config.write_text(toml_text(mutated))
        out = tmp_path / "runs"
        capsys.readouterr()
        start = time.perf_counter()
        with pytest.raises(SystemExit) as exited:
            try:
                main([str(config), "--out", str(out)])
            except AssertionError as err:
                raise AssertionError(f"{path.stem} with {key} = {value!r}: {err}") from None
        seconds = time.perf_counter() - start
        err = capsys.readouterr().err
        what = f"{path.stem} with {key} = {value!r}: {err!r}"
        assert exited.value.code == 2, what
        assert err.count("\n") == 1 and "Traceback" not in err, what
        table, field = key.split(".")
        assert key in err or (table == "model" and field in err), what
        assert not out.exists(), what
        assert seconds < 5, f"{what} took {seconds:.1f} s"
