"""denoise-bench's built-in plugins (import name ``bench_plugins``).

They register through the ``denoise_bench`` entry-point group, exactly as a
third-party package does (see pyproject.toml).
"""
