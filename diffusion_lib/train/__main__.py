"""``python -m diffusion_lib.train CONFIG``: see :mod:`diffusion_lib.train.command`."""

from diffusion_lib.train.command import main

raise SystemExit(main())
