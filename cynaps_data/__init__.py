"""cynaps_data: get data labelled by people and straight back into pandas and model training.

>>> import cynaps_data as cynaps
>>> client = cynaps.Client.local()          # embedded platform, sandbox mode
"""

from __future__ import annotations

__version__ = "0.1.0"

from . import errors, webhooks
from .client import Client
from .resources import Deposit, Payment, Project, ProjectStatus, UploadResult

__all__ = [
    "Client",
    "Deposit",
    "Payment",
    "Project",
    "ProjectStatus",
    "UploadResult",
    "__version__",
    "errors",
    "webhooks",
]
