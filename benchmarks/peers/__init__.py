"""Peer pipelines that faceledger's benchmarks compare against (not part of the faceledger package)."""
