"""Storage backends: the boundary (``_base``) and its implementations."""
