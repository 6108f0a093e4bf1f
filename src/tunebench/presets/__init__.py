"""Shipped YAML presets: demo (offline CPU), seed (the original study), smoke (tests)."""
