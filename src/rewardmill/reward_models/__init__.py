"""Reward models: loading, hub, quirks, CPU choices, the family adapters and the engines."""
