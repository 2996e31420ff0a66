"""The market and trader simulator: the project's test bench, with the truth it planted."""
