"""pytest configuration for the whole repository: the test run must not depend on the caller's environment.

The Jupyter kernels nbval starts inherit this process's environment. With ``MPLBACKEND`` set (``Agg`` is common on
headless servers) a kernel keeps that backend instead of the inline one ipykernel picks when the variable is unset,
draws no figure into the cell's outputs, and every stored figure output would be reported missing. So the variable is
removed from the environment before any kernel starts; this process keeps the backend it asked for.
"""

import os


def pytest_configure(config):
    backend = os.environ.pop("MPLBACKEND", None)
    if backend:
        import matplotlib

        matplotlib.use(backend)  # the library tests in this process still draw with the caller's backend
