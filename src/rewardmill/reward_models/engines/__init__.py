"""Engines: run encoded rows through a model in batches (transformers, vLLM). `protocol.RewardEngine` is their one
interface and `Capabilities` what each declares it can run; `starting.start_engine` starts the one the options
name. Nothing is imported here, so that a torch-free module of this package stays torch-free."""
