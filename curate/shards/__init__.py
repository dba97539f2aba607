"""Shard writing, reading, final resharding and the manifest."""
