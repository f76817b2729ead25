"""The Python API: runs, results, suites and validation, under which the command line is a thin shell.

The public names are re-exported by ``bench`` itself (``bench.evaluate``, ``bench.validator``,
``bench.denoiser``, ``bench.Results``); docs/python.md walks through them.
"""
