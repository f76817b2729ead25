"""Data: clean images from disk, the standard test sets fetched by name, file checksums, labels."""
