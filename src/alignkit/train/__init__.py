"""Offline training: objectives (pure losses) and the one loop that runs them."""
