"""Pyth's Hermes service: the latest prices of configured feeds and their live stream (SSE)."""
