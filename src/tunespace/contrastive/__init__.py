"""Contrastive learning: losses with named terms, pair sources, and the one training loop every stage uses."""
