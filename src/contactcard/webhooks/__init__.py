"""Webhooks: signed events about cards, the subscriptions that receive them, and the
delivery worker that runs inside every server process.

`events` builds bodies (pure), `subscriptions` holds the partner-facing use cases,
`delivery` signs, sends and retries. The store (`store/webhooks.py`) runs every statement.
"""
