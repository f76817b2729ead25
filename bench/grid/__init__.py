"""The grid: cells (denoiser and sampler) keyed by what makes their numbers, run, scored, executed."""
