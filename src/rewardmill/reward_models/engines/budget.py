"""The token budget of one engine instance: the configured one, lowered after a batch runs out of memory.

The lowered budget belongs to the engine instance, never to an options object another engine or caller shares.
A file run keeps it lowered to the end; a long-lived caller (the reward server) gives it back step by step with
`restore`, so one huge request does not slow every later one.
"""

from __future__ import annotations


class TokenBudget:
    def __init__(self, configured: int):
        self.configured = configured
        self.current = configured

    def lower(self, failed_tokens: int) -> bool:
        """Halve the budget below a batch of `failed_tokens` that ran out of memory; whether it went down."""
        budget = max(1, min(self.current, failed_tokens) // 2)
        if budget >= self.current:
            return False
        self.current = budget
        return True

    def restore(self) -> bool:
        """One step back toward the configured budget (doubled, at most the configured one); whether it rose."""
        if self.current >= self.configured:
            return False
        self.current = min(self.configured, self.current * 2)
        return True
