"""The training and evaluation sections of a run's config (re-exported by ``grouping.config.schema``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from grouping.config.checks import no_bool_numbers


class Strict(BaseModel):
    """A config section: unknown keys are errors, and true/false is no number."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bools(cls, value: Any, info: ValidationInfo) -> Any:
        return no_bool_numbers(cls, value, info)


class TrainConfig(Strict):
    """Optimisation and the training loop (spec 7)."""

    lr: float = Field(default=1e-3, gt=0.0, le=10.0, allow_inf_nan=False)
    lr_schedule: Literal["constant", "cosine", "linear"] = Field(
        default="constant",
        description="the rate over the budget: constant, or decayed from lr to zero (cosine or "
        "linear) over the epochs, or over max_minutes where those run out first "
        "(grouping.training.schedule)",
    )
    lr_reference_epochs: float | None = Field(
        default=None,
        gt=0.0,
        allow_inf_nan=False,
        description="with a decaying lr_schedule, the budget lr is the peak for: a run of more "
        "epochs E peaks at lr x lr_reference_epochs / E, so a longer budget moves the weights "
        "about as far in all (None: lr whatever the budget)",
    )
    batch_size: int = Field(default=64, ge=1)
    epochs: int = Field(default=500, ge=1, description="maximum number of epochs")
    patience: int = Field(default=10, ge=1, description="epochs without a better valid loss")
    max_minutes: float | None = Field(
        default=None,
        gt=0.0,
        allow_inf_nan=False,
        description="stop after this much training (the run's, across resumes)",
    )
    valid_samples: int | None = Field(
        default=1000, ge=1, description="validate on the first N validation samples (None: all)"
    )
    device: str = Field(default="auto", description="auto, cpu, cuda or cuda:N")
    precision: Literal["auto", "fp32", "tf32", "bf16"] = Field(
        default="auto",
        description="matmul precision: bf16 products with fp32 elementwise work, tf32 (fp32 with "
        "TF32 products on CUDA; fp32 elsewhere) or fp32 (auto: on the CPU bf16 where it "
        "multiplies bf16 natively; on CUDA bf16 where compiled or at large batches, else tf32; "
        "docs/gpu.md)",
    )
    compile: Literal["off", "default", "reduce-overhead", "max-autotune"] = Field(
        default="off",
        description="torch.compile the training forward and backward in this mode (off: eager; "
        "true and false, as older configs say, mean default and off)",
    )
    data_on_device: Literal["auto"] | bool = Field(
        default="auto",
        description="keep each split as rendered in device memory (uint8), batches indexed there "
        "(auto: on a GPU where the splits fit in a quarter of its memory; on the CPU, a cache of "
        "splits rendered on demand where they fit in a tenth of the free memory)",
    )
    deterministic: bool = Field(
        default=False,
        description="deterministic kernels (cuDNN, torch.use_deterministic_algorithms), so a "
        "CUDA run repeats bit for bit on the same card (slower; docs/gpu.md)",
    )
    cpu_matmul: Literal["auto", "blas", "onednn"] = Field(
        default="auto",
        description="fp32 linear layers on the CPU through the BLAS or oneDNN (auto: oneDNN on "
        "a non-Intel CPU with AVX-512, where MKL runs its AVX2 kernels at half the rate)",
    )
    checkpoint_minutes: float | None = Field(
        default=10.0,
        gt=0.0,
        allow_inf_nan=False,
        description="also write last.pt every N minutes of training, mid-epoch (None: only at "
        "the end of each epoch); a kill loses at most that much work",
    )
    test_checkpoint: Literal["best", "last"] = Field(
        default="best",
        description="the model the run tests at its end: best by validation loss (the paper's "
        "rule) or the last one (where the validation loss does not track grouping quality)",
    )
    resume: Literal["never", "auto"] = Field(
        default="never",
        description="auto: a run whose --out holds this run unfinished, with a last.pt, resumes "
        "it (set by --nproc, so that torchrun's restarts continue by themselves)",
    )
    checkpoint_steps: bool = Field(
        default=False, description="recompute each EM step in backward (memory flat in T)"
    )
    prefetch: int | None = Field(
        default=None,
        ge=0,
        description="batches gathered ahead on a thread (None: 2 on CUDA, 0 on the CPU, where "
        "the thread competes with the compute threads: it halved the quickstart's images/s)",
    )
    threads: int | None = Field(
        default=None,
        ge=1,
        description="CPU threads (None: one or all cores, whichever trains the first batches "
        "faster; under torchrun the cores shared among the local ranks)",
    )
    on_nonfinite: Literal["stop", "skip"] = Field(
        default="stop",
        description="a NaN/inf loss or gradient stops the run, or skips that batch (counted)",
    )
    init_from: str | None = Field(
        default=None,
        min_length=1,
        description="run folder whose best weights (and optimizer state) the run starts from",
    )

    @field_validator("compile", mode="before")
    @classmethod
    def _compile_mode(cls, v: Any) -> Any:
        """Configs and checkpoints from before the modes said true or false."""
        return {True: "default", False: "off"}.get(v, v) if isinstance(v, bool) else v

    @field_validator("device")
    @classmethod
    def _device_form(cls, v: str) -> str:
        ok = v in ("auto", "cpu", "cuda", "mps") or (v.startswith("cuda:") and v[5:].isdigit())
        if not ok:
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, not {v!r}")
        return v


class EvalConfig(Strict):
    """Scoring on the test split (spec 8.1)."""

    batch_size: int = Field(default=100, ge=1)
    samples: int | None = Field(default=None, ge=1, description="score the first N (None: all)")
