"""The code interpreter's sandbox: Jupyter kernels, one per thread, with limits.

``runner`` runs code and says how it ended (``Sandbox``), ``pool`` assigns kernels to threads and
keeps warm ones, ``kernel`` is one kernel's life (launch under bubblewrap, interrupt, retire) and
``capture`` collects one execution's output (``Execution``).
"""

from .capture import Execution, Status
from .runner import Sandbox

__all__ = ["Execution", "Sandbox", "Status"]
