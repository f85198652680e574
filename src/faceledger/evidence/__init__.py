"""Evidence packages: one self-contained HTML file per search (render.py) with a checkable segment of the
ledger's hash chain (proof.py). Gathered by services/evidence.py; `faceledger evidence` exports and checks."""
