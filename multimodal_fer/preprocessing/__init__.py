"""Offline, deterministic preprocessing into versioned, fingerprinted, memory-mapped caches."""
