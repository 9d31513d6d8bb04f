"""Checkpoints that are safe to load and hard to lose.

- Training checkpoints (``checkpoint.pt``) hold the model, its EMA, the optimiser, the step and
  every random-number state, so a resumed run continues exactly. They contain only tensors and
  plain values and are read with ``torch.load(weights_only=True)``, which never unpickles code.
- Exported models (``*.safetensors``) hold the EMA weights alone plus the configuration as JSON
  metadata: what ships in ``data/checkpoints/`` and what ``sample`` reads.

Every file is written to a temporary name in the same folder and renamed into place, so a crash
mid-write leaves the previous checkpoint intact. A JSON record (model and schedule config, step,
package version) sits beside each checkpoint for people and tools.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, fields
from pathlib import Path

import torch

from ddpm_lessons import __version__
from ddpm_lessons.autoencoder import Autoencoder, AutoencoderConfig
from ddpm_lessons.data import REPO_DATA
from ddpm_lessons.objectives import objective_of
from ddpm_lessons.schedules import NoiseSchedule, ScheduleConfig  # noqa: F401 (ScheduleConfig: re-exported)
from ddpm_lessons.solvers import SamplingConfig, check_sampler, check_shift
from ddpm_lessons.unet import UNet, UNetConfig

PRETRAINED_DIR = REPO_DATA / "checkpoints"
PRETRAINED_MNIST = PRETRAINED_DIR / "mnist_conditional.safetensors"  # see data/checkpoints/README.md
PRETRAINED_SR7 = PRETRAINED_DIR / "mnist_sr7.safetensors"  # super-resolution 7x7 -> 28x28 (lesson 07)
PRETRAINED_AUTOENCODER = PRETRAINED_DIR / "digits_autoencoder.safetensors"  # lesson 08 (load_autoencoder)
PRETRAINED_LATENT_TEXT = PRETRAINED_DIR / "latent_text.safetensors"  # lesson 08, on that autoencoder's latents
PRETRAINED_FLOW = PRETRAINED_DIR / "mnist_flow.safetensors"  # class-conditional flow matching (lesson 11)
# The shipped U-Nets, by name, for load_pretrained (the autoencoder, not a U-Net, loads with load_autoencoder).
PRETRAINED = {"mnist_conditional": PRETRAINED_MNIST, "mnist_sr7": PRETRAINED_SR7, "latent_text": PRETRAINED_LATENT_TEXT,
              "mnist_flow": PRETRAINED_FLOW}  # fmt: skip


class ConfigMismatch(ValueError):
    """A checkpoint was made for a different model or schedule than the one it is loaded into."""


def atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp (and safetensors) make 0600 files; give the usual permissions
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX and Windows
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(path: Path, record: dict) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(record, indent=2) + "\n"))


def config_record(model_config: UNetConfig, schedule_config: ScheduleConfig, step: int, **extra) -> dict:
    return {
        "model": model_config.to_dict(),
        "schedule": asdict(schedule_config),
        "step": step,
        "ddpm_lessons_version": __version__,
        **extra,
    }


def _differences(saved: dict, current: dict, prefix: str) -> list[str]:
    diffs = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key), current.get(key)
        if isinstance(a, list):
            a = tuple(a)
        if isinstance(b, list):
            b = tuple(b)
        if a != b:
            diffs.append(f"{prefix}.{key}: checkpoint has {a!r}, this run has {b!r}")
    return diffs


def check_same_config(record: dict, model_config: UNetConfig, schedule_config: ScheduleConfig, where: str) -> None:
    """Raise ConfigMismatch naming every field where the checkpoint and this run differ."""
    # A record written before a field existed holds that field's default (e.g. text_conditioning = False).
    defaults = {f.name: f.default for f in fields(UNetConfig)}
    diffs = _differences({**defaults, **record["model"]}, model_config.to_dict(), "model")
    diffs += _differences(record["schedule"], asdict(schedule_config), "schedule")
    if diffs:
        raise ConfigMismatch(
            f"{where} was made with a different configuration:\n  "
            + "\n  ".join(diffs)
            + "\nUse the checkpoint's settings (they are in its .json record), or start a new run directory."
        )


def model_config_from_record(record: dict) -> UNetConfig:
    known = {f.name for f in fields(UNetConfig)}
    return UNetConfig(**{k: v for k, v in record["model"].items() if k in known})


def save_training_checkpoint(path: Path, state: dict, record: dict) -> None:
    """Write the training state (tensors and plain values only) and its JSON record, both atomically."""
    payload = {**state, "record_json": json.dumps(record)}
    atomic_write(path, lambda tmp: torch.save(payload, tmp))
    write_json(Path(path).with_suffix(".json"), record)


def check_version(record: dict, path: Path) -> None:
    """Refuse a file written by a newer ddpm_lessons, whose record this version may not understand."""
    written_by = str(record.get("ddpm_lessons_version", "0"))
    try:
        newer = tuple(int(p) for p in written_by.split(".")) > tuple(int(p) for p in __version__.split("."))
    except ValueError:
        newer = True
    if newer:
        raise ValueError(
            f"{path} was written by ddpm_lessons {written_by}, newer than this {__version__}; update the package "
            "(git pull, then pip install -e .) to read it"
        )


def load_training_checkpoint(path: Path, map_location="cpu") -> tuple[dict, dict]:
    """Read a training checkpoint without unpickling code. Returns (state, record)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}; start without --resume, or point --out at the run")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise ValueError(
            f"cannot read checkpoint {path} ({type(err).__name__}); it is truncated or not a checkpoint.pt written by "
            "`train`. Resume from the run's last good checkpoint, or start a new --out"
        ) from err
    if not isinstance(state, dict) or "record_json" not in state or "ema" not in state:
        raise ValueError(f"{path} is a PyTorch file but not a ddpm_lessons training checkpoint (no record, no EMA)")
    record = json.loads(state.pop("record_json"))
    check_version(record, path)
    return state, record


def export_model(path: Path, model: torch.nn.Module, record: dict) -> None:
    """Write a model's weights as safetensors with the config record as metadata, plus a .json beside it."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata={"record": json.dumps(record)}))
    write_json(Path(path).with_suffix(".json"), record)


def record_sampling(path: str | Path, sampler: str, steps: int, guidance: float, shift: float | None = None) -> dict:
    """Write into an exported model's record (its metadata and the .json beside it) the sampling setting it was
    measured with, which `sample` then uses by default; the weights are rewritten unchanged. ``shift``: a flow
    model's shift of its grid of flow times (``flow.shift_flow_time``); None keeps the record's (1, an even grid, if
    it has none). Returns the record."""
    from safetensors.torch import save_file

    path = Path(path)
    meta, weights = read_safetensors(path, "Export it again, or point at another model")
    if "record" not in meta:
        raise ValueError(f"{path} has no ddpm_lessons config record; it was not written by export_model")
    record = json.loads(meta["record"])
    check_sampler(sampler, objective_of(record))
    if shift is None:
        shift = record.get("sampling", {}).get("shift", 1.0)
    check_shift(shift, objective_of(record))
    record["sampling"] = asdict(SamplingConfig(sampler, int(steps), float(guidance), float(shift)))
    atomic_write(path, lambda tmp: save_file(weights, str(tmp), metadata={"record": json.dumps(record)}))
    write_json(path.with_suffix(".json"), record)
    return record


def read_safetensors(path: Path, fix: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """(metadata, tensors) of a .safetensors file, or a ValueError that says it is unreadable and ``fix``."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        return meta, load_file(str(path))
    except Exception as err:  # safetensors raises its own error types for a truncated or foreign file
        raise ValueError(
            f"cannot read {path} ({type(err).__name__}); it is truncated or not a safetensors file. {fix}"
        ) from err


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[UNet, NoiseSchedule, dict]:
    """Load an exported model (.safetensors) or a training checkpoint (.pt, its EMA weights).

    Returns (model in eval mode, its noise schedule, the config record).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no model at {path}; pass the path of a .safetensors or checkpoint.pt file")
    if path.suffix not in (".safetensors", ".pt"):
        raise ValueError(f"{path} is neither a .safetensors model nor a checkpoint.pt; pass one of those")
    if path.suffix == ".safetensors":
        meta, weights = read_safetensors(path, "Export it again, or point at another model")
        if "record" not in meta:
            raise ValueError(f"{path} has no ddpm_lessons config record; it was not written by export_model")
        record = json.loads(meta["record"])
        check_version(record, path)
    else:
        state, record = load_training_checkpoint(path)
        weights = state["ema"]
    model = UNet(model_config_from_record(record))
    try:
        missing, unexpected = model.load_state_dict(weights, strict=False)
    except RuntimeError as err:  # a tensor of another shape
        raise ConfigMismatch(
            f"{path}: weights do not fit the recorded config ({str(err).splitlines()[-1].strip()})"
        ) from err
    if missing or unexpected:
        raise ConfigMismatch(
            f"{path}: weights do not fit the recorded config (missing {missing}, unexpected {unexpected})"
        )
    schedule = ScheduleConfig(**record["schedule"]).build()
    return model.to(device).eval(), schedule, record


def load_pretrained(
    device: str | torch.device = "cpu", name: str = "mnist_conditional"
) -> tuple[UNet, NoiseSchedule, dict]:
    """A model that ships with the course (data/checkpoints/README.md says how each was trained and how good
    it is): "mnist_conditional" (lessons 04-07, the demo), "mnist_sr7" (super-resolution, lesson 07) or
    "latent_text" (text-conditioned, on the latents of the autoencoder that load_autoencoder() loads; lesson 08).
    Returns (model in eval mode, schedule, config record)."""
    if name not in PRETRAINED:
        raise ValueError(f"no pretrained model {name!r}; choose one of {', '.join(PRETRAINED)}")
    path = PRETRAINED[name]
    if not path.exists():
        raise FileNotFoundError(
            f"the pretrained model {path} is missing; it comes with a git clone of the course "
            "(git lfs is not needed). Re-clone, or train one: see data/checkpoints/README.md"
        )
    return load_model(path, device)


def save_autoencoder(path: str | Path, model: Autoencoder, record: dict) -> None:
    """The autoencoder's weights (safetensors) with its config and ``record`` as JSON metadata, written atomically."""
    from safetensors.torch import save_file

    meta = {"record": json.dumps({"autoencoder": asdict(model.config), **record})}
    weights = {k: v.contiguous() for k, v in model.state_dict().items()}
    atomic_write(Path(path), lambda tmp: save_file(weights, str(tmp), metadata=meta))


def load_autoencoder(path: str | Path = PRETRAINED_AUTOENCODER) -> tuple[Autoencoder, dict]:
    """(autoencoder in eval mode, its record); by default the one lesson 08 ships."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no autoencoder at {path}; train one with scripts/train_latent_text.py")
    meta, weights = read_safetensors(path, "Train it again with scripts/train_latent_text.py, or point at another file")
    record = json.loads(meta.get("record", "{}"))
    if "autoencoder" not in record:
        raise ValueError(f"{path} holds no autoencoder record; it was not written by save_autoencoder")
    check_version(record, path)
    model = Autoencoder(AutoencoderConfig(**record["autoencoder"]))
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        raise ConfigMismatch(f"{path}: weights do not fit the recorded autoencoder config") from err
    return model.eval(), record
