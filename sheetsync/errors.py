"""The exceptions sheetsync raises.

Every error the library raises derives from :class:`SheetsyncError`; the CLI turns
them into one line on stderr and the exit code they carry, never a traceback::

    SheetsyncError
    ├── ConfigError            sheetsync.toml missing or malformed
    │   └── UnknownOrderError  no such review order
    ├── DatasetError           the folder tree does not look like <root>/<split>/<class>/<file>
    │   └── UnsafePathError    a computed path would leave the dataset root
    ├── SheetValidationError   the sheet holds bad cells (carries every problem found)
    ├── UnpulledEditsError     push would overwrite edits that were never pulled
    ├── VersionError           unknown version, or nothing to diff/check out
    ├── JournalError           an interrupted move could be neither completed nor rolled back
    │   └── MoveError          the system refused a rename (permissions, a file where a folder goes)
    ├── BackendError           the spreadsheet backend failed
    │   ├── WorkbookLockedError the workbook is open in a spreadsheet program
    │   ├── WorkbookChangedError the workbook was saved meanwhile; not replaced
    │   ├── PackageError       the .xlsx package is not laid out as expected
    │   ├── SheetsRequestError a request Google refused that no retry can fix
    │   ├── AuthError          credentials missing, malformed or refused
    │   ├── SheetNotFoundError the spreadsheet does not exist or is not shared with us
    │   └── QuotaError         the backend kept refusing with 429/5xx after retries
    ├── PublishError           publishing images to Cloud Storage failed (sheetsync.publish)
    │   ├── BucketNotFoundError the bucket does not exist
    │   ├── BucketPermissionError the account may not list, write or delete objects there
    │   ├── NotPublicError     a published URL is not readable without signing in
    │   └── UploadQuotaError   Cloud Storage kept refusing with 429/5xx after retries
    ├── TrainingError          the model cannot be trained or has not been trained yet
    ├── WatchError             another watcher runs, or a bad watch setting
    ├── ReportError            the report's optional extra is missing, or nothing is trained yet
    └── AugmentError           a derived image cannot be planned or built (sheetsync.augment)
"""

from __future__ import annotations

from dataclasses import dataclass


class SheetsyncError(Exception):
    """Base class of every error sheetsync raises on purpose."""

    exit_code = 1


class ConfigError(SheetsyncError):
    """The project file is missing or malformed."""


class UnknownOrderError(ConfigError):
    """The review order named in the config or on the command line does not exist."""


class DatasetError(SheetsyncError):
    """The dataset folder is not laid out as <root>/<split>/<class>/<file>."""


class UnsafePathError(DatasetError):
    """A path would point outside the dataset root."""


@dataclass(frozen=True)
class Problem:
    """One bad cell or row: ``row`` is the 1-based sheet row (the header's, for a header problem)."""

    row: int | None
    column: str | None
    message: str

    def __str__(self) -> str:
        where = []
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column is not None:
            where.append(f"column {self.column!r}")
        prefix = ", ".join(where)
        return f"{prefix}: {self.message}" if prefix else self.message


class SheetValidationError(SheetsyncError):
    """The sheet holds invalid cells; nothing was changed."""

    exit_code = 3

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        lines = [f"the sheet has {len(self.problems)} problem(s); nothing was changed:"]
        lines += [f"  {p}" for p in self.problems[:50]]
        if len(self.problems) > 50:
            lines.append(f"  ... and {len(self.problems) - 50} more")
        super().__init__("\n".join(lines))


class UnpulledEditsError(SheetsyncError):
    """The sheet holds edits that were never pulled; push refuses to overwrite them."""

    exit_code = 4


class VersionError(SheetsyncError):
    """An unknown dataset version was asked for."""


class JournalError(SheetsyncError):
    """An interrupted move could be neither completed nor rolled back."""


class MoveError(JournalError):
    """The operating system refused to move a file (the batch is rolled back or finished)."""


class BackendError(SheetsyncError):
    """The spreadsheet backend failed."""


class WorkbookLockedError(BackendError):
    """The workbook is open in a spreadsheet program; writing would lose its unsaved edits."""


class WorkbookChangedError(BackendError):
    """The workbook was saved by someone else while sheetsync was writing it; nothing replaced."""


class PackageError(BackendError):
    """The .xlsx package is not laid out as expected (the caller falls back or reports)."""


class SheetsRequestError(BackendError):
    """Google Sheets refused a request for a reason retrying cannot fix (a 400, mostly)."""

    def __init__(self, code: int, status: str, message: str):
        self.code, self.status, self.api_message = code, status, message
        super().__init__(f"Google Sheets refused the request ({code} {status}): {message}")


class AuthError(BackendError):
    """Credentials are missing, malformed or were refused."""


class SheetNotFoundError(BackendError):
    """The spreadsheet does not exist or is not shared with the account."""


class QuotaError(BackendError):
    """The backend kept refusing (429/5xx) after bounded retries."""


class PublishError(SheetsyncError):
    """Publishing the images to Cloud Storage failed; the sheet was not written."""


class BucketNotFoundError(PublishError):
    """The configured bucket does not exist."""


class BucketPermissionError(PublishError):
    """The account may not list, write or delete objects in the bucket."""


class NotPublicError(PublishError):
    """A published image URL cannot be read anonymously, so ``=IMAGE`` would show nothing."""


class UploadQuotaError(PublishError):
    """Cloud Storage kept refusing (429/5xx) after bounded retries."""


class TrainingError(SheetsyncError):
    """The model cannot be trained, or no trained model exists yet."""


class WatchError(SheetsyncError):
    """Another watcher runs on this project, or a watch setting is unusable."""


class ReportError(SheetsyncError):
    """The report cannot be built: its optional extra is missing, or nothing is trained yet."""


class AugmentError(SheetsyncError):
    """A derived image cannot be planned or built (e.g. its strokes are not found)."""
