"""sheetsync augment: transforms, the class table, the plan, derived rows in the sheet and folders."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import write_images
from PIL import Image, ImageDraw
from test_project import edit, tree, workbook

from sheetsync import _transforms as tf
from sheetsync._compose import compose, glyphs, targets_of
from sheetsync._words import augment_plan_lines, describe
from sheetsync.augment import (
    ROMAN_TABLE,
    Variant,
    class_table,
    default_table,
    derived_last,
    follow_sources,
    plan_augment,
)
from sheetsync.dataset import QUARANTINE
from sheetsync.errors import AugmentError, ConfigError
from sheetsync.project import Project

CLASSES = ["i", "ii", "iii", "iv", "vi", "viii"]


def viii_image(size: tuple[int, int] = (120, 60)) -> np.ndarray:
    """A VIII drawn as four separate glyphs, like a clean scan."""
    img = Image.new("L", size, 255)
    d = ImageDraw.Draw(img)
    d.line([(8, 10), (20, 50), (32, 10)], fill=0, width=4)
    for x in (50, 70, 90):
        d.line([(x, 10), (x, 50)], fill=0, width=4)
    return np.asarray(img)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    root = tmp_path / "data"
    write_images(root, {"train": {c: 3 for c in CLASSES}, "val": {c: 1 for c in CLASSES}})
    p, _ = Project.init(root, tmp_path / "proj")
    return p


def derived(project: Project):
    m = project.versions.load("latest")
    return m[m["source_id"] != ""].set_index("id")


# ---- transforms and the class table ------------------------------------------------------------

@pytest.mark.parametrize("family", [f for f in tf.FAMILIES if f != "compose"])
@pytest.mark.parametrize("shape", [(60, 90), (60, 90, 3)])
def test_each_transform_keeps_shape_and_dtype(family: str, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(0)
    a = np.full(shape, 255, dtype=np.uint8)
    a[10:40, 30:35] = 0
    spec = tf.sample_spec(family, rng)
    out = tf.apply_spec(a, spec)
    assert out.shape == a.shape and out.dtype == np.uint8
    assert not np.array_equal(out, a)  # it did something
    assert np.array_equal(tf.apply_spec(a, spec), out)  # and the same again


def test_composition_keeps_shape_and_makes_the_target_class() -> None:
    a = viii_image()
    assert "".join(k for k, _, _ in glyphs(a)) == "viii"
    assert targets_of("viii") == ("i", "ii", "iii", "v", "vi", "vii")
    for target in targets_of("viii"):
        out = compose(a, target)
        assert out.shape == a.shape and out.dtype == a.dtype
        assert "".join(k for k, _, _ in glyphs(out)) == target
    with pytest.raises(AugmentError, match="strokes read"):
        compose(a, "iv")


def test_class_table_maps_iv_to_vi_and_no_table_keeps_every_class() -> None:
    roman = class_table(ROMAN_TABLE, ["i", "ii", "iii", "iv", "v", "vi", "vii", "viii", "ix", "x"])
    assert roman.target("hflip", "iv") == "vi" and roman.target("hflip", "vi") == "iv"
    assert roman.target("hflip", "vii") is None and roman.target("vflip", "ix") == "ix"
    assert roman.target("rotate", "vii") == "vii" and roman.compose
    plain = class_table({}, ["cat", "dog"])
    assert set(plain.maps) == set(tf.CONTINUOUS) and not plain.compose
    with pytest.raises(ConfigError, match="not classes"):
        class_table({"hflip": {"iv": "xi"}}, ["iv", "vi"])
    with pytest.raises(ConfigError, match="not a transform"):
        class_table({"twirl": "all"}, ["iv"])


def test_the_review_folds_flip_by_the_same_class_table() -> None:
    """sheetsync._foldaugment (the review's folds) takes its flip rules from the augment table."""
    from sheetsync import _foldaugment

    assert _foldaugment.HFLIP is ROMAN_TABLE["hflip"] and _foldaugment.VFLIP is ROMAN_TABLE["vflip"]
    assert _foldaugment.HFLIP["iv"] == "vi" and "vii" not in _foldaugment.HFLIP


def test_a_flipped_iv_lands_in_vi(project: Project) -> None:
    result = project.augment(budget=6, families=["hflip"])
    d = derived(project)
    assert result.written == len(d) > 0
    root = project.config.root
    m = project.versions.load("latest").set_index("id")
    for id_, row in d.iterrows():
        source = m.loc[row["source_id"]]
        assert row["transform"] == "hflip"
        assert row["label"] == {"iv": "vi", "vi": "iv"}.get(source["label"], source["label"])
        assert row["path"].startswith(f"train/{row['label']}/")
        src = np.asarray(Image.open(root / source["path"]))
        assert np.array_equal(np.asarray(Image.open(root / row["path"])), src[:, ::-1]), id_
    assert (d["label"] == "vi").any()  # the iv sources became vi


# ---- plan: budget, cap, priorities, order ------------------------------------------------------

def test_budget_and_cap_are_respected(project: Project, tmp_path: Path) -> None:
    m = project.versions.load("latest")
    assert project.augment(budget=7).written == 7
    # The cap counts train+val kept images, derived ones included.
    cap = len(m) + 7 + 5
    cfg = project.config.path.read_text().replace("cap = 10000", f"cap = {cap}")
    project.config.path.write_text(cfg)
    again = Project.open(project.config.project_dir).augment()
    assert again.written == 5
    assert len(project.versions.load("latest")) == cap
    assert Project.open(project.config.project_dir).augment().version is None  # no room left


def test_dry_run_prints_the_plan_and_writes_nothing(project: Project) -> None:
    root = project.config.root
    before = tree(root)
    plans = []
    result = project.augment(budget=12, dry_run=True, on_plan=plans.append)
    assert tree(root) == before and result.version is None
    table = plans[0].table()
    assert table.loc["total", "total"] == 12 == len(result.plan.variants)


def test_plan_spends_more_on_weak_classes_and_none_on_duplicates(project: Project) -> None:
    from sheetsync.augment import Priorities

    m = project.versions.load("latest")
    table = class_table({f: "all" for f in tf.CONTINUOUS}, CLASSES)
    dup = str(m[(m["label"] == "ii") & (m["split"] == "train")]["id"].iloc[0])
    prio = Priorities({"i": 0.2, **{c: 1.0 for c in CLASSES[1:]}}, {dup: 0.0})
    plan = plan_augment(m, table, CLASSES, budget=70, seed=1, priorities=prio)
    per_class = plan.table()["total"]
    assert per_class["i"] > 2 * per_class["ii"]
    assert dup not in {v.source_id for v in plan.variants}
    again = plan_augment(m, table, CLASSES, budget=70, seed=1, priorities=prio)
    assert again.variants == plan.variants


def test_composed_rows_come_first_among_derived_rows() -> None:
    import pandas as pd

    m = pd.DataFrame({"id": ["a", "b", "d1", "d2", "d3"], "source_id": ["", "", "b", "a", "a"],
                      "transform": ["", "", "rotate(3.00)", "hflip", "compose(iii)"]})
    assert derived_last(["d1", "b", "d2", "a", "d3"], m) == ["b", "a", "d3", "d1", "d2"]


# ---- the sheet and pulls -----------------------------------------------------------------------

def test_derived_rows_round_trip_through_the_sheet_and_a_pull(project: Project) -> None:
    project.augment(budget=10)
    project.push()
    sheet = project.backend.read_table()
    d = derived(project)
    rows = sheet.set_index("id").loc[d.index]
    assert (rows["source_id"] == d["source_id"]).all() and (rows["transform"] == d["transform"]).all()
    # Derived rows come after every original.
    is_derived = sheet["source_id"] != ""
    assert not is_derived[: (~is_derived).sum()].any()
    assert describe(project.pull())[0].startswith("nothing to pull")


def test_a_dropped_derived_row_stays_dropped(project: Project) -> None:
    project.augment(budget=6)
    gone = derived(project).index[0]
    key = tuple(derived(project).loc[gone, ["source_id", "transform"]])
    project.push()
    edit(workbook(project), {gone: {"action": "drop"}})
    project.pull()
    assert derived(project).at[gone, "action"] == "drop"
    assert (project.config.root / derived(project).at[gone, "path"]).exists()
    assert derived(project).at[gone, "path"].startswith(QUARANTINE)
    project.augment(budget=30)
    d = derived(project)
    assert ((d["source_id"] == key[0]) & (d["transform"] == key[1])).sum() == 1


def test_a_relabelled_source_carries_its_derived_images(project: Project) -> None:
    project.augment(budget=60, families=["hflip", "rotate", "compose"])
    d = derived(project)
    m = project.versions.load("latest").set_index("id")
    iv = [s for s in d["source_id"].unique() if m.at[s, "label"] == "iv"
          and {"hflip"} <= {t.split("(")[0] for t in d[d["source_id"] == s]["transform"]}][0]
    dropped_src = str(d[d["transform"].str.startswith("compose")]["source_id"].iloc[0])
    project.push()
    edit(workbook(project), {iv: {"label": "vi"}, dropped_src: {"action": "drop"}})
    report = project.pull()
    d = derived(project)
    mine = d[d["source_id"] == iv]
    flip = mine[mine["transform"] == "hflip"].iloc[0]
    assert flip["label"] == "iv" and flip["path"].startswith("train/iv/")  # hflip(vi) = iv
    for _, row in mine[mine["transform"].str.startswith("rotate")].iterrows():
        assert row["label"] == "vi" and row["path"].startswith("train/vi/")
    assert "relabelled iv→vi" in flip["note"]
    assert (d[d["source_id"] == dropped_src]["action"] == "drop").all()
    assert any("dropped too" in line for line in describe(report))
    # The sheet says so after the next push.
    project.push()
    sheet = project.backend.read_table().set_index("id")
    assert "relabelled iv→vi" in sheet.at[flip.name, "note"]


def test_follow_sources_keeps_a_human_edit_of_the_derived_row() -> None:
    import pandas as pd

    before = pd.DataFrame({"id": ["s", "d"], "label": ["iv", "vi"], "action": ["keep", "keep"],
                           "note": ["", ""], "source_id": ["", "s"], "transform": ["", "hflip"]})
    after = before.copy()
    after.loc[0, "label"] = "vi"
    after.loc[1, "label"] = "i"
    table = class_table(default_table(["i", "iv", "vi"]), ["i", "iv", "vi"])
    out, said = follow_sources(before, after, ["s", "d"], table)
    assert out.set_index("id").at["d", "label"] == "i" and not said
    out, said = follow_sources(before, after.assign(label=["vi", "vi"]), ["s"], table)
    assert out.set_index("id").at["d", "label"] == "iv" and said


# ---- exact rebuilds, determinism, crashes ------------------------------------------------------

def test_a_lost_derived_file_is_rebuilt_exactly(project: Project) -> None:
    project.augment(budget=8)
    d = derived(project)
    root = project.config.root
    lost = d.index[0]
    path = root / d.at[lost, "path"]
    before = path.read_bytes()
    path.unlink()
    result = project.augment(budget=0)
    assert result.rebuilt == 1 and result.written == 0
    assert path.read_bytes() == before
    assert derived(project).at[lost, "hash"] == hashlib.sha256(before).hexdigest()


def test_same_version_seed_and_settings_give_byte_identical_images(tmp_path: Path) -> None:
    hashes = []
    for name in ("a", "b"):
        root = tmp_path / name / "data"
        write_images(root, {"train": {c: 3 for c in CLASSES}, "val": {c: 1 for c in CLASSES}})
        p, _ = Project.init(root, tmp_path / name / "proj")
        p.augment(budget=25)
        d = derived(p)
        hashes.append(sorted(zip(d["path"], d["hash"], strict=True)))
    assert hashes[0] == hashes[1] and len(hashes[0]) == 25


KILL_SCRIPT = """
import sys
from sheetsync.project import Project
from sheetsync._itemprogress import no_progress
Project.open(sys.argv[1], progress=no_progress).augment(budget=12)
"""


@pytest.mark.parametrize("fault", [("SHEETSYNC_FAULT_AFTER_WRITES", 5),
                                   ("SHEETSYNC_FAULT_AFTER_RENAMES", 1),
                                   ("SHEETSYNC_FAULT_AFTER_RENAMES", 17)])
def test_a_kill_during_augment_leaves_the_tree_as_before_or_after(
        project: Project, fault: tuple[str, int]) -> None:
    root = project.config.root
    versions = len(project.versions.list())
    in_tree = lambda: {k: v for k, v in tree(root).items()  # noqa: E731
                       if not k.startswith(".sheetsync-staging")}
    before = in_tree()
    env = {**os.environ, fault[0]: str(fault[1])}
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(project.config.project_dir)],
                          env=env, capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    Project.open(project.config.project_dir).status(check_sheet=False)  # recovers, if needed
    after = in_tree()
    m = project.versions.load("latest")
    if fault[0] == "SHEETSYNC_FAULT_AFTER_WRITES":
        assert after == before and len(project.versions.list()) == versions
    else:
        # The journal existed: the batch is completed, all 12 files and the version with them.
        assert len(after) == len(before) + 12
        assert {k: v for k, v in after.items() if k in before} == before
        assert len(project.versions.list()) == versions + 1
        assert sorted(m["path"]) == sorted(after)
    # Either way the next augment works and the tree matches the manifest.
    Project.open(project.config.project_dir).augment(budget=3)
    assert sorted(project.versions.load("latest")["path"]) == sorted(in_tree())


def test_variant_family_comes_from_the_spec() -> None:
    assert Variant("s", "noise(0.050,12)", "i", "train").family == "noise"
    assert Variant("s", "compose(iii)", "iii", "train").family == "compose"


def test_an_unreadable_source_is_named_and_skipped_not_a_traceback(project: Project) -> None:
    root = project.config.root
    broken = root / "train" / "iv" / "broken.png"
    broken.write_bytes(b"not a png at all")
    result = project.augment(budget=30, families=["rotate"])
    # Found unreadable when the plan is made: never a source, and the plan says so.
    m = project.versions.load("latest")
    broken_id = str(m.loc[m["path"] == "train/iv/broken.png", "id"].iloc[0])
    assert result.plan.priorities.excluded == {broken_id: "unreadable"}
    assert broken_id not in {v.source_id for v in result.plan.variants}
    assert "never a source: 1 image(s) (1 unreadable)" in "\n".join(augment_plan_lines(result.plan))
    assert result.written == 30 and not result.unbuilt
    assert broken.read_bytes() == b"not a png at all"


@pytest.mark.parametrize("setting, message", [("cap = 10000", "cap = -1"),
                                              ('splits = [\n    "train",\n]', 'splits = ["test"]')])
def test_bad_augment_settings_are_one_clear_error(project: Project, setting: str,
                                                   message: str) -> None:
    text = project.config.path.read_text()
    assert setting in text
    project.config.path.write_text(text.replace(setting, message))
    with pytest.raises(ConfigError, match=r"\[augment\]"):
        Project.open(project.config.project_dir).augment(budget=3)


def test_cli_prints_the_plan_and_dry_run_stops_there(project: Project) -> None:
    from click.testing import CliRunner

    from sheetsync.cli import cli

    root = project.config.root
    before = tree(root)
    run = CliRunner().invoke(cli, ["-C", str(project.config.project_dir), "augment",
                                   "--budget", "12", "--dry-run"])
    assert run.exit_code == 0, run.output
    assert "plan: 12 derived image(s), budget 12" in run.output
    assert "dry run: nothing written" in run.output and tree(root) == before
    bad = CliRunner().invoke(cli, ["-C", str(project.config.project_dir), "augment",
                                   "--families", "twirl"])
    assert bad.exit_code == 1 and "unknown transform famil" in bad.output
    assert "Traceback" not in bad.output
    done = CliRunner().invoke(cli, ["-C", str(project.config.project_dir), "augment",
                                    "--budget", "4"])
    assert done.exit_code == 0 and "wrote 4 derived image(s)" in done.output


def test_saved_predictions_steer_the_plan(project: Project) -> None:
    """Weak classes get more, near-duplicates (same embedding) none: from the saved files."""
    m = project.versions.load("latest")
    ids = list(m["id"])
    labels = list(m["label"])
    splits = list(m["split"])
    rng = np.random.default_rng(0)
    probs = np.full((len(ids), len(CLASSES)), 0.02)
    for k, (lab, split) in enumerate(zip(labels, splits, strict=True)):
        # The model gets the val 'ii' wrong (says 'i'), the rest right. (A training image it
        # doubted would not be a source at all: see the next test.)
        probs[k, CLASSES.index("i" if lab == "ii" and split == "val" else lab)] = 0.9
    emb = rng.normal(size=(len(ids), 8))
    twins = m[(m["label"] == "iii") & (m["split"] == "train")]["id"].iloc[:2].tolist()
    emb[ids.index(twins[1])] = emb[ids.index(twins[0])]
    project.store.save_predictions(1, "insample", ids, CLASSES, probs, emb, np.ones_like(probs))
    result = project.augment(budget=60, dry_run=True, families=["rotate"])
    prio = result.plan.priorities
    assert (prio.kind, prio.version) == ("insample", 1)
    assert "priorities: in-sample predictions of v1" in augment_plan_lines(result.plan)[0]
    assert prio.class_accuracy["ii"] == 0.0 and prio.class_accuracy["i"] == 1.0
    assert prio.weight[max(twins)] == 0.0 and prio.weight[min(twins)] > 0
    per_class = result.plan.table()["total"]
    assert per_class["ii"] > 2 * per_class["i"]
    assert max(twins) not in {v.source_id for v in result.plan.variants}


def test_doubtful_blank_and_conflicting_images_are_never_sources(project: Project) -> None:
    """Blank, a copy under another label, a row the model doubts (a suggestion, also one the
    sheet withholds as in-sample) or cleanlab flags: never copied into training; the plan says so."""
    root = project.config.root
    Image.new("L", (60, 30), 255).save(root / "train" / "i" / "blank.png")
    twin = sorted((root / "train" / "ii").iterdir())[0]
    (root / "train" / "iii" / "twin.png").write_bytes(twin.read_bytes())
    project.status(check_sheet=False)  # record the new files
    m = project.versions.load("latest")
    ids, labels = list(m["id"]), list(m["label"])
    probs = np.full((len(ids), len(CLASSES)), 0.05)
    doubted = str(m[(m["label"] == "iii") & (m["split"] == "train")
                    & ~m["path"].str.endswith("twin.png")]["id"].iloc[0])
    for k, (i, lab) in enumerate(zip(ids, labels, strict=True)):
        probs[k, CLASSES.index("i" if i == doubted else lab)] = 0.9
    emb = np.random.default_rng(0).normal(size=(len(ids), 8))
    project.store.save_predictions(1, "insample", ids, CLASSES, probs, emb, np.ones_like(probs))
    result = project.augment(budget=60, dry_run=True, families=["rotate"])
    by_path = dict(zip(m["path"], m["id"], strict=True))
    unfit = {by_path["train/i/blank.png"], by_path["train/iii/twin.png"], doubted,
             by_path[twin.relative_to(root).as_posix()]}
    excluded = result.plan.priorities.excluded
    assert unfit <= set(excluded)
    assert excluded[by_path["train/i/blank.png"]] == "blank"
    assert excluded[by_path["train/iii/twin.png"]] == "copy under another label"
    assert excluded[doubted].startswith(("suggestion: ", "cleanlab flag"))
    # The sheet's "none: in-sample" cells (on every row) are no doubt: only these four are out.
    assert set(excluded) == unfit, excluded
    sources = {v.source_id for v in result.plan.variants}
    assert sources and not sources & set(excluded)
    said = "\n".join(augment_plan_lines(result.plan))
    assert f"never a source: {len(excluded)} image(s) (" in said and "1 blank" in said


def test_a_too_weak_model_gives_class_uniform_sampling(project: Project) -> None:
    m = project.versions.load("latest")
    ids = list(m["id"])
    probs = np.full((len(ids), len(CLASSES)), 1 / len(CLASSES))  # near uniform: too weak
    probs[:, 0] += 0.01
    probs /= probs.sum(axis=1, keepdims=True)
    emb = np.random.default_rng(0).normal(size=(len(ids), 8))
    project.store.save_predictions(1, "oos", ids, CLASSES, probs, emb, np.ones_like(probs))
    result = project.augment(budget=60, dry_run=True, families=["rotate"])
    prio = result.plan.priorities
    assert prio.uniform.startswith("the model is too weak") and prio.weight == {}
    assert prio.class_accuracy == {} and prio.excluded == {}  # its doubts are noise
    per_class = result.plan.table()["total"]
    assert per_class.drop("total").nunique() == 1  # every class the same share
    assert any(line.strip().startswith("class-uniform sampling: the model is too weak")
               for line in augment_plan_lines(result.plan))


def test_derived_rows_say_what_they_are_and_follow_their_sources_highlight() -> None:
    import pandas as pd

    from sheetsync import _reviewsheet as rs

    table = pd.DataFrame({"id": ["a", "b", "d1", "d2"], "source_id": ["", "", "a", "b"],
                          "transform": ["", "", "hflip", "rotate(3.00)"],
                          "why": ["model says ii (0.91)", "", "", "blank image"]})
    signals = pd.DataFrame({"suspected": ["ii", "", "", ""], "blank": [False] * 3 + [True],
                            "duplicate_conflict": [False] * 4}, index=["a", "b", "d1", "d2"])
    assert rs.with_derived_notes(table)["why"].tolist() == [
        "model says ii (0.91)", "", "hflip of a", "rotate(3.00) of b; blank image"]
    assert rs.flagged_rows(table, signals, weak=False) == (0, 2, 3)
    assert rs.flagged_rows(table, signals, weak=True) == (3,)


def test_a_derived_rows_source_cells_are_read_only_like_the_other_published_cells(
        project: Project) -> None:
    """source_id / transform are compared with what was published (the row check of a pull)."""
    from sheetsync.errors import SheetValidationError

    project.augment(budget=4, families=["rotate"])
    project.push()
    d = derived(project)
    a, b = d.index[:2]
    edit(workbook(project), {a: {"source_id": d.at[b, "source_id"] + "x"}})
    with pytest.raises(SheetValidationError, match="was published with source_id"):
        project.pull()


def test_a_linked_staging_folder_is_refused_before_any_image_is_written(
        project: Project, tmp_path: Path) -> None:
    """The journal's staging-folder check (a link could lead outside the root) holds for augment."""
    from sheetsync.errors import UnsafePathError
    from sheetsync.journal import STAGING

    outside = tmp_path / "outside"
    outside.mkdir()
    (project.config.root / STAGING).symlink_to(outside, target_is_directory=True)
    before = project.versions.latest()
    with pytest.raises(UnsafePathError, match="staging folder"):
        project.augment(budget=4, families=["rotate"])
    assert list(outside.iterdir()) == [] and project.versions.latest() == before
