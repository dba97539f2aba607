"""Duplicate finding: exact, perceptual (pHash LSH), semantic, caption MinHash, eval-set."""
