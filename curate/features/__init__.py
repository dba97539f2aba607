"""Per-sample features: content hashes, perceptual hashes, thumbnails, caption hashes."""
