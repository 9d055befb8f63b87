"""In-process compatibility layer: heareval 2021.1.3 on numpy 2, Lightning 2 and torch >= 2.6.

heareval was written for pytorch-lightning 1.x and torch < 2.6. On today's stack its embeddings
runner works, but its predictions runner breaks in four places and its embeddings runner refuses
machines where torch sees a GPU and TensorFlow (tensorflow-cpu) does not. :func:`apply` patches
heareval's modules *in memory* -- installed files are never edited -- so that the unchanged
runners work. Each patch is as narrow as we could make it: it changes what heareval sees, not
what the rest of the process sees.

=====================  =======================================================================
patch                  breakage it fixes
=====================  =======================================================================
``trainer_gpus``       1. ``pl.Trainer(gpus=...)``: the argument was removed in Lightning 2.0
                       (TypeError). heareval's ``pl`` becomes a view of pytorch_lightning whose
                       ``Trainer`` maps ``gpus`` to ``accelerator``/``devices``.
``epoch_end_hooks``    2. ``validation_epoch_end``/``test_epoch_end`` were removed in Lightning
                       2.0 (NotImplementedError at fit). The prediction model collects its step
                       outputs and scores them from ``on_validation/test_epoch_end`` instead.
``checkpoint_loading`` 3. torch >= 2.6 loads with ``weights_only=True`` by default, which refuses
                       heareval's checkpoints (their hyper-parameters hold classes such as
                       ``torch.nn.BatchNorm1d``). While heareval trains or tests a predictor,
                       ``torch.load`` defaults to ``weights_only=False`` again; it only ever
                       loads checkpoints heareval itself has just written.
``test_epoch``         4. Event tasks: heareval sets ``trainer.fit_loop.current_epoch`` before
                       testing so the model looks up the post-processing chosen at the best
                       epoch. Since Lightning 1.6 that assignment is a silent no-op, so the test
                       looks up the last epoch instead (KeyError). We set the epoch where
                       Lightning keeps it (``fit_loop.epoch_progress.current.completed``).
``embeddings_gpu``     5. The embeddings runner raises "GPUs not available in tensorflow, but
                       found by pytorch" at import when torch sees a GPU and TensorFlow does not
                       (tensorflow-cpu). That check only matters for TensorFlow models; for
                       torch models we import the runner with the check answered "yes".
``gpu_device_name``    GPU machines only: heareval's ``gpu_max_mem.device_name`` calls
                       ``.decode`` on the name, which current ``nvidia-ml-py`` returns as str.
=====================  =======================================================================

Every patch is idempotent and checks first whether its breakage is present in the installed
versions (``Patch.needed``); on a stack where it is not, it is skipped. Use::

    from hear_codec.evaluation import compat
    compat.apply()                               # patches heareval's predictions code
    runner = compat.import_embeddings_runner()   # the embeddings runner, GPU check handled
"""
from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import io
import pickle
import sys
import types
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List

import torch

_MARK = "_hear_codec_compat"  # attribute that marks an object we patched, for idempotence


def _predictions_module() -> types.ModuleType:
    return importlib.import_module("heareval.predictions.task_predictions")


@dataclass(frozen=True)
class Patch:
    """One compatibility patch: ``needed()`` probes the installed stack, ``apply_()`` patches,
    ``applied()`` says whether heareval currently carries the patch."""

    name: str
    breakage: str
    needed: Callable[[], bool]
    apply_: Callable[[], None]
    applied: Callable[[], bool]


# --- 1. Trainer(gpus=...) -------------------------------------------------------------------

def trainer_kwargs_for_gpus(gpus: Any) -> Dict[str, Any]:
    """Lightning 2 ``accelerator``/``devices`` for a Lightning 1 ``gpus`` value.

    heareval passes ``None`` (CPU) or the parsed JSON of ``--gpus`` (e.g. ``[0]``, ``2``, ``-1``).
    """
    if gpus is None or gpus == 0 or gpus == []:
        return {"accelerator": "cpu", "devices": 1}
    return {"accelerator": "gpu", "devices": gpus}


def _trainer_gpus_needed() -> bool:
    import pytorch_lightning as pl

    return "gpus" not in inspect.signature(pl.Trainer.__init__).parameters


def _make_trainer_class(base: type) -> type:
    class Trainer(base):  # type: ignore[misc, valid-type]
        """pytorch_lightning.Trainer that still accepts Lightning 1's ``gpus`` argument."""

        def __init__(self, *args: Any, gpus: Any = None, **kwargs: Any):
            for key, value in trainer_kwargs_for_gpus(gpus).items():
                kwargs.setdefault(key, value)
            super().__init__(*args, **kwargs)

    Trainer.__qualname__ = Trainer.__name__ = "Trainer"
    return Trainer


class _LightningView(types.ModuleType):
    """Stands in for ``pytorch_lightning`` inside heareval: everything is forwarded to the real
    module except the attributes set on the view (``Trainer``)."""

    def __init__(self, real: types.ModuleType):
        super().__init__(real.__name__, real.__doc__)
        self._real = real
        setattr(self, _MARK, True)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def _apply_trainer_gpus() -> None:
    tp = _predictions_module()
    view = _LightningView(tp.pl)
    view.Trainer = _make_trainer_class(tp.pl.Trainer)
    tp.pl = view


def _trainer_gpus_applied() -> bool:
    return getattr(_predictions_module().pl, _MARK, False)


# --- 2. validation_epoch_end / test_epoch_end ------------------------------------------------

def _epoch_end_hooks_needed() -> bool:
    import pytorch_lightning as pl

    return int(pl.__version__.split(".")[0]) >= 2


def _collect_outputs(step: Callable) -> Callable:
    @functools.wraps(step)
    def step_and_collect(self, batch, batch_idx, *args, **kwargs):
        out = step(self, batch, batch_idx, *args, **kwargs)
        self._hear_codec_step_outputs.append(out)
        return out

    return step_and_collect


def _start_collecting(self) -> None:
    self._hear_codec_step_outputs = []


def _score_collected(name: str) -> Callable:
    def on_epoch_end(self) -> None:
        outputs, self._hear_codec_step_outputs = self._hear_codec_step_outputs, []
        self._score_epoch_end(name, outputs)

    on_epoch_end.__name__ = f"on_{'validation' if name == 'val' else 'test'}_epoch_end"
    return on_epoch_end


def _apply_epoch_end_hooks() -> None:
    model = _predictions_module().AbstractPredictionModel
    # Lightning 2 refuses any model that still *has* these methods, so they must go.
    del model.validation_epoch_end
    del model.test_epoch_end
    model.validation_step = _collect_outputs(model.validation_step)
    model.test_step = _collect_outputs(model.test_step)
    model.on_validation_epoch_start = _start_collecting
    model.on_test_epoch_start = _start_collecting
    model.on_validation_epoch_end = _score_collected("val")
    model.on_test_epoch_end = _score_collected("test")
    setattr(model, _MARK, True)


def _epoch_end_hooks_applied() -> bool:
    return _MARK in vars(_predictions_module().AbstractPredictionModel)


# --- 3. torch.load weights_only -------------------------------------------------------------

def _checkpoint_loading_needed() -> bool:
    """True if ``torch.load`` refuses, by default, a checkpoint like heareval's (a class inside)."""
    buffer = io.BytesIO()
    torch.save({"hidden_norm": torch.nn.BatchNorm1d}, buffer)
    buffer.seek(0)
    try:
        torch.load(buffer)
    except pickle.UnpicklingError:
        return True
    return False


@contextmanager
def trusting_torch_load() -> Iterator[None]:
    """Within the block, ``torch.load`` defaults to ``weights_only=False`` (torch < 2.6 behaviour).

    Lightning passes ``weights_only=None`` explicitly, so ``None`` is mapped to False as well; an
    explicit True is kept.
    """
    original = torch.load

    @functools.wraps(original)
    def load(*args: Any, weights_only: Any = None, **kwargs: Any) -> Any:
        return original(*args, weights_only=False if weights_only is None else weights_only, **kwargs)

    torch.load = load
    try:
        yield
    finally:
        torch.load = original


def _trusting(fn: Callable) -> Callable:
    @functools.wraps(fn)
    def with_trusted_checkpoints(*args: Any, **kwargs: Any) -> Any:
        with trusting_torch_load():
            return fn(*args, **kwargs)

    setattr(with_trusted_checkpoints, _MARK + "_load", True)
    return with_trusted_checkpoints


def _apply_checkpoint_loading() -> None:
    tp = _predictions_module()
    # task_predictions_train reads the best epoch from its checkpoint; task_predictions_test has
    # Lightning restore that checkpoint. These are the only two places heareval loads one.
    tp.task_predictions_train = _trusting(tp.task_predictions_train)
    tp.task_predictions_test = _trusting(tp.task_predictions_test)


def _checkpoint_loading_applied() -> bool:
    tp = _predictions_module()
    return all(_wrapped_by(f, _MARK + "_load") for f in (tp.task_predictions_train, tp.task_predictions_test))


def _wrapped_by(fn: Callable, mark: str) -> bool:
    """True if ``fn`` or a function it wraps (through functools.wraps) carries ``mark``."""
    while fn is not None:
        if getattr(fn, mark, False):
            return True
        fn = getattr(fn, "__wrapped__", None)
    return False


# --- 4. trainer.fit_loop.current_epoch = ... ------------------------------------------------

def _test_epoch_needed() -> bool:
    from pytorch_lightning.loops.fit_loop import _FitLoop

    prop = inspect.getattr_static(_FitLoop, "current_epoch", None)
    return not (isinstance(prop, property) and prop.fset is not None)


def _apply_test_epoch() -> None:
    tp = _predictions_module()
    test = tp.task_predictions_test
    grid_point_index = list(inspect.signature(test).parameters).index("grid_point")

    @functools.wraps(test)
    def test_at_best_epoch(*args: Any, **kwargs: Any) -> Any:
        grid_point = kwargs["grid_point"] if "grid_point" in kwargs else args[grid_point_index]
        # What heareval's `trainer.fit_loop.current_epoch = grid_point.epoch` meant to do:
        # `self.current_epoch` during the test must be the epoch of the restored checkpoint.
        grid_point.trainer.fit_loop.epoch_progress.current.completed = grid_point.epoch
        return test(*args, **kwargs)

    setattr(test_at_best_epoch, _MARK + "_epoch", True)
    tp.task_predictions_test = test_at_best_epoch


def _test_epoch_applied() -> bool:
    return _wrapped_by(_predictions_module().task_predictions_test, _MARK + "_epoch")


# --- GPU machines: nvidia-ml-py's str device names ------------------------------------------

def _gpu_device_name_needed() -> bool:
    return torch.cuda.is_available()


def _apply_gpu_device_name() -> None:
    gpu_max_mem = importlib.import_module("heareval.gpu_max_mem")
    device_name = gpu_max_mem.device_name

    @functools.wraps(device_name)
    def device_name_str(device_index: int = 0) -> str:
        name = gpu_max_mem.nvmlDeviceGetName(gpu_max_mem.nvmlDeviceGetHandleByIndex(device_index))
        return name.decode("utf-8") if isinstance(name, bytes) else str(name)

    setattr(device_name_str, _MARK, True)
    gpu_max_mem.device_name = device_name_str


def _gpu_device_name_applied() -> bool:
    return _wrapped_by(importlib.import_module("heareval.gpu_max_mem").device_name, _MARK)


PATCHES: List[Patch] = [
    Patch("trainer_gpus", "Trainer(gpus=) removed in Lightning 2",
          _trainer_gpus_needed, _apply_trainer_gpus, _trainer_gpus_applied),
    Patch("epoch_end_hooks", "validation_epoch_end/test_epoch_end removed in Lightning 2",
          _epoch_end_hooks_needed, _apply_epoch_end_hooks, _epoch_end_hooks_applied),
    Patch("checkpoint_loading", "torch>=2.6 torch.load(weights_only=True) refuses heareval checkpoints",
          _checkpoint_loading_needed, _apply_checkpoint_loading, _checkpoint_loading_applied),
    Patch("test_epoch", "fit_loop.current_epoch assignment is a no-op since Lightning 1.6 (event tasks)",
          _test_epoch_needed, _apply_test_epoch, _test_epoch_applied),
    Patch("gpu_device_name", "nvidia-ml-py returns device names as str, heareval calls .decode",
          _gpu_device_name_needed, _apply_gpu_device_name, _gpu_device_name_applied),
]


def _check_gpu_requirements() -> None:
    # heareval.gpu_max_mem imports pynvml as soon as torch sees a GPU; say what to install.
    if torch.cuda.is_available() and importlib.util.find_spec("pynvml") is None:
        raise ImportError("heareval needs pynvml on GPU machines: pip install nvidia-ml-py")


def apply() -> Dict[str, str]:
    """Apply every needed patch to heareval's predictions code (idempotent).

    Returns:
        ``{patch name: "applied" | "already applied" | "not needed"}``.
    """
    _check_gpu_requirements()
    status = {}
    for patch in PATCHES:
        if not patch.needed():
            status[patch.name] = "not needed"
        elif patch.applied():
            status[patch.name] = "already applied"
        else:
            patch.apply_()
            status[patch.name] = "applied"
    return status


# --- 5. the embeddings runner's GPU check ---------------------------------------------------

def embeddings_gpu_check_fails() -> bool:
    """True if importing heareval's embeddings runner would raise its GPU check: torch sees a
    GPU and TensorFlow sees none (tensorflow-cpu)."""
    if not torch.cuda.is_available():
        return False
    import tensorflow as tf

    return not tf.config.list_physical_devices("GPU")


@contextmanager
def _tensorflow_gpu_check_passes() -> Iterator[None]:
    import tensorflow as tf

    original = tf.test.is_gpu_available
    tf.test.is_gpu_available = lambda *args, **kwargs: True
    try:
        yield
    finally:
        tf.test.is_gpu_available = original


def import_embeddings_runner() -> types.ModuleType:
    """``heareval.embeddings.runner``, imported so that its GPU check cannot refuse a GPU machine
    with tensorflow-cpu (the check only concerns TensorFlow models; hear_codec is torch).
    Call :func:`apply` too before running it: the runner records the GPU name through
    ``gpu_max_mem``.
    """
    name = "heareval.embeddings.runner"
    if name in sys.modules:
        return sys.modules[name]
    if embeddings_gpu_check_fails():
        with _tensorflow_gpu_check_passes():
            return importlib.import_module(name)
    return importlib.import_module(name)
