"""The Responses API's engine: responses recorded as output items and stream events, on the shared agent loop."""

from .conversations import Conversations
from .service import Job, Responses

__all__ = ["Conversations", "Job", "Responses"]
