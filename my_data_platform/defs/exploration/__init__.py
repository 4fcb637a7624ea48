"""Exploration: each dataset version as a FiftyOne dataset, and the model's mistakes on it."""
