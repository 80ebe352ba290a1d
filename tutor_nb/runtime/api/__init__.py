"""One router per resource family of OpenAI's API; ``ROUTERS`` is the order they are mounted in."""

from . import assistants, containers, conversations, files, messages, responses, runs, threads, vector_stores

#: threads first: its POST /v1/threads/runs must come before the routes taking a thread id
ROUTERS = [threads.router, assistants.router, messages.router, runs.router, files.router, vector_stores.router,
           responses.router, conversations.router, containers.router]
