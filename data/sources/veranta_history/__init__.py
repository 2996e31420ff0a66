"""Veranta's trade-history API: closed trades of a trader, in human units."""
