"""A faceledger process driven line by line (JSON on stdin, one JSON answer per line on stdout).

The cross-process Milvus tests start several of these, so that each engine lives in its own process
exactly as a `faceledger serve` and CLI commands would. Every FaceledgerError is answered as
{"ok": false, "error": ..., "kind": ...}; anything else as {"ok": false, "traceback": ...}.

Usage: python tests/milvus_worker.py   (FACELEDGER_HOME / FACELEDGER_INDEX in the environment)
"""

from __future__ import annotations

import json
import sys
import traceback


def main() -> None:
    from faceledger.config import Settings
    from faceledger.engine import open_engine
    from faceledger.errors import FaceledgerError
    from faceledger.index import milvus_lite_lock

    milvus_lite_lock.WAIT_S = float(sys.argv[1]) if len(sys.argv) > 1 else milvus_lite_lock.WAIT_S
    engine = None
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        try:
            if engine is None:
                engine = open_engine(Settings(operator="worker"))
            answer = {"ok": True, **run(engine, request)}
        except FaceledgerError as exc:
            answer = {"ok": False, "error": str(exc), "kind": type(exc).__name__}
        except Exception:  # noqa: BLE001 - the tests fail on this: a traceback is a bug
            answer = {"ok": False, "traceback": traceback.format_exc()}
        print(json.dumps(answer), flush=True)
        if request["op"] == "exit":
            break
    if engine is not None:
        engine.close()


def run(engine, request: dict) -> dict:
    op, gallery = request["op"], request.get("gallery", "g")
    if op == "create":
        engine.create_gallery(gallery)
        return {}
    if op == "enroll":
        report = engine.enroll(request["images"], gallery=gallery, subject=request.get("subject"),
                               subject_from_folder=request.get("subject") is None, source="s", legal_basis="b")
        return {"enrolled": report.count("enrolled")}
    if op == "search":
        result = engine.search(request["image"], gallery=gallery, purpose="p", case="c")
        return {"size": result.gallery_size, "subjects": [c.subject for c in result.candidates]}
    if op == "erase":
        receipt = engine.erase(reason="request", subject=request["subject"], gallery=gallery)
        return {"faces": receipt.get("faces")}
    if op == "reindex":
        return {"faces": sum(row["faces"] for row in engine.reindex())}
    if op == "count":  # what the index holds for the gallery, against what the store holds
        from sqlalchemy import select

        from faceledger.store import FaceRecord, Gallery

        with engine.writing() as session:
            row = session.execute(select(Gallery).where(Gallery.name == gallery)).scalar_one()
            index = engine.indexes.get(session, row)
            store = session.execute(select(FaceRecord.id).where(FaceRecord.gallery_id == row.id)).scalars()
            return {"index": sorted(_all_ids(index)), "store": sorted(int(i) for i in store)}
    if op == "exit":
        return {}
    raise ValueError(f"unknown op {op!r}")


def _all_ids(index) -> list[int]:
    import numpy as np

    n = len(index)
    if n == 0:
        return []
    _, ids = index.search(np.ones((1, index.dim), np.float32) / np.sqrt(index.dim), n)
    return [int(i) for i in ids[0] if i >= 0]


if __name__ == "__main__":
    main()
