"""Peer libraries run in their own virtual environments (see ``benchmarks/engine_peer.py``)."""
