"""Avantis protocol facts: addresses, event ABIs by version, decoding of logs."""
