"""Publishing images under content-addressed URLs: a real ``google-cloud-storage`` client against
a local Cloud Storage emulator (``tests/_gcs_emulator.py``), the sheet on the Sheets API
stand-in, signed in with the same service-account key for both."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import shutil
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner
from PIL import Image

from sheetsync import _gcs
from sheetsync._words import describe, text_of
from sheetsync.cli import cli
from sheetsync.config import Config
from sheetsync.errors import (
    BucketNotFoundError,
    BucketPermissionError,
    ConfigError,
    NotPublicError,
    SheetValidationError,
    UploadQuotaError,
)
from sheetsync.project import Project
from sheetsync.publish import object_bytes, object_name
from sheetsync.sheets.base import INFO_PREFIX, column_letter

try:
    from tests._gcs_emulator import GCSEmulator
    from tests._google_project import ALICE, BOT, init_google_project, open_google_project
    from tests._sheets_standin import SheetsStandin, route, standin_client, token_credentials
    from tests.conftest import dcai_root, write_images
except ImportError:  # tests/ is not a package
    from _gcs_emulator import GCSEmulator
    from _google_project import ALICE, BOT, init_google_project, open_google_project
    from _sheets_standin import SheetsStandin, route, standin_client, token_credentials
    from conftest import dcai_root, write_images

BUCKET = "team-images"
UPLOAD = r"/upload/storage/v1/b/.*"


@pytest.fixture
def api():
    with SheetsStandin() as server:
        yield server


@pytest.fixture
def gcs(monkeypatch: pytest.MonkeyPatch, api: SheetsStandin):
    logging.getLogger("gcp_storage_emulator").setLevel(logging.CRITICAL)
    # The edge: the storage client's session gets its OAuth token from the stand-in's token
    # endpoint (real JWT signed with the key), like the sheet's client does.
    real_session = _gcs._session
    monkeypatch.setattr(_gcs, "_session", lambda creds, workers: route(real_session(creds, workers), api))
    with GCSEmulator() as server:
        server.create_bucket(BUCKET)
        yield server


def make_project(api: SheetsStandin, gcs: GCSEmulator, data_root: Path, proj: Path, **publish) -> Path:
    return init_google_project(api, data_root, proj,
                               publish={"bucket": BUCKET, "endpoint": gcs.url, **publish})


def open_project(api: SheetsStandin, proj: Path) -> Project:
    """What the CLI does; the sheet's session routed to the stand-in (storage: by the fixture)."""
    project = open_google_project(api, proj)
    if project.config.publish.bucket:
        project.storage.backoff_base = 0.001  # real retries, short waits
    return project


@pytest.fixture
def proj(api: SheetsStandin, gcs: GCSEmulator, data_root: Path, tmp_path: Path) -> Path:
    return make_project(api, gcs, data_root, tmp_path / "proj")


def sheet(api: SheetsStandin, project: Project):
    sid = project.backend.spreadsheet_id
    return standin_client(api, token_credentials(api, ALICE)).open_by_key(sid).worksheet("data")


def table_values(ws, **kwargs) -> tuple[int, list[str], list[list[str]]]:
    """(sheet row of the header, header, data rows): the info line above the header skipped."""
    values = ws.get_all_values(**kwargs)
    at = next(i for i, row in enumerate(values) if row and not row[0].startswith(INFO_PREFIX))
    return at + 1, values[at], values[at + 1:]


def sheet_ids(ws) -> list[str]:
    """The id column, wherever the layout puts it."""
    _, header, rows = table_values(ws)
    return [row[header.index("id")] for row in rows]


def image_urls(ws) -> dict[str, str]:
    """id -> the URL inside each row's =IMAGE formula."""
    _, header, rows = table_values(ws, value_render_option="FORMULA")
    out = {}
    for row in rows:
        cells = dict(zip(header, row, strict=False))
        assert cells["image"].startswith('=IMAGE("'), cells["image"]
        out[cells["id"]] = cells["image"][len('=IMAGE("'):-2]
    return out


def assert_all_resolve(project: Project, ws) -> None:
    """Every thumbnail URL answers anonymously with the bytes of the image now on disk."""
    m = project.versions.load("latest").set_index("id")
    urls = image_urls(ws)
    assert set(urls) == set(m.index)
    for image_id, url in urls.items():
        r = requests.get(url, timeout=10)
        assert r.status_code == 200, url
        assert r.content == (project.config.root / m.at[image_id, "path"]).read_bytes()


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_first_push_uploads_every_distinct_image_once(api, gcs, proj: Path) -> None:
    project = open_project(api, proj)
    files = sorted(p for p in project.config.root.rglob("*.png"))
    distinct = {sha(p) for p in files}
    assert len(files) == 19 and len(distinct) == 18  # the fixture's byte-identical pair

    report = project.push()

    assert len(gcs.uploads()) == 18
    stored = gcs.objects(BUCKET)
    assert set(stored) == {f"sheetsync/{h}.png" for h in distinct}
    assert all(hashlib.sha256(data).hexdigest() in name for name, data in stored.items())
    assert "images: 18 of 18 objects uploaded to gs://team-images" in text_of(report)
    assert "0 already there" in text_of(report)
    ws = sheet(api, project)
    assert_all_resolve(project, ws)
    # The url column holds the same stable link as the =IMAGE formula.
    table = project.backend.read_table().set_index("id")
    assert table["url"].to_dict() == image_urls(ws)


def test_competition_pairs_are_stored_once(api, gcs, tmp_path: Path) -> None:
    """The 49 byte-identical train/val pairs of the competition data: one object per pair."""
    src = dcai_root()
    by_hash: dict[str, list[Path]] = {}
    for split in ("train", "val"):
        for p in sorted((src / split).rglob("*.png")):
            by_hash.setdefault(sha(p), []).append(p)
    pairs = [ps for ps in by_hash.values() if len(ps) > 1]
    assert len(pairs) == 49
    singles = [ps[0] for ps in list(by_hash.values()) if len(ps) == 1][:30]
    root = tmp_path / "data"
    for p in [q for ps in pairs for q in ps] + singles:
        rel = p.relative_to(src)
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, root / rel)
    # Every class folder in both splits, so init finds all ten classes.
    for split in ("train", "val"):
        for c in (src / split).iterdir():
            (root / split / c.name).mkdir(parents=True, exist_ok=True)
    proj = make_project(api, gcs, root, tmp_path / "proj")
    project = open_project(api, proj)
    project.push()
    n_files = len(list(root.rglob("*.png")))
    assert n_files == 2 * 49 + 30
    assert len(gcs.uploads()) == 49 + 30
    assert len(gcs.objects(BUCKET)) == 49 + 30
    assert_all_resolve(project, sheet(api, project))


def test_pull_that_moves_100_files_uploads_nothing_and_urls_still_resolve(api, gcs, tmp_path) -> None:
    root = tmp_path / "data"
    write_images(root, {"train": {"i": 40, "ii": 40, "iii": 40}, "val": {"i": 10, "ii": 10}})
    proj = make_project(api, gcs, root, tmp_path / "proj")
    project = open_project(api, proj)
    project.push()
    ws = sheet(api, project)
    at, header, rows = table_values(ws)
    col = {name: chr(ord("A") + header.index(name)) for name in ("label", "split")}
    updates = []
    for r, row in enumerate(rows[:100], start=at + 1):  # 100 rows: relabel or move to val
        if r % 2:
            new = {"i": "ii", "ii": "iii", "iii": "i"}[row[header.index("label")]]
            updates.append({"range": f"{col['label']}{r}", "values": [[new]]})
        else:
            other = "val" if row[header.index("split")] == "train" else "train"
            updates.append({"range": f"{col['split']}{r}", "values": [[other]]})
    ws.batch_update(updates)

    project = open_project(api, proj)
    report = project.pull()
    assert "100 file(s) to move" in text_of(report)
    gcs.reset_log()
    report = project.push()
    assert gcs.uploads() == []
    # The local record covered every object: no listing either, only the public check.
    assert [s.method for s in gcs.seen] == ["HEAD"]
    assert "0 of 140 objects uploaded" in text_of(report)
    assert_all_resolve(project, sheet(api, project))


def test_a_new_image_is_uploaded_before_its_row_appears(api, gcs, proj: Path, tmp_path) -> None:
    project = open_project(api, proj)
    project.push()
    root = project.config.root
    write_images(tmp_path / "more", {"train": {"iii": 1}}, seed=7)
    new_file = root / "train" / "iii" / "new.png"
    shutil.copyfile(next((tmp_path / "more").rglob("*.png")), new_file)
    rows_during_upload: list[list[str]] = []

    def look_at_the_sheet(seen) -> None:
        if seen.method == "POST" and seen.path.startswith("/upload/"):
            rows_during_upload.append(sheet_ids(sheet(api, project)))

    gcs.on_request = look_at_the_sheet
    gcs.reset_log()
    project = open_project(api, proj)
    project.push()
    gcs.on_request = None
    new_id = project.versions.load("latest").set_index("path").at["train/iii/new.png", "id"]
    assert len(rows_during_upload) == 1 and new_id not in rows_during_upload[0]
    assert new_id in sheet_ids(sheet(api, project))
    assert f"sheetsync/{sha(new_file)}.png" in gcs.objects(BUCKET)


def test_a_failed_upload_leaves_the_sheet_unchanged(api, gcs, proj: Path, tmp_path) -> None:
    project = open_project(api, proj)
    project.push()
    before = sheet(api, project).get_all_values()
    published = (proj / ".sheetsync" / "published.csv").read_text()
    root = project.config.root
    Image.new("L", (30, 30), 128).save(root / "train" / "i" / "grey.png")

    gcs.fail("POST", UPLOAD, 403)
    with pytest.raises(BucketPermissionError, match=f"may not upload .* to gs://{BUCKET}.*{BOT}"):
        open_project(api, proj).push()
    assert sheet(api, project).get_all_values() == before
    assert (proj / ".sheetsync" / "published.csv").read_text() == published

    gcs.faults.clear()
    gcs.fail("POST", UPLOAD, 503)  # never recovers: bounded retries, then one line
    project = open_project(api, proj)
    gcs.reset_log()
    with pytest.raises(UploadQuotaError, match="kept refusing .* after 5 retries"):
        project.push()
    assert len(gcs.uploads()) == 1 + 5
    assert sheet(api, project).get_all_values() == before


def test_transient_errors_are_retried(api, gcs, proj: Path) -> None:
    gcs.fail("POST", UPLOAD, 503, times=2)
    gcs.fail("POST", UPLOAD, 429, times=1)
    project = open_project(api, proj)
    project.push()
    assert len(gcs.uploads()) == 18 + 3
    assert len(gcs.objects(BUCKET)) == 18


def test_an_interrupted_push_resumes_without_resending(api, gcs, tmp_path) -> None:
    root = tmp_path / "data"
    write_images(root, {"train": {"i": 10, "ii": 10}, "val": {"iii": 10}})
    proj = make_project(api, gcs, root, tmp_path / "proj", workers=4)

    def break_after_12(seen) -> None:
        if len(gcs.uploads()) == 12:
            gcs.fail("POST", UPLOAD, 500)

    gcs.on_request = break_after_12
    with pytest.raises(UploadQuotaError):
        open_project(api, proj).push()
    gcs.on_request = None
    arrived = set(gcs.objects(BUCKET))
    assert 0 < len(arrived) < 30
    project = open_project(api, proj)
    assert project.backend.read_table() is None  # no sheet was written
    gcs.faults.clear()
    gcs.reset_log()
    report = project.push()
    sent = len(gcs.uploads())
    assert sent == 30 - len(arrived)
    # Nothing listed twice: the record held what arrived, the listing confirmed the rest missing.
    assert f"{sent} of 30 objects uploaded" in text_of(report)
    assert_all_resolve(project, sheet(api, project))


def test_a_push_interrupted_by_ctrl_c_keeps_what_arrived(api, gcs, proj: Path) -> None:
    """KeyboardInterrupt in the middle (raised where the progress bar ticks): uploads that
    arrived are recorded, the sheet is not written, the rerun sends only the rest."""
    config = Config.load(proj)
    dataclasses.replace(config, publish=dataclasses.replace(config.publish, workers=2)).save()

    def ctrl_c_after_5(items, desc, total=None):
        for n, item in enumerate(items):
            if desc == "uploading" and n == 5:
                raise KeyboardInterrupt
            yield item

    project = open_project(api, proj)
    project.progress = ctrl_c_after_5
    with pytest.raises(KeyboardInterrupt):
        project.push()
    arrived = set(gcs.objects(BUCKET))
    recorded = (proj / ".sheetsync" / "uploaded.txt").read_text().split()
    assert len(arrived) >= 5 and set(recorded) == {f"{BUCKET}/{n}" for n in arrived}
    assert project.backend.read_table() is None
    gcs.reset_log()
    open_project(api, proj).push()
    assert len(gcs.uploads()) == 18 - len(arrived)
    # Everything arrived through the record: no listing was needed for the part sent before.
    assert len(gcs.objects(BUCKET)) == 18


def test_an_unknown_template_placeholder_is_a_config_error(api, gcs, proj: Path) -> None:
    config = Config.load(proj)
    dataclasses.replace(config, google=dataclasses.replace(
        config.google, image_url_template="https://x.example/{hash}.png")).save()
    with pytest.raises(ConfigError, match=r"unknown placeholder 'hash'; use \{path\}"):
        open_project(api, proj).push()
    assert gcs.uploads() == []


def test_without_the_record_the_listing_still_prevents_resending(api, gcs, proj: Path) -> None:
    open_project(api, proj).push()
    (proj / ".sheetsync" / "uploaded.txt").unlink()
    gcs.reset_log()
    open_project(api, proj).push()
    assert gcs.uploads() == []
    assert [s.method for s in gcs.seen] == ["GET", "HEAD"]  # one listing page, the public check


def test_publish_lists_the_bucket_and_restores_a_deleted_object(api, gcs, proj: Path) -> None:
    project = open_project(api, proj)
    project.push()
    victim = sorted(gcs.objects(BUCKET))[0]
    project.storage.delete(victim)  # someone cleaned up in the console
    gcs.reset_log()
    result = CliRunner().invoke(cli, ["-C", str(proj), "publish"])
    assert result.exit_code == 0, result.output
    assert "images: 1 of 18 objects uploaded" in result.output
    assert len(gcs.uploads()) == 1 and victim in gcs.objects(BUCKET)
    lines = (proj / ".sheetsync" / "uploaded.txt").read_text().splitlines()
    assert len(lines) == len(set(lines)) == 18  # the record lists each object once


def test_objects_that_are_not_public_stop_the_push(api, gcs, proj: Path) -> None:
    gcs.fail("HEAD", rf"/{BUCKET}/.*", 403, anonymous_only=True)
    project = open_project(api, proj)
    with pytest.raises(NotPublicError, match="allUsers with role Storage Object Viewer"):
        project.push()
    assert project.backend.read_table() is None


def test_a_missing_bucket_is_one_line(api, gcs, data_root: Path, tmp_path: Path) -> None:
    proj = make_project(api, gcs, data_root, tmp_path / "proj", prefix="p")
    config = Config.load(proj)
    dataclasses.replace(config, publish=dataclasses.replace(config.publish, bucket="nope")).save()
    result = CliRunner().invoke(cli, ["-C", str(proj), "publish"])
    assert result.exit_code == 1
    assert result.output.strip() == ("Error: bucket gs://nope does not exist: create it (Cloud "
                                     "Storage > Buckets > Create) or fix [publish] bucket in "
                                     "sheetsync.toml")
    project = open_project(api, proj)
    with pytest.raises(BucketNotFoundError):
        project.push()
    assert project.backend.read_table() is None


def test_thumbnails_are_downscaled_pngs(api, gcs, data_root: Path, tmp_path: Path) -> None:
    noisy = data_root / "train" / "i" / "big.png"
    Image.effect_noise((900, 300), 60).save(noisy)  # big and incompressible: shrinks a lot
    proj = make_project(api, gcs, data_root, tmp_path / "proj", thumbnails=128)
    project = open_project(api, proj)
    project.push()
    stored = gcs.objects(BUCKET)
    name = object_name(project.config.publish, sha(noisy), "train/i/big.png")
    assert name == f"sheetsync/t128/{sha(noisy)}.png"
    with Image.open(io.BytesIO(stored[name])) as im:
        assert im.size == (128, 43)
    # The fixture's 128x64 numerals are small enough already: published as they are.
    small = data_root / "train" / "i" / "img-0001.png"
    assert stored[f"sheetsync/t128/{sha(small)}.png"] == small.read_bytes()
    big_id = project.versions.load("latest").set_index("path").at["train/i/big.png", "id"]
    assert image_urls(sheet(api, project))[big_id].endswith(f"/{BUCKET}/{name}")


def test_a_thumbnail_is_never_bigger_than_the_original() -> None:
    """Competition PNGs (3 grey levels) can grow when downscaling adds grey levels: then the
    original is published under the thumbnail's name."""
    files = sorted((dcai_root() / "train" / "iv").glob("*.png"))[:60]
    kept = shrunk = 0
    for f in files:
        data, content_type = object_bytes(f, 256)
        assert len(data) <= f.stat().st_size and content_type == "image/png"
        if data == f.read_bytes():
            kept += 1
        else:
            with Image.open(io.BytesIO(data)) as im:
                assert max(im.size) == 256
            shrunk += 1
    assert kept and shrunk, (kept, shrunk)


def test_template_with_sha256_and_id(api, gcs, proj: Path) -> None:
    """A template of one's own (a CDN in front of the bucket, say) with the stable fields."""
    config = Config.load(proj)
    template = f"{gcs.url}/{BUCKET}/sheetsync/{{sha256}}{{ext}}?id={{id}}"
    dataclasses.replace(config, google=dataclasses.replace(
        config.google, image_url_template=template)).save()
    project = open_project(api, proj)
    project.push()
    m = project.versions.load("latest").set_index("id")
    ws = sheet(api, project)
    for image_id, url in image_urls(ws).items():
        assert url == f"{gcs.url}/{BUCKET}/sheetsync/{m.at[image_id, 'hash']}.png?id={image_id}"
    assert_all_resolve(project, ws)


def test_prune_says_what_it_removes_and_asks(api, gcs, proj: Path) -> None:
    project = open_project(api, proj)
    project.push()
    stray = "sheetsync/" + "0" * 64 + ".png"
    foreign = "sheetsync/notes.txt"
    for name in (stray, foreign):
        project.storage.upload(name, b"x", "text/plain")
    runner = CliRunner()
    result = runner.invoke(cli, ["-C", str(proj), "publish", "--prune"], input="n\n")
    assert result.exit_code == 0, result.output
    assert stray in result.output and foreign not in result.output
    assert "1 of 20 objects" in result.output and "nothing deleted" in result.output
    assert stray in gcs.objects(BUCKET)
    result = runner.invoke(cli, ["-C", str(proj), "publish", "--prune", "--yes"])
    assert "deleted 1 objects" in result.output
    left = gcs.objects(BUCKET)
    assert stray not in left and foreign in left and len(left) == 19


def test_template_only_uploads_nothing(api, gcs, proj: Path) -> None:
    config = Config.load(proj)
    dataclasses.replace(
        config,
        google=dataclasses.replace(config.google, image_url_template="https://cdn.example/{path}"),
        publish=dataclasses.replace(config.publish, bucket="")).save()
    gcs.reset_log()
    project = open_project(api, proj)
    report = project.push()
    assert gcs.seen == [] and "images:" not in text_of(report)
    assert all(u.startswith("https://cdn.example/") for u in image_urls(sheet(api, project)).values())


def test_pushes_that_change_the_urls_agree_with_the_pull_row_check(api, gcs, proj: Path) -> None:
    """The url column is a read-only cell the pull's row check compares with what the last push
    published: each push that changes the URLs (template, thumbnails) records what it wrote, so
    the next pull accepts the rows, and still refuses a url pasted from another row."""
    project = open_project(api, proj)
    project.push()
    first = image_urls(sheet(api, project))
    config = Config.load(proj)
    template = f"{gcs.url}/{BUCKET}/sheetsync/{{sha256}}{{ext}}?id={{id}}"
    for google, publish in ((dict(image_url_template=template), {}),
                            (dict(image_url_template=""), dict(thumbnails=64))):
        config = dataclasses.replace(config, google=dataclasses.replace(config.google, **google),
                                     publish=dataclasses.replace(config.publish, **publish))
        config.save()
        project = open_project(api, proj)
        project.push()
        ws = sheet(api, project)
        urls = image_urls(ws)
        assert urls != first and set(urls) == set(first)
        first = urls
        at, header, rows = table_values(ws)
        col = {n: column_letter(header.index(n)) for n in ("label", "url")}
        new = {"i": "ii", "ii": "iii", "iii": "i"}[rows[0][header.index("label")]]
        ws.update_acell(f"{col['label']}{at + 1}", new)
        result = open_project(api, proj).pull()
        assert result.edited == 1 and result.version is not None, "\n".join(describe(result))

    ws = sheet(api, project)
    at, header, rows = table_values(ws)
    url = header.index("url")
    # Another row's url (not the byte-identical copy's: that one shares the object and URL).
    other = next(row[url] for row in rows[1:] if row[url] != rows[0][url])
    ws.update_acell(f"{column_letter(url)}{at + 1}", other)
    with pytest.raises(SheetValidationError, match="was published with url"):
        open_project(api, proj).pull()
