"""One chat turn, the hot path: history → (rewrite) → retrieve → budget → generate → store.

Stages, one module each: ``preparation`` (everything before the model writes), ``service``
(the use case, generation whole or streamed), ``persistence`` (question, answer, failure),
``turn`` (the values passed between them).
"""

from parley.services.chat.service import ChatService
from parley.services.chat.turn import PreparedTurn, TurnResult, citations_for, message_dict

__all__ = ["ChatService", "PreparedTurn", "TurnResult", "citations_for", "message_dict"]
