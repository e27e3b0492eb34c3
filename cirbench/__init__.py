"""cirbench: a benchmark harness and leaderboard for zero-shot composed image retrieval."""

__version__ = "0.1.0"
