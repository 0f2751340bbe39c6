"""Committed runs: the job loop (checks, chunks, commit, resume, summary), writers, checkpoint, cache, Ray."""
