"""Resource objects returned by the client."""

from .models import Deposit, Payment, ProjectStatus, UploadResult
from .project import Project

__all__ = ["Deposit", "Payment", "Project", "ProjectStatus", "UploadResult"]
