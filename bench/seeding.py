"""Stable hashes: cell keys, checkpoint ids and noise seeds depend only on what identifies them."""

import hashlib
import json


def noise_seed(base_seed: int, dataset: str, image_id: str, degradation: str,
               level: float, repetition: int) -> int:
    """A 63-bit seed from (base seed, dataset, image id, degradation, level, repetition).

    Independent of batch size, order, worker and device, and of Python's hash salt.
    """
    key = json.dumps([int(base_seed), dataset, str(image_id), degradation,
                      float(level).hex(), int(repetition)])
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") >> 1


def identity_hash(identity, length: int = 32) -> str:
    """Hex digest of a JSON-serialisable identity (key order does not matter)."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:length]
