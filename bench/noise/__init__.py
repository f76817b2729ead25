"""Noise: seeded degradations, how their levels are shown, variance stabilisation."""
