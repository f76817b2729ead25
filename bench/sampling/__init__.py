"""Sampling: score models by Tweedie, batched samplers, sample metrics and their classifier."""
