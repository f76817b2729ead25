"""What produced a run: library versions, platform and plugin fingerprints."""

from __future__ import annotations

import importlib.metadata
import platform

from bench.code_identity import harness_code
from bench.plugins import PluginSet

LIBRARIES = ("denoise-bench", "torch", "deepinv", "scikit-image", "numpy", "scipy", "pluggy")


def versions(plugins: PluginSet) -> dict:
    found = {"python": platform.python_version(), "platform": platform.platform()}
    for name in LIBRARIES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    found["plugins"] = {i.name: i.version or i.fingerprint for i in plugins.infos.values() if not i.broken}
    found["harness"] = harness_code()  # the status command says "harness code changed" from it
    return found


def weights(denoisers: dict) -> dict[str, str]:
    """Model label -> fingerprint (e.g. SHA-256) of the weights each built denoiser loaded;
    `` (unpinned)`` after it where only a first download vouches for the hash (``model.pinned`` False)."""
    return {label: denoiser.model.fingerprint + (" (unpinned)" if getattr(denoiser.model, "pinned", True) is False
                                                 else "")
            for label, denoiser in denoisers.items() if getattr(denoiser.model, "fingerprint", None)}
