"""matplotlib, optional: the plots of run_qa, the benchmark and the training curve need it, the helpers do not.

Install it with `pip install 'cpu-inference-tutorial[plots]'` (`make` does); without it the plots are
skipped with one logged warning and every table and JSON file is still written.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from types import ModuleType
from typing import Any

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'cpu-inference-tutorial[plots]' (or pip install matplotlib)"


def plotting_available() -> bool:
    """Whether matplotlib is installed."""
    return importlib.util.find_spec("matplotlib") is not None


def pyplot(what: str) -> ModuleType | None:
    """matplotlib.pyplot on the backend the user or matplotlib chose, or None with a logged warning.

    The backend is left alone: in Jupyter it is the inline one, headless matplotlib picks Agg itself, and
    a user's `MPLBACKEND` or `matplotlib.use(...)` stays in force. The plots are written with `savefig`.

    Args:
        what: the plot that will be skipped without matplotlib, for the warning (e.g. "comparison.png").
    """
    if not plotting_available():
        logger.warning("matplotlib is not installed: %s is skipped; %s", what, INSTALL_HINT)
        return None
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure: Any, path: str | Path, dpi: int = 110) -> None:
    """Lay `figure` out, write it to `path` (the format from its suffix) and close it (its memory is freed)."""
    import matplotlib.pyplot as plt

    figure.tight_layout()
    figure.savefig(path, dpi=dpi)
    plt.close(figure)
