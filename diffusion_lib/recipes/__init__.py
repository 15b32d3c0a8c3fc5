"""Recipes: the commands that make every shipped model, each a documented command anyone can run again.

- :mod:`~diffusion_lib.recipes.diffusion` and :mod:`~diffusion_lib.recipes.families`: the models of a training
  config, run by ``python -m diffusion_lib.train CONFIG`` (:mod:`diffusion_lib.train.command`).
- :mod:`~diffusion_lib.recipes.digits_classifier`, :mod:`~diffusion_lib.recipes.shapes_classifier`,
  :mod:`~diffusion_lib.recipes.emoji_classifier`, :mod:`~diffusion_lib.recipes.text_encoder`,
  :mod:`~diffusion_lib.recipes.autoencoder`: the auxiliary models,
  ``python -m diffusion_lib.recipes.NAME --out DIR`` (:mod:`~diffusion_lib.recipes.command`).
"""
