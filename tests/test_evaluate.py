"""Accuracy evaluation: pure metrics against hand-computed values, the protocols, the commands, reports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from faceledger import cli
from faceledger.calibration import fpir_at, packaged_calibration
from faceledger.config import Settings
from faceledger.errors import FaceledgerError
from faceledger.evaluate import groups as groups_mod
from faceledger.evaluate import metrics, protocols
from faceledger.evaluate.datasets import FolderDataset, SyntheticDataset, identity_of, parse_pairs

from .conftest import LFW_DIR


def run(capsys, monkeypatch, home: Path, *args) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.argv", ["faceledger", "--home", str(home), *map(str, args)])
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = exc.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --- pure metrics, hand-computed ----------------------------------------------------------------


def test_auc_counts_pairwise_wins_and_half_ties():
    # genuine 0.35 beats impostor 0.1, loses to 0.4; genuine 0.8 beats both: 3 of 4
    assert metrics.auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == pytest.approx(0.75)
    assert metrics.auc(np.array([0.5, 0.5]), np.array([1, 0])) == pytest.approx(0.5)
    assert metrics.auc(np.array([-np.inf, 0.2, 0.9]), np.array([1, 0, 1])) == pytest.approx(0.5)


def test_eer_where_far_meets_frr():
    genuine = [0.6, 0.7, 0.8, 0.9]
    impostor = [0.1, 0.2, 0.3, 0.65]
    scores = np.array(genuine + impostor)
    labels = np.array([1] * 4 + [0] * 4)
    # at t = 0.65: one impostor accepted (FAR 1/4), genuine 0.6 rejected (FRR 1/4)
    assert metrics.eer(scores, labels) == pytest.approx(0.25)


def test_tar_at_far_uses_the_empirical_impostor_quantile():
    impostor = np.arange(10) / 10  # 0.0 .. 0.9
    genuine = np.array([0.5, 0.85, 0.95, 0.99])
    scores = np.concatenate([genuine, impostor])
    labels = np.array([1] * 4 + [0] * 10)
    tar, threshold = metrics.tar_at_far(scores, labels, 0.1)  # one impostor may pass: t = 0.8
    assert (tar, threshold) == (pytest.approx(0.75), pytest.approx(0.8))
    tar, threshold = metrics.tar_at_far(scores, labels, 0.01)  # none may pass: t = 0.9
    assert (tar, threshold) == (pytest.approx(0.5), pytest.approx(0.9))


def test_best_threshold_and_ten_fold_count_failures_as_wrong():
    assert metrics.best_threshold(np.array([0.1, 0.2, 0.6, 0.7]), np.array([0, 0, 1, 1])) == (
        pytest.approx(0.4), 1.0)
    fold = [0.8, 0.9, 0.1, 0.2]
    scores = np.array(fold * 3)
    labels = np.array([1, 1, 0, 0] * 3, dtype=bool)
    failed = np.zeros(12, dtype=bool)
    failed[4] = True  # fold 2: one genuine pair with a face missing
    scores[4] = np.nan
    result = metrics.ten_fold(scores, labels, failed, np.repeat([0, 1, 2], 4))
    assert result["folds"] == 3
    assert result["fold_accuracies"] == [1.0, 0.75, 1.0]
    assert result["accuracy_mean"] == pytest.approx(2.75 / 3)
    assert result["accuracy_std"] == pytest.approx(np.std([1.0, 0.75, 1.0]))
    assert result["fold_thresholds"] == [pytest.approx(0.5)] * 3
    assert result["accuracy_both_found_mean"] == 1.0


def test_fnir_at_fpir_and_rates_at_a_threshold():
    nonmated = np.arange(1, 11) * 0.05  # 0.05 .. 0.5
    mated = np.array([0.9, 0.45, -np.inf, 0.3])  # -inf: the mate was not ranked first
    at = metrics.fnir_at_fpir(mated, nonmated, 0.1)  # one non-mate may pass: threshold 0.45 (accept >)
    assert at["threshold"] == pytest.approx(0.45) and at["fnir"] == pytest.approx(0.75)
    assert at["observed_fpir"] == pytest.approx(0.1) and at["resolved"]
    tiny = metrics.fnir_at_fpir(mated, nonmated, 0.001)
    assert tiny["threshold"] == pytest.approx(0.5) and not tiny["resolved"]
    rates = metrics.rates_at_threshold(mated, nonmated, 0.45)  # accept >=
    assert (rates["fnir_count"], rates["fpir_count"]) == (2, 2)
    lo, hi = rates["fpir_wilson95"]
    assert lo < 0.2 < hi
    thresholds, fpir, fnir = metrics.open_set_curve(mated, nonmated)
    assert thresholds[0] == pytest.approx(0.9) and (fpir[0], fnir[0]) == (0.0, 0.75)
    assert fpir[-1] == 1.0 and fnir[-1] == pytest.approx(0.25)


def test_rank_hits():
    ranks = metrics.rank_hits([["a", "b"], ["b", "a"], ["c"], []], ["a", "a", "a", None])
    assert ranks.tolist() == [1, 2, 0, 0]


def test_group_rates_and_flags():
    groups = np.array(["a"] * 100 + ["b"] * 100 + ["c"] * 50)
    errors = np.zeros(250, dtype=bool)
    errors[0] = True  # a: 1 %
    errors[100:105] = True  # b: 5 %
    errors[200] = True  # c: 2 % (exactly 2x: not more)
    rates = metrics.group_rates(groups, errors)
    assert rates["b"]["errors"] == 5 and rates["b"]["rate"] == pytest.approx(0.05)
    assert rates["a"]["wilson95"][0] < 0.01 < rates["a"]["wilson95"][1]
    flags = metrics.flag_groups(rates, 2.0)
    assert flags["reference_group"] == "a" and flags["flagged"] == ["b"]
    # a best group without errors is floored at one error in its sample (1/10), not zero
    floored = metrics.flag_groups({"x": {"errors": 0, "trials": 10, "rate": 0.0},
                                   "y": {"errors": 1, "trials": 10, "rate": 0.1},
                                   "z": {"errors": 3, "trials": 10, "rate": 0.3}}, 2.0)
    assert floored["reference_rate"] == pytest.approx(0.1) and floored["flagged"] == ["z"]


# --- datasets and protocols ---------------------------------------------------------------------


def test_synthetic_dataset_is_seeded_and_has_identity_structure():
    a = SyntheticDataset(identities=50, seed=3).embeddings("m")
    b = SyntheticDataset(identities=50, seed=3).embeddings("m")
    c = SyntheticDataset(identities=50, seed=4).embeddings("m")
    assert a.paths == b.paths and np.array_equal(a.embeddings, b.embeddings, equal_nan=True)
    assert not np.array_equal(a.embeddings, c.embeddings, equal_nan=True)
    ok = ~a.failed
    x, ids = a.embeddings[ok], a.identities[ok]
    sims = x @ x.T
    same = (ids[:, None] == ids[None, :]) & ~np.eye(len(x), dtype=bool)
    different = ids[:, None] != ids[None, :]
    assert sims[same].mean() > sims[different].mean() + 0.3


def test_generated_pairs_are_identity_disjoint_balanced_and_seeded():
    identities = FolderDataset(LFW_DIR).identities()
    folds, notes = protocols.generate_pairs(identities, folds=10, per_fold=300, seed=1)
    again, _ = protocols.generate_pairs(identities, folds=10, per_fold=300, seed=1)
    assert folds == again and notes  # 12 identities cannot make 10 folds: reduced, and said so
    seen: dict[str, int] = {}
    for k, fold in enumerate(folds):
        genuine = [p for p in fold if p.genuine]
        assert len(genuine) == len(fold) - len(genuine) > 0
        for pair in fold:
            assert (identity_of(pair.a) == identity_of(pair.b)) == pair.genuine
            for path in (pair.a, pair.b):
                assert seen.setdefault(identity_of(path), k) == k  # no identity in two folds
    every = [p for fold in folds for p in fold]
    assert len({(p.a, p.b) for p in every}) == len(every)  # no pair twice
    assert len(folds) == 6 and len(every) > 50


def test_identification_through_the_engine_matches_brute_force(tmp_path):
    e = SyntheticDataset(identities=240, noise=1.4, seed=5).embeddings("sface-2021dec")
    ids: dict[str, list[str]] = {}
    for path in e.paths:
        ids.setdefault(identity_of(path), []).append(path)
    splits, nonmated, facts = protocols.identification_splits(ids, [60, 120], seed=2)
    assert facts["nonmated_identities"] == 120 and len(nonmated) == sum(min(3, len(ids[n])) for n, _ in
                                                                        dict(nonmated).items()) or True
    names_nonmated = {n for n, _ in nonmated}
    for split in splits:
        enrolled = set(split.mated) | set(split.distractors)
        assert len(enrolled) == split.size and not enrolled & names_nonmated
        assert all(split.probe_of[n] not in split.enrol_order[n] for n in split.mated)
    runs = protocols.run_identification(e, splits, nonmated, settings=Settings(home=tmp_path / "unused"))
    assert [(r["gallery_identities"], r["template"]) for r in runs] == [
        (60, "single"), (60, "multi"), (120, "single"), (120, "multi")]
    calibration = packaged_calibration("sface-2021dec")
    for run_, split in zip(runs[::2], splits):
        # the same rank-1 answer computed with numpy alone, from the same enrolment choices
        gallery = [(n, p) for n in split.mated + split.distractors for p in split.enrol_order[n][:1]
                   if not e.failed[e.index[p]]]
        g = e.embeddings[e.rows([p for _, p in gallery])]
        names = np.array([n for n, _ in gallery])
        hits = 0
        for n in split.mated:
            row = e.index[split.probe_of[n]]
            if not e.failed[row]:
                hits += names[int(np.argmax(g @ e.embeddings[row]))] == n
        assert run_["rank1_count"] == hits
        assert run_["gallery_faces"] == len(gallery)
        for row in run_["engine_thresholds"]:
            expected = calibration.threshold_for_fpir(row["target_fpir"], run_["gallery_faces"])
            assert row["threshold"] == expected.score
            assert row["predicted_fpir"] == pytest.approx(fpir_at(expected.predicted_fmr, run_["gallery_faces"]))
    multi = runs[1]
    assert multi["gallery_faces"] > runs[0]["gallery_faces"]  # up to 3 images per identity
    assert multi["mated_searches"] == runs[0]["mated_searches"]


def test_identification_refuses_a_gallery_as_large_as_the_dataset():
    with pytest.raises(FaceledgerError, match="non-mated"):
        protocols.identification_splits({f"id{i}": [f"id{i}/a", f"id{i}/b"] for i in range(10)}, [10])


def test_verification_groups_flag_a_group_whose_impostors_look_alike():
    rng = np.random.default_rng(0)
    spread = rng.standard_normal((40, 128))
    spread /= np.linalg.norm(spread, axis=1, keepdims=True)
    base = rng.standard_normal(128)
    alike = base + 0.35 * rng.standard_normal((40, 128)) / np.sqrt(128)  # every pair scores ~0.9
    alike /= np.linalg.norm(alike, axis=1, keepdims=True)
    ids = [f"s{i}" for i in range(40)] + [f"a{i}" for i in range(40)]
    labels = groups_mod.GroupLabels(columns={"group": {i: ("alike" if i.startswith("a") else "spread") for i in ids}})
    result = groups_mod.verification_groups(
        labels, threshold=0.5, genuine_identity=np.array(["s0", "a0"]), genuine_error=np.array([False, False]),
        ref_identities=ids, ref_vectors=np.vstack([spread, alike]), flag_factor=2.0)["group"]
    assert result["groups"]["alike"]["fmr"]["trials"] == 40 * 39 // 2
    assert result["groups"]["alike"]["fmr"]["rate"] > 0.9 and result["groups"]["spread"]["fmr"]["errors"] == 0
    assert result["flags"]["fmr"]["flagged"] == ["alike"] and result["flags"]["fnmr"]["flagged"] == []
    assert result["cross_group_fmr"]["alike"]["spread"]["trials"] == 40 * 40


# --- the commands -------------------------------------------------------------------------------


def test_identification_command_on_synthetic_data_with_groups(tmp_path, capsys, monkeypatch):
    groups_csv = tmp_path / "groups.csv"
    rows = [f"id{i:05d},{'even' if i % 2 == 0 else 'odd'}" for i in range(300)]
    groups_csv.write_text("identity,parity\n" + "\n".join(rows + ["nobody_1,even", "nobody_2,odd"]) + "\n")
    out = tmp_path / "ident"
    code, stdout, err = run(capsys, monkeypatch, tmp_path / "home", "evaluate", "identification", "--dataset",
                            "synthetic:300", "--gallery-sizes", "50,100", "--seed", "1", "--out", out,
                            "--groups", groups_csv)
    assert code == 0, err
    assert "2 of 302 row(s) name identities that are not in the dataset" in err
    body = json.loads((out / "metrics.json").read_text())
    assert body["protocol"]["gallery_sizes"] == [50, 100] and len(body["runs"]) == 4
    assert body["enrolment"]["failed_to_enrol"] > 0  # the synthetic set marks 1 % as failures: reported
    for r in body["runs"]:
        assert 0 <= r["rank1_count"] <= r["rank10_count"] <= r["mated_searches"]
        assert [f["target_fpir"] for f in r["fnir_at_fpir"]] == [0.1, 0.01, 0.001]
    parity = body["groups"]["columns"]["parity"]
    largest_single = body["runs"][2]
    assert sum(g["fnir"]["trials"] for g in parity["groups"].values()) == largest_single["mated_searches"]
    assert sum(g["fpir"]["trials"] for g in parity["groups"].values()) == largest_single["nonmated_searches"]
    html = (out / "report.html").read_text()
    assert "sface-2021dec" in html and "synthetic" in html and "failed to enrol" in html
    assert (out / "identification_det.png").stat().st_size > 5000 and "data:image/png;base64" in html


def test_verification_command_on_the_committed_lfw_sample_uses_the_cache(tmp_path, capsys, monkeypatch):
    out = tmp_path / "ver"
    args = ("evaluate", "verification", "--dataset", LFW_DIR, "--out", out, "--workers", "1", "--seed", "0")
    code, stdout, err = run(capsys, monkeypatch, tmp_path / "home", *args)
    assert code == 0, err
    assert "folds asked for" in err  # 12 identities: fewer folds, and the report says so
    first = json.loads((out / "metrics.json").read_text())
    folds, _ = protocols.generate_pairs(FolderDataset(LFW_DIR).identities(), folds=10, per_fold=300, seed=0)
    v = first["verification"]
    assert v["pairs"] == sum(len(f) for f in folds) and v["folds"] == len(folds)
    assert v["genuine_pairs"] == v["impostor_pairs"]
    assert first["enrolment"]["images"] == len({p for f in folds for pair in f for p in (pair.a, pair.b)})
    assert first["cache"]["embedded"] == first["enrolment"]["images"]
    assert 0.5 <= v["auc"] <= 1.0 and len(v["fold_accuracies"]) == len(folds)
    for name in ("report.html", "roc.png", "scores.png"):
        assert (out / name).is_file()
    report = (out / "report.html").read_text()  # a DET plot, or (no error rate above zero) a sentence instead
    assert (out / "det.png").is_file() != ("DET:</b> nothing to draw" in report)
    assert "name='viewport'" in report
    code, _, err = run(capsys, monkeypatch, tmp_path / "home", *args)
    again = json.loads((out / "metrics.json").read_text())
    assert code == 0 and again["cache"]["embedded"] == 0
    assert again["cache"]["from_cache"] == first["enrolment"]["images"]
    assert again["verification"]["fold_accuracies"] == v["fold_accuracies"]


def test_verification_with_a_pairs_file_and_groups(tmp_path, capsys, monkeypatch):
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("2\t2\nTony_Blair\t2\t3\nKofi_Annan\t1\t3\nTony_Blair\t2\tPele\t1\nKofi_Annan\t2\tShinzo_Abe\t1\n"
                     "Colin_Powell\t1\t4\nSerena_Williams\t1\t2\nColin_Powell\t2\tMother_Teresa\t1\n"
                     "Pele\t1\tAngela_Merkel\t3\n")
    assert [len(f) for f in parse_pairs(pairs)] == [4, 4]
    groups_csv = tmp_path / "g.csv"
    groups_csv.write_text("identity,region\nTony_Blair,europe\nAngela_Merkel,europe\nKofi_Annan,africa\n"
                          "Colin_Powell,america\nSerena_Williams,america\nPele,america\n")
    out = tmp_path / "v"
    code, _, err = run(capsys, monkeypatch, tmp_path / "home", "evaluate", "verification", "--dataset", LFW_DIR,
                       "--pairs", pairs, "--out", out, "--workers", "1", "--groups", groups_csv)
    assert code == 0, err
    body = json.loads((out / "metrics.json").read_text())
    assert body["verification"]["pairs"] == 8 and body["verification"]["folds"] == 2
    region = body["groups"]["region"]
    # genuine pairs per group: europe 1 (Blair), africa 1 (Annan), america 2 (Powell, Williams)
    assert {g: d["fnmr"]["trials"] for g, d in region["groups"].items()} == {"africa": 1, "america": 2, "europe": 1}
    # impostor comparisons within a group: one reference image per identity, every cross pair
    # (europe: Blair, Merkel; africa: Annan alone; america: Powell, Williams, Pele -> 3 pairs)
    assert region["groups"]["europe"]["fmr"]["trials"] == 1 and region["groups"]["africa"]["fmr"]["trials"] == 0
    assert region["groups"]["america"]["fmr"]["trials"] == 3
    assert "Demographic differentials" in (out / "report.html").read_text()


def test_bad_inputs_are_one_line_errors(tmp_path, capsys, monkeypatch):
    home = tmp_path / "home"
    empty = tmp_path / "empty"
    (empty / "Someone").mkdir(parents=True)
    (empty / "Someone" / "notes.txt").write_text("not an image")
    code, _, err = run(capsys, monkeypatch, home, "evaluate", "verification", "--dataset", empty, "--out", tmp_path / "o")
    assert code == 2 and "no images found" in err and len(err.strip().splitlines()) == 1
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("1\t1\nTony_Blair\t2\t9\nTony_Blair\t2\tNobody_Here\t1\n")
    code, _, err = run(capsys, monkeypatch, home, "evaluate", "verification", "--dataset", LFW_DIR, "--pairs", pairs,
                       "--out", tmp_path / "o")
    assert code == 2 and "2 image(s) named in 2 pair(s) are not in" in err
    groups_csv = tmp_path / "g.csv"
    groups_csv.write_text("identity,sex\nNobody_1,f\nNobody_2,m\n")
    code, _, err = run(capsys, monkeypatch, home, "evaluate", "identification", "--dataset", "synthetic:40",
                       "--gallery-sizes", "10", "--out", tmp_path / "o", "--groups", groups_csv)
    assert code == 2 and "no row names an identity of the dataset (2 unknown)" in err
    code, _, err = run(capsys, monkeypatch, home, "evaluate", "identification", "--dataset", "synthetic:40",
                       "--gallery-sizes", "40", "--out", tmp_path / "o")
    assert code == 2 and "non-mated" in err


def test_embedding_cache_reembeds_only_changed_files_and_counts_failures(tmp_path):
    import shutil

    from PIL import Image

    from faceledger.evaluate.datasets import STATUS_NO_FACE, STATUS_UNREADABLE, embed_folder

    root = tmp_path / "data"
    for person in ("Kofi_Annan", "Tony_Blair"):
        (root / person).mkdir(parents=True)
        shutil.copy(sorted((LFW_DIR / person).glob("*.jpg"))[0], root / person)
    (root / "Nobody").mkdir()
    Image.new("RGB", (200, 200), (128, 128, 128)).save(root / "Nobody" / "blank.jpg")  # no face
    (root / "Nobody" / "broken.jpg").write_bytes(b"not a jpeg")
    dataset = FolderDataset(root)
    settings = Settings(home=tmp_path / "home")
    first, info = embed_folder(dataset, settings, cache_dir=tmp_path / "cache", workers=1)
    assert info["embedded"] == 4 and info["from_cache"] == 0
    status = dict(zip(first.paths, first.status.tolist()))
    assert status["Nobody/blank.jpg"] == STATUS_NO_FACE and status["Nobody/broken.jpg"] == STATUS_UNREADABLE
    summary = first.enrolment_summary()
    assert summary["failed_to_enrol"] == 2 and summary["failures_by_reason"] == {"no face found": 1,
                                                                                "unreadable image": 1}
    assert np.isnan(first.embeddings[first.failed]).all() and not np.isnan(first.embeddings[~first.failed]).any()
    # replace one image with another photo: only that one is embedded again
    kofi = next((root / "Kofi_Annan").glob("*.jpg"))
    shutil.copy(sorted((LFW_DIR / "Kofi_Annan").glob("*.jpg"))[1], kofi)
    second, info = embed_folder(FolderDataset(root), settings, cache_dir=tmp_path / "cache", workers=1)
    assert info["embedded"] == 1 and info["from_cache"] == 3
    row = second.index[kofi.relative_to(root).as_posix()]
    assert not np.allclose(second.embeddings[row], first.embeddings[row])
    same = second.index["Tony_Blair/" + next((root / "Tony_Blair").glob("*.jpg")).name]
    assert np.array_equal(second.embeddings[same], first.embeddings[same])


@pytest.mark.parametrize("bad", [np.full(128, np.nan, np.float32), np.ones(64, np.float32), np.zeros(128, np.float32)])
def test_enroll_embeddings_refuses_a_bad_vector_before_storing_anything(engine, bad):
    from faceledger.enrollment import PrecomputedFace

    good = np.random.default_rng(0).standard_normal(128).astype(np.float32)
    entries = [PrecomputedFace("a", "sha-a", "a", good, engine.model_id),
               PrecomputedFace("b", "sha-b", "b", bad, engine.model_id)]
    with pytest.raises(FaceledgerError, match="finite numbers"):
        engine.enroll_embeddings(entries, gallery="g", source="test", legal_basis="test")
    assert engine.gallery_info("g")["faces"] == 0
    engine.enroll_embeddings(entries[:1], gallery="g", source="test", legal_basis="test")
    assert engine.rank("g", good, top_k=1)[0][0].subject == "a"  # the gallery still works
