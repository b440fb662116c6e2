"""A prepared group of runs: the loaded dense model, its data and dense measurements,
importance scores, and the fine-tuning step every schedule shares.

`load` is all that validation needs; `prepare` adds the dense measurements a run compares to."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field

import torch
from torch import nn

from pruning.core import data as datasets
from pruning.core import lab, measure, methods, models, tasks
from pruning.core import masks as masking
from pruning.core.progress import Progress
from pruning.core.tasks import Evaluation
from pruning.core.train import fit
from pruning.errors import UserError
from pruning.runs.config import RunConfig
from pruning.runs.result import Dense


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but CUDA is not available here; use --device cpu")
    return torch.device(name)


@dataclass
class Loaded:
    """What validating a config needs: the model, its data, the method and its checked options."""

    config: RunConfig
    model: nn.Module
    data: datasets.Data
    method: methods.Method
    options: dict
    layers: dict[str, nn.Module]
    example: torch.Tensor

    @property
    def ctx(self) -> methods.Context:
        return methods.Context(self.calibration, self.config.seed, self.data.task, self.example.device)

    @property
    def calibration(self) -> datasets.Split | datasets.DatasetSplit:
        """What criteria calibrate on: the training split, or `calib_samples` of it (seeded)."""
        train, cap = self.data.train, self.config.calib_samples
        if cap is None or cap >= len(train):
            return train
        chosen = torch.randperm(len(train), generator=torch.Generator().manual_seed(self.config.seed))[:cap]
        return train.subset(chosen)

    def evaluate(
        self, model: nn.Module, split: datasets.Split | datasets.DatasetSplit | None = None
    ) -> Evaluation:
        """The task's metric on `split` (default: the test split), capped at `eval_samples`."""
        split = self.data.test if split is None else split
        return self.data.evaluate(model, split, limit=self.config.eval_samples)


@dataclass
class Prepared(Loaded):
    """A loaded dense model with its dense measurements, shared by a group of runs."""

    flops: int = 0
    layer_flops: dict[str, int] = field(default_factory=dict)
    dense: Dense | None = None


def load(config: RunConfig) -> Loaded:
    """Load and validate what a group of runs needs; raises UserError before any work is stored."""
    device = resolve_device(config.device)
    method = methods.get(config.method)
    options = method.options(dict(config.options))
    model = models.load(config.model, config.weights)  # first: an unknown model is the error to show
    dataset_spec = config.data or models.default_dataset(config.model)
    if dataset_spec is None:
        raise UserError(f"model '{config.model}' has no default dataset: pass --data")
    data = datasets.with_task(datasets.load(dataset_spec), config.task or lab.model_task(config.model))
    model = model.to(device)
    if config.embeddings:
        masking.include_embeddings(model)
    layers = masking.prunable_layers(model)
    example = data.test.head(config.batch_size)[0].to(device)
    # Gradient criteria score with a backward pass; runs that train check theirs in `check_training`.
    # Methods that only read activations (Wanda, SparseGPT) skip it: on GPT-2 small its gradients and
    # activations took a SparseGPT run's peak memory from 2.9x the parameter bytes to 4.5x.
    dry_run(model, data, f"dataset '{dataset_spec}'", backward=method.needs_gradients)
    return Loaded(config, model, data, method, options, layers, example)


def dry_run(model: nn.Module, data: datasets.Data, what: str, backward: bool = True) -> None:
    """What a run does to the model, on two samples of each split: a forward pass whose outputs must
    fit the task and be finite, and with `backward` a backward pass of the training loss (fine-tuning,
    gradient criteria). The model is left as it was (eval mode, no gradients)."""
    device, task = tasks.device_of(model), data.task
    for split_name, split in (("test", data.test), ("train", data.train)):
        x, y = (t.to(device) for t in split.head(2))
        where = what if split_name == "test" else f"the training split of {what}"
        try:
            with torch.no_grad():
                output = model(x)
        except Exception as exc:
            raise UserError(f"the model cannot run on {where}: {_first_line(exc)}") from exc
        task.check(output, y, data.num_classes, where, labels=data.labels)
        if not torch.isfinite(tasks.logits(output)).all():
            raise UserError(
                f"the model outputs NaN or infinite values on {where}; check its weights and forward"
            )
    if not backward or not any(p.requires_grad for p in model.parameters()):
        return  # nothing to train: methods and schedules that need gradients refuse it themselves
    try:
        loss = task.loss(model(x), y)
        loss.backward()
    except Exception as exc:
        raise UserError(f"the model cannot be trained on {where}: {_first_line(exc)}") from exc
    finally:
        model.zero_grad(set_to_none=True)
    if not torch.isfinite(loss):
        raise UserError(f"the training loss on {where} is {loss.item()}; check the data and the model")


def check_training(loaded: Loaded) -> None:
    """The dry run with its backward pass, for a run that trains (fine-tuning, schedules). A one-shot
    run never takes one: on GPT-2 small its gradients and activations took a one-shot run's peak
    memory from 2.7x the parameter bytes to 4.3x."""
    spec = loaded.config.data or models.default_dataset(loaded.config.model)
    dry_run(loaded.model, loaded.data, f"dataset '{spec}'")


def _first_line(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}".strip().splitlines()[0]


def prepare(config: RunConfig, loaded: Loaded | None = None) -> Prepared:
    """`load` (unless given) plus the dense model's measurements every run of the group compares to."""
    loaded = loaded or load(config)
    model = loaded.model
    total, per_module = measure.layer_flops(model, loaded.example[:1])
    per_layer = measure.prunable_flops(model, loaded.layers, per_module)
    evaluation = loaded.evaluate(model)
    dense = Dense(
        accuracy=evaluation.accuracy,
        metric=evaluation.metric,
        per_class_accuracy=evaluation.per_class_accuracy,
        params=measure.params(model),
        nonzero_params=measure.nonzero_params(model),
        flops=total,
        size_bytes=measure.state_size(model),
    )
    fields = {f.name: getattr(loaded, f.name) for f in dataclasses.fields(Loaded)}
    return Prepared(**fields, flops=total, layer_flops=per_layer, dense=dense)


def importance(prep: Loaded) -> dict[str, torch.Tensor] | None:
    """The method's scores of the dense model, computed once per group (None: it scores in `prune`)."""
    # Gradient criteria leave gradients behind: they score a copy. The others read weights and
    # activations only (a copy would double a large model's memory for nothing).
    model = copy.deepcopy(prep.model) if prep.method.needs_gradients else prep.model
    return prep.method.importance(model, masking.prunable_layers(model), prep.ctx, prep.options)


def finetune(prep: Loaded, work: nn.Module, config: RunConfig, keep: dict, progress: Progress) -> None:
    """Fine-tune with the masks held fixed (none: structure was removed), with the model's recipe."""
    train = models.train_config(config.model)
    train = dataclasses.replace(train, epochs=config.finetune_epochs)
    fit(
        work,
        prep.data.train,
        train,
        masks=masking.param_masks(work, keep),
        seed=config.seed,
        progress=progress,
        task=prep.data.task,
    )
    with torch.no_grad():
        out = tasks.logits(work(prep.example[:2]))
    if not torch.isfinite(out).all():
        raise UserError(
            "after fine-tuning the model outputs NaN or infinite values on the test split; "
            "fine-tune fewer epochs or check the data"
        )
