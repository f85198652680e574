"""Make a small data directory with the store of a released faceledger, for the schema-upgrade tests.

Run it with the code of the release whose store you want to keep (not the working tree), e.g.

    git archive 41581fb src | tar -x -C /tmp/v1
    PYTHONPATH=/tmp/v1/src .venv/bin/python scripts/make_store_fixture.py tests/data/store-v1

It enrols four people from tests/data (three LFW people, three images each, and one open-faces
portrait), runs one search and one 1:1 verification, then keeps only the SQLite file and the ledger
head: the vector index is a cache that the engine rebuilds. tests/test_schema.py opens the result
with the current code, which must upgrade it and still find the people enrolled in it.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
LFW_PEOPLE = ["Angela_Merkel", "Colin_Powell", "Tony_Blair"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="data directory to create (must not exist)")
    args = parser.parse_args()
    if args.out.exists():
        print(f"{args.out} exists; remove it first", file=sys.stderr)
        return 2

    import faceledger
    from faceledger import open_engine

    print(f"faceledger code from {Path(faceledger.__file__).parent}")
    work = args.out.with_name(args.out.name + ".work")
    shutil.rmtree(work, ignore_errors=True)
    eng = open_engine(home=work, operator="fixture-maker")
    try:
        eng.create_gallery("fixture", purposes=["identity check"])
        lfw = [f for person in LFW_PEOPLE for f in sorted((DATA / "lfw" / person).glob("*.jpg"))[:3]]
        report = eng.enroll(lfw, gallery="fixture", subject_from_folder=True,
                            source="LFW research dataset (see tests/data/CREDITS.md)",
                            legal_basis="research and evaluation")
        assert report.count("enrolled") == 9 and not report.failures, report
        eng.enroll([DATA / "open-faces" / "macron_2014.jpg"], gallery="fixture", subject="Emmanuel Macron",
                   source="Wikimedia Commons (see tests/data/CREDITS.md)", legal_basis="openly licensed portrait")
        found = eng.search(DATA / "lfw" / "Angela_Merkel" / "Angela_Merkel_0004.jpg", gallery="fixture",
                           purpose="identity check", case="FIXTURE-1")
        assert found.decision == "match", found
        same = eng.verify(DATA / "open-faces" / "ardern_2018.jpg", DATA / "open-faces" / "ardern_2022.jpg",
                          purpose="fixture: 1:1", case="FIXTURE-2")
        print(f"search: {found.decision}; verify: {same}")
        assert eng.audit_verify().ok
    finally:
        eng.close()

    args.out.mkdir(parents=True)
    with sqlite3.connect(work / "faceledger.db") as src, sqlite3.connect(args.out / "faceledger.db") as dst:
        src.backup(dst)  # a single file, the WAL folded in
    with sqlite3.connect(args.out / "faceledger.db") as dst:
        dst.execute("PRAGMA journal_mode=DELETE")
        dst.execute("VACUUM")
    shutil.copy2(work / "ledger.head", args.out / "ledger.head")
    shutil.rmtree(work)
    size = (args.out / "faceledger.db").stat().st_size
    print(f"wrote {args.out}/faceledger.db ({size / 1024:.0f} KiB) and ledger.head")
    return 0


if __name__ == "__main__":
    sys.exit(main())
