"""Integrations of sessiondb with agent frameworks.

Each lives in its own module and imports its framework only when that module
is imported (``import sessiondb`` never needs one):

- ``sessiondb.integrations.openai_agents``: ``SessionDBSession``, a session
  store for the OpenAI Agents SDK (``pip install '.[openai-agents]'``).
- ``sessiondb.integrations.claude_agent_sdk``: ``SessionDBSessionStore``, the
  Claude Agent SDK's ``SessionStore`` (``pip install '.[claude-agent-sdk]'``).
"""
