"""Models: loading (bundled, local, hub), the cache, adapters built on first use, and frozen backbones."""
