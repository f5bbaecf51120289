"""Publish the images under stable, content-addressed URLs, so thumbnails survive every pull.

An image is stored once per content as ``<prefix>/<sha256><ext>`` (or, with ``[publish]
thumbnails = N``, as ``<prefix>/t<N>/<sha256>.png``: a PNG of at most N px, or the original
when that is smaller or already small enough): its URL never changes
when a pull moves the file between split and class folders, and byte-identical files share one
object. The invariant: **a push writes the sheet only after every image it points at is in the
bucket**; a failed upload raises before the sheet is touched.

Only new content is sent. The local record (one object name a line, appended as each upload
arrives) is checked first; only when it lacks some object is the bucket listed (one request per
1,000 objects), which also covers uploads that arrived before an interruption but were not
recorded, and objects a teammate uploaded. Nothing is ever deleted, except by :func:`prune`.

The results are typed (:class:`~sheetsync.results.PublishResult`,
:class:`~sheetsync.results.PrunePlan`); their words are made in :mod:`sheetsync._words`.

A :class:`~sheetsync.project.Project` publishes through :func:`publish_current` (``sheetsync
publish``), :func:`publish_for` (before a push writes the sheet), :func:`prune_plan_of` and
:func:`prune_listed` (``publish --prune``).

Usage::

    result = publish_images(manifest, root, config.publish, bucket, UploadRecord(store.uploaded_path))
    url = image_url(template, bucket.public_url, object_name(config.publish, sha, path), row)
"""

from __future__ import annotations

import io
import mimetypes
import re
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Protocol

import pandas as pd

from ._gcs import Bucket, public_url, storage_credentials
from .config import Config, PublishConfig
from .dataset import safe_join
from .errors import ConfigError, NotPublicError, PublishError
from .results import PrunePlan, PublishResult

PLACEHOLDERS = ("path", "sha256", "id", "ext", "object")
_HASH_NAME = re.compile(r"[0-9a-f]{64}")

if TYPE_CHECKING:
    from .project import Project


class Store(Protocol):
    """What publishing needs from a bucket (:class:`sheetsync._gcs.Bucket`)."""

    name: str

    def list(self, prefix: str) -> dict[str, int]: ...
    def upload(self, name: str, data: bytes, content_type: str) -> bool: ...
    def delete(self, name: str) -> None: ...
    def head_anonymously(self, url: str) -> int: ...
    def public_url(self, name: str) -> str: ...


@dataclass(frozen=True)
class Upload:
    """One object to publish: its name and the file it is made from."""

    name: str
    source: str  # path relative to the dataset root
    sha256: str


# ---- names and URLs (pure) -----------------------------------------------------------------

def check_settings(cfg: PublishConfig, template: str) -> None:
    """Refuse settings that would publish somewhere unexpected, before anything is sent."""
    prefix = cfg.prefix.strip("/")
    if ".." in PurePosixPath(prefix).parts or "\\" in prefix:
        raise ConfigError(f"[publish] prefix {cfg.prefix!r} must be a plain folder path")
    if cfg.thumbnails < 0 or cfg.workers < 1 or cfg.max_retries < 0:
        raise ConfigError("[publish] thumbnails must be >= 0, workers >= 1, max_retries >= 0")
    try:
        template.format(**dict.fromkeys(PLACEHOLDERS, "x"))
    except (KeyError, IndexError, ValueError) as e:
        raise ConfigError(f"[google] image_url_template {template!r}: unknown placeholder {e}; "
                          f"use {', '.join('{' + p + '}' for p in PLACEHOLDERS)}") from None


def object_name(cfg: PublishConfig, sha256: str, path: str) -> str:
    """``<prefix>/<sha256><ext>``, or ``<prefix>/t<N>/<sha256>.png`` for thumbnails."""
    prefix = cfg.prefix.strip("/")
    stem = f"t{cfg.thumbnails}/{sha256}.png" if cfg.thumbnails else f"{sha256}{_ext(path)}"
    return f"{prefix}/{stem}" if prefix else stem


def image_url(template: str, public_url: Callable[[str], str] | None, name: str,
              row: Any) -> str:
    """The URL a row shows: the template when set, else the object's public URL."""
    if template:
        return template.format(path=row["path"], sha256=row["hash"], id=row["id"],
                               ext=_ext(str(row["path"])), object=name)
    return public_url(name) if public_url is not None else ""


def url_builder(manifest: pd.DataFrame, cfg: PublishConfig, template: str) -> Callable[[str], str]:
    """path -> the URL its row shows: the template when set, else the object's public URL
    (stable across moves: the name is the content's), else empty (nothing published)."""
    rows = manifest.set_index("path", drop=False)

    def public(name: str) -> str:
        return public_url(cfg.bucket, name, cfg.endpoint)

    def url(path: str) -> str:
        row = rows.loc[path]
        return image_url(template, public if cfg.bucket else None,
                         object_name(cfg, str(row["hash"]), path), row)

    return url


def wanted_objects(manifest: pd.DataFrame, cfg: PublishConfig) -> dict[str, Upload]:
    """One upload per distinct object name: byte-identical files share one."""
    out: dict[str, Upload] = {}
    for path, sha in zip(manifest["path"].astype(str), manifest["hash"].astype(str), strict=True):
        name = object_name(cfg, sha, path)
        out.setdefault(name, Upload(name, path, sha))
    return out


def plan_prune(manifests: Iterable[pd.DataFrame], listing: Mapping[str, int],
               cfg: PublishConfig, bucket: str) -> PrunePlan:
    """Listed objects whose content no recorded version holds (original or thumbnail form).

    Only objects named by a content hash are candidates: anything else under the prefix was
    not put there by sheetsync and is left alone.
    """
    referenced: set[str] = set()
    for m in manifests:
        referenced.update(m["hash"].astype(str))
    gone = tuple(sorted(n for n in listing
                        if _HASH_NAME.fullmatch(PurePosixPath(n).name.split(".")[0])
                        and PurePosixPath(n).name.split(".")[0] not in referenced))
    return PrunePlan(bucket, cfg.prefix.strip("/"), len(listing), gone,
                     sum(listing[n] for n in gone))


def _ext(path: str) -> str:
    return PurePosixPath(path).suffix.lower()


# ---- the local record ----------------------------------------------------------------------

class UploadRecord:
    """Object names known to be in a bucket: ``<bucket>/<name>`` a line, appended as they arrive.

    A lost or stale record costs one listing, never a missing image: the bucket is listed
    whenever the record lacks an object that is needed.
    """

    def __init__(self, path: Path):
        self.path = path
        self._lines: set[str] | None = None  # what the file holds, once read

    def load(self, bucket: str) -> set[str]:
        head = f"{bucket}/"
        return {line[len(head):] for line in self._read() if line.startswith(head)}

    def add(self, bucket: str, names: Iterable[str]) -> None:
        """Append the names not recorded yet (each line once, however often it is added)."""
        lines = self._read()
        new = [f"{bucket}/{n}" for n in dict.fromkeys(names) if f"{bucket}/{n}" not in lines]
        if new:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                f.write("".join(f"{line}\n" for line in new))
                f.flush()
            lines.update(new)

    def _read(self) -> set[str]:
        if self._lines is None:
            exists = self.path.exists()
            self._lines = set(self.path.read_text(encoding="utf-8").splitlines()) if exists else set()
        return self._lines

    def forget(self, bucket: str, names: Iterable[str]) -> None:
        drop = {f"{bucket}/{n}" for n in names}
        if self.path.exists():
            keep = [x for x in self.path.read_text(encoding="utf-8").splitlines() if x not in drop]
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text("".join(f"{x}\n" for x in keep), encoding="utf-8")
            tmp.replace(self.path)
        self._lines = None


# ---- publishing ----------------------------------------------------------------------------

def publish_images(
    manifest: pd.DataFrame,
    root: Path,
    cfg: PublishConfig,
    store: Store,
    record: UploadRecord,
    *,
    template: str = "",
    progress: Callable[[Iterable[Any], str, int], Iterable[Any]] | None = None,
    verify: bool = False,
) -> PublishResult:
    """Upload every object the manifest needs that the bucket lacks; raises before returning
    if any upload failed (what did arrive is recorded, so the next run resumes).

    ``verify``: list the bucket even when the record covers everything (an object someone
    deleted in the console is then sent again).
    """
    start = time.perf_counter()
    before = _traffic(store)
    wanted = wanted_objects(manifest, cfg)
    known = set() if verify else record.load(store.name) & set(wanted)
    missing = [u for n, u in wanted.items() if n not in known]
    listed = bool(missing)
    if missing:
        present = store.list(cfg.prefix.strip("/") + "/" if cfg.prefix.strip("/") else "")
        record.add(store.name, [u.name for u in missing if u.name in present])
        missing = [u for u in missing if u.name not in present]
    uploaded = _upload_all(missing, root, cfg, store, record, progress)
    checked = _check_public(manifest, cfg, store, template) if cfg.check_public and wanted else None
    after = _traffic(store)
    return PublishResult(store.name, len(wanted), uploaded, len(wanted) - len(missing),
                         after[1] - before[1], after[0] - before[0], listed, checked,
                         time.perf_counter() - start)


def _upload_all(uploads: list[Upload], root: Path, cfg: PublishConfig, store: Store,
                record: UploadRecord, progress: Any) -> int:
    """Parallel uploads; each one recorded as it arrives; the first failure stops the rest."""
    if not uploads:
        return 0
    recorded: set[Future[bool]] = set()
    sent = 0  # False from an upload: the object appeared meanwhile (a teammate's push)
    pool = ThreadPoolExecutor(max_workers=cfg.workers, thread_name_prefix="publish")
    futures = {pool.submit(_upload_one, u, root, cfg, store): u for u in uploads}
    ticks = iter(progress(range(len(uploads)), "uploading", len(uploads))) if progress else None
    try:
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for f in finished:
                sent += f.result()  # raises the one-line error of a failed upload
                record.add(store.name, [futures[f].name])
                recorded.add(f)
                if ticks is not None:
                    next(ticks, None)
    except BaseException:
        # Let the uploads in flight end, and record those that arrived: a rerun skips them.
        pool.shutdown(wait=True, cancel_futures=True)
        record.add(store.name, [u.name for f, u in futures.items() if f not in recorded
                                and f.done() and not f.cancelled() and f.exception() is None])
        raise
    pool.shutdown()
    return sent


def _upload_one(upload: Upload, root: Path, cfg: PublishConfig, store: Store) -> bool:
    data, content_type = object_bytes(safe_join(root, upload.source), cfg.thumbnails)
    return store.upload(upload.name, data, content_type)


def object_bytes(file: Path, thumbnails: int) -> tuple[bytes, str]:
    """The bytes to publish for one image: the file itself, or a downscaled PNG when that is
    smaller (a few-colour PNG often grows when downscaling adds grey levels)."""
    try:
        original = file.read_bytes()
    except FileNotFoundError:
        raise PublishError(f"{file}: the image disappeared while publishing; run the command "
                           "again") from None
    content_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    if not thumbnails:
        return original, content_type
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(original)) as im:
            if max(im.size) <= thumbnails:
                return original, content_type
            im.thumbnail((thumbnails, thumbnails))
            out = io.BytesIO()
            im.save(out, format="PNG", optimize=True)
    except (UnidentifiedImageError, OSError) as e:
        raise PublishError(f"{file}: not a readable image ({e})") from None
    small = out.getvalue()
    return (small, "image/png") if len(small) < len(original) else (original, content_type)


def _check_public(manifest: pd.DataFrame, cfg: PublishConfig, store: Store, template: str) -> str:
    """Fetch one published URL without credentials, as Google's image fetcher does."""
    row = manifest.iloc[0]
    name = object_name(cfg, str(row["hash"]), str(row["path"]))
    url = image_url(template, store.public_url, name, row)
    status = store.head_anonymously(url)
    if status in (401, 403):
        raise NotPublicError(
            f"{url} is not public (HTTP {status}), so the sheet would show no thumbnails: in the "
            f"Cloud console open bucket {store.name} > Permissions > Grant access, add principal "
            f"allUsers with role Storage Object Viewer (once)")
    if status >= 400:
        raise NotPublicError(f"{url} answers HTTP {status} right after its upload: "
                             f"[google] image_url_template does not point at gs://{store.name}")
    return url


def _traffic(store: Store) -> tuple[int, int]:
    t = getattr(store, "traffic", None)
    return (t.requests, t.bytes_sent) if t is not None else (0, 0)


# ---- pruning -------------------------------------------------------------------------------

def prune(store: Store, plan: PrunePlan, record: UploadRecord) -> int:
    """Delete the objects of ``plan`` (which the caller has shown and had confirmed)."""
    for name in plan.unreferenced:
        store.delete(name)
    record.forget(store.name, plan.unreferenced)
    return len(plan.unreferenced)


# ---- a project's bucket --------------------------------------------------------------------

def open_bucket(config: Config) -> Bucket:
    """The ``[publish]`` bucket, signed in with the same credentials as the sheet."""
    pub = config.publish
    creds, account = storage_credentials(config.google, config.resolve)
    return Bucket(pub.bucket, creds, account=account, endpoint=pub.endpoint,
                  timeout=config.google.timeout, max_retries=pub.max_retries, workers=pub.workers)


def publish_for(project: Project, manifest: pd.DataFrame, verify: bool = False) -> PublishResult | None:
    """Upload what the bucket lacks (None: no bucket, the URL template only)."""
    pub, template = project.config.publish, project.config.google.image_url_template
    check_settings(pub, template)
    if not pub.bucket:
        return None
    return publish_images(manifest, project.config.root, pub, project.storage,
                          UploadRecord(project.store.uploaded_path), template=template,
                          progress=project.progress, verify=verify)


def publish_current(project: Project) -> PublishResult:
    """Upload the images of the current version without writing the sheet; the bucket is
    listed rather than trusting the local record, so objects deleted there come back."""
    if not project.config.publish.bucket:
        raise ConfigError("[publish] bucket is not set in sheetsync.toml (template only)")
    with project.locked():
        manifest, _, _ = project.refresh()
        result = publish_for(project, manifest, verify=True)
        assert result is not None
        result.recovered, result.skipped = project.recovered, project.skipped
        return result


def prune_plan_of(project: Project) -> PrunePlan:
    """The objects ``publish --prune`` would delete: those no recorded version references."""
    pub = project.config.publish
    if not pub.bucket:
        raise ConfigError("[publish] bucket is not set in sheetsync.toml: nothing to prune")
    with project.locked():
        manifests = [project.versions.load(v.version) for v in project.versions.list()]
        prefix = pub.prefix.strip("/")
        listing = project.storage.list(f"{prefix}/" if prefix else "")
        return plan_prune(manifests, listing, pub, pub.bucket)


def prune_listed(project: Project, plan: PrunePlan) -> int:
    """Delete what :func:`prune_plan_of` listed (after the caller showed it and had it confirmed)."""
    with project.locked():
        return prune(project.storage, plan, UploadRecord(project.store.uploaded_path))
