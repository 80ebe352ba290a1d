"""A stand-in for Colab's ``google.colab``, for CI's Colab job only (``.ci/colab.sh`` puts it on the path).

Colab imports ``google.colab`` in every notebook kernel before the first cell; tutor_nb's Colab
paths key on that (the notebooks' install cell, the panel's blocking updates) and read secrets
through :mod:`google.colab.userdata`. This package offers just those, with Colab's names.
"""

from . import userdata

__all__ = ["userdata"]
