"""The project file, ``sheetsync.toml``, read into a frozen, validated :class:`Config`.

Usage::

    cfg = Config.load(Path("sheetsync.toml"))
    cfg.root            # absolute dataset root
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import tomli_w

from .errors import ConfigError

CONFIG_NAME = "sheetsync.toml"
BACKENDS = ("local", "google")


@dataclass(frozen=True)
class LocalConfig:
    path: str = "sheetsync.xlsx"
    thumbnails: bool = True  # off for very large sheets: pictures cost time and size
    thumb_size: int = 112  # px: a handwritten numeral is readable at 100% zoom


@dataclass(frozen=True)
class GoogleConfig:
    spreadsheet: str = ""
    auth: str = "service_account"  # service_account | oauth | default
    credentials: str = "credentials.json"
    worksheet: str = "data"
    image_url_template: str = ""
    timeout: float = 60.0
    max_retries: int = 5


@dataclass(frozen=True)
class PublishConfig:
    """Where ``push`` uploads the images (sheetsync.publish); no bucket = template only."""

    bucket: str = ""  # a Cloud Storage bucket; empty: [google] image_url_template only
    prefix: str = "sheetsync"  # objects are <prefix>/<sha256>.<ext>
    thumbnails: int = 0  # 0: originals; N: PNGs downscaled to at most N px (e.g. 256)
    workers: int = 8  # parallel uploads
    max_retries: int = 5  # per object, on 408/429/5xx and connection errors
    endpoint: str = ""  # Cloud Storage API root; empty = Google's (set for an emulator)
    check_public: bool = True  # anonymous HEAD of one published URL after uploading


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 100
    seed: int = 123
    batch_size: int = 8
    precision: str = "float32"  # float32 | mixed_bfloat16
    jit_compile: bool = True  # XLA: 2.1-2.3x the reference per epoch on 2 CPU cores (bench_train)


@dataclass(frozen=True)
class ReviewConfig:
    folds: int = 4
    epochs: int = 20
    order: str = "combined"
    # Folds train on class-preserving variants (flips that keep the numeral, small rotations and
    # shifts: sheetsync._foldaugment) and keep training dynamics (snapshots every quarter of epochs).
    augment: bool = True
    snapshots: bool = True
    # Independent k-fold runs (other splits, other models): their mean and their disagreement
    # feed the review order (measured in bench_review_human). Each run costs one k-fold training.
    fold_seeds: int = 3
    # Folds trained at once, each in its own worker process (sheetsync._workers): 0 = one per
    # CPU core; 1 = one after the other in the predict process.
    fold_workers: int = 0
    # Where folds train: "local" (the pool above) or "ray" (each fold a task on the Ray cluster
    # at ``address``, "host:port" from `ray start --head`; empty: a Ray instance on this machine).
    executor: str = "local"
    address: str = ""
    # After a pull, a fold whose training rows changed a little fine-tunes its previous model
    # for this many epochs instead of training ``epochs`` from scratch (sheetsync._warmstart);
    # 0: always from scratch.
    warm_epochs: int = 4


@dataclass(frozen=True)
class AugmentConfig:
    """``[augment]``: see sheetsync.augment; ``transforms`` maps a family to "all" or {class: class}."""

    cap: int = 10000  # train+val images at most, derived ones included (the competition's cap)
    seed: int = 123
    max_side: int = 128  # derived images are stored at most this big (the model sees 32x32)
    splits: list[str] = field(default_factory=lambda: ["train"])
    transforms: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Config:
    """A validated project; paths are absolute once loaded."""

    project_dir: Path
    root: Path
    classes: tuple[str, ...]
    splits: tuple[str, ...] = ("train", "val")
    test_dir: Path | None = None
    backend: str = "local"
    state_dir: Path = Path(".sheetsync")
    local: LocalConfig = field(default_factory=LocalConfig)
    google: GoogleConfig = field(default_factory=GoogleConfig)
    publish: PublishConfig = field(default_factory=PublishConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    review: ReviewConfig = field(default_factory=ReviewConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    @property
    def path(self) -> Path:
        return self.project_dir / CONFIG_NAME

    def resolve(self, value: str | Path) -> Path:
        """A path from the config, relative to the project folder."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.project_dir / p)

    @classmethod
    def load(cls, path: Path) -> Config:
        path = Path(path)
        if path.is_dir():
            path = path / CONFIG_NAME
        if not path.exists():
            raise ConfigError(
                f"no {CONFIG_NAME} at {path.parent}: run `sheetsync init DATA_ROOT` first"
            )
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: not valid TOML ({e})") from None
        return cls.from_dict(raw, path.parent.resolve())

    @classmethod
    def from_dict(cls, raw: dict[str, Any], project_dir: Path) -> Config:
        def section(name: str, kind: Any) -> Any:  # kind: a dataclass
            value = raw.get(name, {})
            if not isinstance(value, dict):
                raise ConfigError(f"[{name}] must be a table")
            known = set(kind.__dataclass_fields__)
            unknown = set(value) - known
            if unknown:
                raise ConfigError(f"[{name}] has unknown key(s): {', '.join(sorted(unknown))}")
            for key, item in value.items():
                _check_value(name, key, kind.__dataclass_fields__[key].type, item)
            return kind(**value)

        if "root" not in raw:
            raise ConfigError(f"{CONFIG_NAME}: 'root' (the dataset folder) is missing")
        classes = raw.get("classes")
        if not isinstance(classes, list) or not classes or not all(
            isinstance(c, str) and c.strip() for c in classes
        ):
            raise ConfigError(f"{CONFIG_NAME}: 'classes' must be a non-empty list of names")
        if len(set(classes)) != len(classes):
            raise ConfigError(f"{CONFIG_NAME}: 'classes' has duplicates")
        splits = raw.get("splits", ["train", "val"])
        if not isinstance(splits, list) or not splits or not all(
            isinstance(s, str) and s.strip() for s in splits
        ):
            raise ConfigError(f"{CONFIG_NAME}: 'splits' must be a non-empty list of names, "
                              f"not {splits!r}")
        if len(set(splits)) != len(splits):
            raise ConfigError(f"{CONFIG_NAME}: 'splits' has duplicates")
        for key in ("root", "test_dir", "state_dir"):
            if key in raw and not isinstance(raw[key], str):
                raise ConfigError(f"{CONFIG_NAME}: '{key}' must be a folder path (text), "
                                  f"not {raw[key]!r}")
        backend = raw.get("backend", "local")
        if backend not in BACKENDS:
            raise ConfigError(f"{CONFIG_NAME}: backend must be one of {', '.join(BACKENDS)}")
        for name in [*classes, *splits]:
            _check_folder_name(name)
        cfg = cls(
            project_dir=project_dir,
            root=Path(),
            classes=tuple(classes),
            splits=tuple(splits),
            backend=backend,
            local=section("local", LocalConfig),
            google=section("google", GoogleConfig),
            publish=section("publish", PublishConfig),
            train=section("train", TrainConfig),
            review=section("review", ReviewConfig),
            augment=section("augment", AugmentConfig),
        )
        test_dir = raw.get("test_dir") or None
        return replace(
            cfg,
            root=cfg.resolve(raw["root"]).resolve(),
            test_dir=None if test_dir is None else (cfg.resolve(raw["root"]) / test_dir).resolve(),
            state_dir=cfg.resolve(raw.get("state_dir", ".sheetsync")),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "root": _relative(self.root, self.project_dir),
            "backend": self.backend,
            "classes": list(self.classes),
            "splits": list(self.splits),
        }
        if self.test_dir is not None:
            out["test_dir"] = _relative(self.test_dir, self.root)
        out["state_dir"] = _relative(self.state_dir, self.project_dir)
        for name in ("local", "google", "publish", "train", "review", "augment"):
            out[name] = asdict(getattr(self, name))
        return out

    def save(self) -> None:
        self.path.write_text(tomli_w.dumps(self.to_dict()), encoding="utf-8")


# Least values of the numbers in sheetsync.toml (key -> least); others only need their type.
_LEAST: dict[str, float] = {
    "local.thumb_size": 8, "google.timeout": 0.01, "google.max_retries": 0,
    "publish.thumbnails": 0, "publish.workers": 1, "publish.max_retries": 0,
    "train.epochs": 1, "train.batch_size": 1, "train.seed": 0,
    "review.folds": 2, "review.epochs": 1, "review.fold_seeds": 1, "review.fold_workers": 0,
    "review.warm_epochs": 0,
    "augment.cap": 0, "augment.seed": 0, "augment.max_side": 8,
}
_CHOICES = {"train.precision": ("float32", "mixed_bfloat16"),
            "google.auth": ("service_account", "oauth", "default")}


def _check_value(section: str, key: str, annotation: object, value: object) -> None:
    """A ConfigError naming ``[section] key`` when ``value`` is not what the key takes."""
    where, kind = f"[{section}] {key}", str(annotation)
    whole = kind == "int"
    if kind in ("int", "float"):
        number = isinstance(value, int | float) and not isinstance(value, bool)
        least = _LEAST.get(f"{section}.{key}")
        if not number or (whole and not isinstance(value, int)) or (
                least is not None and value < least):  # type: ignore[operator]
            what = "a whole number" if whole else "a number"
            bound = f" >= {least:g}" if least is not None else ""
            raise ConfigError(f"{where} must be {what}{bound}, not {value!r}")
    elif kind == "bool" and not isinstance(value, bool):
        raise ConfigError(f"{where} must be true or false, not {value!r}")
    elif kind == "str" and not isinstance(value, str):
        raise ConfigError(f"{where} must be text (in quotes), not {value!r}")
    elif kind.startswith("list") and not (isinstance(value, list)
                                          and all(isinstance(v, str) for v in value)):
        raise ConfigError(f"{where} must be a list of names, not {value!r}")
    elif kind.startswith("dict") and not isinstance(value, dict):
        raise ConfigError(f"{where} must be a table, not {value!r}")
    choices = _CHOICES.get(f"{section}.{key}")
    if choices and value not in choices:
        raise ConfigError(f"{where} must be one of {', '.join(choices)}, not {value!r}")


def _check_folder_name(name: str) -> None:
    # Class and split names become folder names: refuse anything that could escape the root.
    if name in (".", "..") or "/" in name or "\\" in name or name.startswith(".") or "\x00" in name:
        raise ConfigError(f"{name!r} cannot be a class or split name (it must be a plain folder name)")


def _relative(path: Path, base: Path) -> str:
    try:
        return path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return str(path)


def find_project(start: Path | str, given: bool = False) -> Path:
    """The folder holding ``sheetsync.toml``: ``start`` or the nearest folder above it, as git
    finds ``.git``. ``given``: ``start`` came from ``-C``, so a missing folder is named as such.
    """
    start = Path(start)
    if not start.exists():
        what = f"-C {start}" if given else str(start)
        raise ConfigError(f"{what}: no such folder")
    if not start.is_dir():
        raise ConfigError(f"{start} is not a folder")
    here = start.resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_NAME).is_file():
            return folder
    raise ConfigError(f"no {CONFIG_NAME} in {here} or any folder above it: "
                      "run `sheetsync init DATA_ROOT` first")
