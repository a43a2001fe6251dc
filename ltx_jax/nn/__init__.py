"""Shared layers: dense, norms, attention, rotary embeddings, timestep embeddings."""
