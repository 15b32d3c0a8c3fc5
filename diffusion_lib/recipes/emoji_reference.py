"""Recipe: the reference classifier of the five-style emoji (``emoji_reference``), in whose features the emoji
samples are measured (FD, KID, precision and recall, name retrieval):

    python -m diffusion_lib.recipes.emoji_reference --out diffusion_lib/pretrained

Its leave-one-style-out twins (:func:`train_reference` ``without=STYLE``), which measure the ceiling of name
retrieval (:func:`diffusion_lib.evaluation.emoji_names.style_ceiling`), are trained by ``benchmarks/reference.py``.

With five styles of every emoji a name can be a class: besides the category and subcategory heads of the first
reference, this one has a cosine head that names the training emoji (1,472 classes, NormFace), so its features keep
the emoji apart by angle, not only their categories. It is twice as wide, and its batches are shifted, zoomed,
restyled (outlined, blurred, resaturated) and noised (:func:`~diffusion_lib.recipes.emoji_classifier.augment`), since
the styles draw one emoji at different sizes, with and without outlines and shading.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from diffusion_lib.data.emoji import STYLES, load_emoji
from diffusion_lib.evaluation.emoji_names import style_ceiling
from diffusion_lib.models.emoji_classifier import EmojiClassifier, EmojiClassifierConfig
from diffusion_lib.recipes.command import train_and_save_main
from diffusion_lib.recipes.emoji_classifier import accuracy, fit_classifier

NAME = "emoji_reference"
WIDTH, DEPTH, NAME_SCALE = 32, 1, 16.0
ZOOM, RESTYLE = 0.25, 0.5
DEFAULT_STEPS = 5000


def train_reference(steps: int = DEFAULT_STEPS, seed: int = 0, *, without: str | None = None,
                    progress: bool = False) -> tuple[EmojiClassifier, dict[str, Any]]:
    """Train the reference on the training split of every style but ``without`` (None: all five), score its
    category and subcategory on the test split (emoji never seen in training) and, with ``without``, the ceiling of
    name retrieval on the style it never saw.

    Returns:
        (the model in eval mode, a record: settings, accuracies, the ceiling, train_seconds).
    """
    styles = [s for s in STYLES if s != without]
    train, test = load_emoji("train", styles=styles), load_emoji("test")
    config = EmojiClassifierConfig(len(train.category_names), len(train.subcategory_names),
                                   num_names=len(torch.unique(train.emoji)), name_scale=NAME_SCALE, width=WIDTH,
                                   depth=DEPTH)
    model, seconds = fit_classifier(train, config, steps, seed, zoom=ZOOM, restyle=RESTYLE, progress=progress)
    record = {"steps": steps, "seed": seed, "styles": styles, "model_class": type(model).__name__,
              "model_config": dataclasses.asdict(model.config), "train_seconds": round(seconds, 1),
              "test_accuracy": accuracy(model, test),
              "test_accuracy_by_style": {name: accuracy(model, load_emoji("test", styles=[name]))["category"]
                                         for name in STYLES},
              "train": {"batch_size": 64, "lr": 2e-3, "weight_decay": 1e-4, "optimizer": "AdamW, cosine decay to 0",
                        "augment": f"shift up to 2 px, zoom up to {ZOOM}, restyled with probability {RESTYLE}, "
                                   "noise up to 0.1"},
              "data": f"load_emoji('train', styles={styles}); test_accuracy on load_emoji('test'), emoji never "
                      "seen in training", "torch_version": torch.__version__}
    if without is not None:
        ceiling = style_ceiling(model, without)
        record["ceiling"] = {key: [value.value, value.low, value.high] for key, value in ceiling.items()
                             if key.startswith(("top", "train_top", "test_top"))}
    return model, record


def main(argv: list[str] | None = None) -> int:
    """``python -m diffusion_lib.recipes.emoji_reference [--out DIR] [--steps N] [--seed S] [--overwrite]``."""
    return train_and_save_main(
        argv, module="diffusion_lib.recipes.emoji_reference", name=NAME, default_steps=DEFAULT_STEPS,
        description="Train the reference classifier of the five-style emoji and write "
                    "OUT/emoji_reference.safetensors + .json.",
        train=lambda steps, seed: train_reference(steps, seed, progress=True),
        summary=lambda r: f"test accuracy {r['test_accuracy']} after {r['steps']} steps in "
                          f"{r['train_seconds']:.0f} s")


if __name__ == "__main__":
    raise SystemExit(main())
