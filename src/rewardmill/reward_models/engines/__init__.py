"""Engines: run encoded rows through a model in batches (transformers, vLLM)."""
