"""Fetching: HTTP(S) with deadlines and caps, local files, and the per-partition fetch stage."""
