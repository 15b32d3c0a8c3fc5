"""diffusion_lib: the tested implementation behind the book *Diffusion from Scratch*."""

__version__ = "0.1.0"
