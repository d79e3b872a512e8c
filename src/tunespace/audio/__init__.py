"""Audio decoding and features."""
