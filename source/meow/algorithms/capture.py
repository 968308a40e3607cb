"""How a learner's step runs: eagerly, compiled, or recorded once and replayed as one CUDA graph.

The learner (:mod:`meow.algorithms.meow`) is written as plain tensor functions: a loss, an
optimizer step, an action. This module holds everything about *how* they execute, so that none of
it sits in the algorithm:

- :class:`Capture`: ``algo.capture`` (``none | compile | cudagraph``): compiles functions with
  ``torch.compile`` and records functions as CUDA graphs (warm-up on a side stream, then capture,
  the learner's state put back as it was), replayed with fresh inputs.
- :func:`set_matmul_precision`: ``algo.matmul_precision`` (float32 or TF32 products).
- Flat parameters: every parameter of a module becomes a view of one contiguous tensor (and
  every gradient of one flat gradient), so that Adam, the norm clip and the Polyak step are one
  fused operation each; :class:`FlatLoss` lets a compiled loss take that one tensor as its leaf.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from meow.utils.checks import check_choice

CAPTURE_MODES = ("auto", "none", "compile", "cudagraph")
"""``algo.capture``: how the update (and ``act``) run. ``auto`` = cudagraph on CUDA; on the CPU compile
for runs of :data:`AUTO_COMPILE_MIN_UPDATES` updates or more, none for shorter ones."""

_GUARD_FILTERS = hasattr(torch.compiler, "skip_guard_on_all_nn_modules_unsafe")
"""Whether ``torch.compile`` takes ``options={"guard_filter_fn": ...}`` (torch >= 2.8)."""

_STRUCTURE_GUARDS = frozenset(
    (
        "DICT_KEYS_MATCH", "TYPE_MATCH", "ID_MATCH", "EMPTY_NN_MODULE_HOOKS_DICT",
        "NOT_PRESENT_IN_GENERIC_DICT", "DICT_CONTAINS", "HASATTR", "SEQUENCE_LENGTH", "MODULE_MATCH",
        "BUILTIN_MATCH", "CLASS_MATCH", "CLOSURE_MATCH", "DUPLICATE_INPUT",
    )
)  # fmt: skip


def fixed_structure_guard(entry: Any) -> bool:
    """Whether a Dynamo guard checks only what is fixed once a learner is built, so that a compiled
    step need not check it on every call.

    Those are the guards on the structure of the objects the step reaches through its closure
    (the learner ``self``, the module ``holder``, the ``torch`` globals): which keys their dicts
    hold, the types of their members, that no hooks were added, and the flat-parameter ``layout``
    of :func:`over_flat_parameters`. Kept: every tensor guard (dtype, shape, strides), every guard
    on the call's own arguments, the global torch state (grad mode, ...), and every Python number
    or flag the step reads (``training``, the settings): two learners of one process share the
    compiled code of a function and differ in those, so they must stay guarded.
    """
    name = entry.name
    if name == "layout" or name.startswith("layout["):
        return True
    return entry.guard_type in _STRUCTURE_GUARDS and name.startswith(("self", "holder", "G[", "dict(type("))


MATMUL_PRECISIONS = ("float32", "tf32")
"""``algo.matmul_precision``: float32 matrix products in full float32 (the paper), or as TF32 on a
CUDA GPU's tensor cores (inputs rounded to a 10-bit mantissa, sums in float32)."""


AUTO_COMPILE_MIN_UPDATES = 20_000
"""``algo.capture=auto`` compiles on the CPU from this many planned updates on: compiling takes
40-60 s and saves about 6 ms an update at the paper's MuJoCo sizes (docs/RESULTS.md, throughput),
so such a run gets back at least twice what it paid."""


def resolve_capture(capture: str, device: torch.device | str, updates: int | None = None) -> str:
    """The capture mode that ``capture`` means on ``device`` for a run of ``updates`` updates (None:
    unknown); a one-line ValueError if it cannot run.

    ``auto``: ``cudagraph`` on CUDA; on the CPU ``compile`` for runs of at least
    :data:`AUTO_COMPILE_MIN_UPDATES` updates, else ``none``.
    """
    device = torch.device(device)
    check_choice("algo.capture", capture, CAPTURE_MODES)
    if capture == "auto":
        if device.type == "cuda":
            return "cudagraph"
        return "compile" if updates is not None and updates >= AUTO_COMPILE_MIN_UPDATES else "none"
    if capture == "cudagraph" and device.type != "cuda":
        raise ValueError(
            f"algo.capture=cudagraph needs a CUDA device, but the learner is on {device}; "
            "valid here: none | compile (auto picks compile on the CPU for long runs, else none)"
        )
    return capture


def set_matmul_precision(precision: str, device: torch.device | str) -> None:
    """Makes this process's float32 matrix products run as ``precision`` says.

    PyTorch's setting is process-wide, and libraries change it: rl-games' ``Runner`` turns TF32 on
    when it is constructed. The learner sets it once it is built (after any such library), so a
    run's matrix products follow its config whichever runner drives it. A one-line ValueError if
    ``precision`` is unknown, or is ``tf32`` off CUDA.
    """
    device = torch.device(device)
    check_choice("algo.matmul_precision", precision, MATMUL_PRECISIONS)
    if precision == "tf32" and device.type != "cuda":
        raise ValueError(
            f"algo.matmul_precision=tf32 needs a CUDA device (TF32 runs on its tensor cores), but the "
            f"learner is on {device}; valid here: float32"
        )
    # the one call that sets CUDA's and oneDNN's float32 precision together (setting one of them
    # alone leaves torch.get_float32_matmul_precision(), which torch.compile reads, raising)
    torch.set_float32_matmul_precision("high" if precision == "tf32" else "highest")


class Capture:
    """Runs a learner's functions as ``capture`` says on ``device``.

    - ``none``: as they are.
    - ``compile``: :meth:`compile` wraps them in ``torch.compile``; on CUDA the compiled kernels are
      then also recorded as one graph (:attr:`graphed`), since launched one by one they stay
      launch-bound, unless torch.compile's own CUDA-graph mode (``reduce-overhead``) is asked for.
    - ``cudagraph`` (CUDA only): :meth:`replay` records a function once as a CUDA graph and replays
      it after copying fresh inputs into its static ones.

    Args:
        capture: ``auto | none | compile | cudagraph`` (:data:`CAPTURE_MODES`).
        device: where the learner runs.
        compile_mode: ``torch.compile``'s ``mode`` (None: its default).
    """

    def __init__(self, capture: str, device: torch.device | str, compile_mode: str | None = None) -> None:
        self.device = torch.device(device)
        self.mode = resolve_capture(capture, self.device)
        self.compile_mode = compile_mode
        self.graphed = self.device.type == "cuda" and (
            self.mode == "cudagraph" or (self.mode == "compile" and compile_mode != "reduce-overhead")
        )
        """Whether :meth:`replay` records graphs (else callers run their functions directly)."""
        # slot -> (key, graph, static inputs, outputs); the key (e.g. the buffer a graph reads)
        # is held so that the memory the graph reads stays alive
        self._graphs: dict[Hashable, tuple[Any, torch.cuda.CUDAGraph, list[Tensor], Any]] = {}
        if self.mode == "compile":
            from torch._inductor import config as inductor_config

            # Inductor bakes the thread count into its CPU kernels but, left implicit, keeps it out
            # of its on-disk cache key: a kernel cached by a run with another thread count would
            # be reused (and run several times slower; pytorch/pytorch#160812). An explicit setting
            # is part of the key.
            inductor_config.cpp.threads = torch.get_num_threads()
            # Random numbers from aten's generators rather than inductor's own: a compiled
            # function then draws the same samples and dropout masks as an eager one from the
            # same seed (and aten's are the faster ones on the CPU).
            inductor_config.fallback_random = True

    def compile(self, fn: Callable) -> Callable:
        """``fn`` compiled under ``compile`` (static shapes), else ``fn`` itself.

        On the CPU, with torch's default mode, the compiled function checks fewer guards on each
        call (:func:`fixed_structure_guard`): no recorded graph stands between the step and
        Dynamo there, which otherwise checks ~2,000 guards per update and action, 0.4 ms of a
        ~13 ms Hopper step.
        """
        if self.mode != "compile":
            return fn
        if self.compile_mode is None and self.device.type == "cpu" and _GUARD_FILTERS:
            options = {"guard_filter_fn": lambda entries: [not fixed_structure_guard(e) for e in entries]}
            return torch.compile(fn, options=options, dynamic=False)
        return torch.compile(fn, mode=self.compile_mode, dynamic=False)

    def replay(
        self,
        slot: Hashable,
        key: Any,
        fn: Callable[..., Any],
        inputs: Sequence[Tensor] = (),
        *,
        warmup: int = 1,
        state: Sequence[Tensor] = (),
        optimizers: Sequence[torch.optim.Optimizer] = (),
    ) -> Any:
        """``fn(*inputs)`` replayed from the graph recorded in ``slot`` for ``key``.

        The first call for a slot, or a call with another ``key`` than the slot's graph was
        recorded for, records it: ``warmup`` runs on a side stream (lazy initialisations, the
        libraries' kernel choices, optimizer state), then ``state``, the ``optimizers``' state and
        the CUDA random state are put back, and one more run is captured. So the first replay
        takes the step an eager call would have taken. The outputs are the graph's own tensors,
        overwritten by the next replay.
        """
        entry = self._graphs.get(slot)
        if entry is None or entry[0] != key:
            static = [x.clone() for x in inputs]
            graph, outputs = self._record(lambda: fn(*static), warmup, state, optimizers)
            entry = self._graphs[slot] = (key, graph, static, outputs)
        _, graph, static, outputs = entry
        for s, x in zip(static, inputs, strict=True):
            s.copy_(x)
        graph.replay()
        return outputs

    def forget(self, slot: Hashable | None = None) -> None:
        """Drops the graph of ``slot`` (all graphs when None): the next :meth:`replay` records anew."""
        if slot is None:
            self._graphs.clear()
        else:
            self._graphs.pop(slot, None)

    def _record(
        self,
        run: Callable[[], Any],
        warmup: int,
        state: Sequence[Tensor],
        optimizers: Sequence[torch.optim.Optimizer],
    ) -> tuple[torch.cuda.CUDAGraph, Any]:
        device = self.device
        saved = [t.detach().clone() for t in state]
        fresh = [not opt.state for opt in optimizers]
        opt_state = [
            [v for s in opt.state.values() for v in s.values() if torch.is_tensor(v)] for opt in optimizers
        ]
        saved_opt = [[v.clone() for v in vs] for vs in opt_state]
        rng = torch.cuda.get_rng_state(device)
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(warmup):
                run()
        torch.cuda.current_stream(device).wait_stream(side)
        with torch.no_grad():
            for t, s in zip(state, saved, strict=True):
                t.copy_(s)
            for opt, was_fresh, vs, ss in zip(optimizers, fresh, opt_state, saved_opt, strict=True):
                if was_fresh:  # Adam's state at step 0 is zeros
                    for s in opt.state.values():
                        for v in s.values():
                            if torch.is_tensor(v):
                                v.zero_()
                else:
                    for v, s in zip(vs, ss, strict=True):
                        v.copy_(s)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            outputs = run()
        torch.cuda.set_rng_state(rng, device)
        return graph, outputs


# --------------------------------------------------------------- flat parameters
def flatten_parameters(params: list[Tensor]) -> nn.Parameter:
    """Moves ``params`` into one contiguous parameter and makes each a view of it (values kept).

    Modules keep their own parameters (their state dicts and forward passes are unchanged); an
    optimizer, a clip or a Polyak step over the returned tensor acts on all of them at once.
    """
    with torch.no_grad():
        flat = nn.Parameter(torch.cat([p.detach().reshape(-1) for p in params]))
    offset = 0
    for p in params:
        p.data = flat.data[offset : offset + p.numel()].view_as(p)
        offset += p.numel()
    return flat


def bind_flat_grad(flat: nn.Parameter, params: list[Tensor]) -> list[Tensor]:
    """Gives ``flat`` a zero gradient and makes each parameter's gradient a view of it, so that
    backward passes accumulate into it in place; returns the views."""
    flat.grad = torch.zeros_like(flat)
    views, offset = [], 0
    for p in params:
        p.grad = flat.grad[offset : offset + p.numel()].view_as(p)
        views.append(p.grad)
        offset += p.numel()
    return views


def flat_optimizer_state(state: dict, params: list[Tensor]) -> dict:
    """An Adam state dict over the flat parameter; one saved with a parameter per tensor (older
    checkpoints) has its moments concatenated in the parameters' order."""
    ids = state["param_groups"][0]["params"]
    if len(ids) == 1:
        return state
    if len(ids) != len(params):
        raise ValueError(f"the optimizer state holds {len(ids)} parameters, the flow has {len(params)}")
    per = [state["state"].get(i) for i in ids]
    group = {**state["param_groups"][0], "params": [0]}
    if any(s is None for s in per):  # no step taken yet
        return {"state": {}, "param_groups": [group]}
    flat = {
        key: torch.cat([s[key].reshape(-1) for s in per])
        for key in per[0]
        if torch.is_tensor(per[0][key]) and per[0][key].dim() > 0
    }
    flat["step"] = per[0]["step"]
    return {"state": {0: flat}, "param_groups": [group]}


def over_flat_parameters(module: nn.Module, flat: Tensor, loss: Callable[..., Any]) -> Callable[..., Any]:
    """``loss`` (which runs ``module``) as a function that runs it with the module's parameters
    replaced by pieces of ``flat`` (the same values), so that autograd sees one leaf, ``flat``.

    Compiled, its backward then returns one gradient (the pieces' gradients concatenated in one
    kernel) instead of one per parameter tensor that autograd adds into the flat gradient one by one.
    """
    holder = _Holding(module, loss)
    layout = [(name, p.shape, p.numel()) for name, p in module.named_parameters()]

    def run(*args: Any) -> Any:
        chunks = torch.split(flat, [numel for _, _, numel in layout])
        views = {"module." + name: c.view(shape) for (name, shape, _), c in zip(layout, chunks, strict=True)}
        return torch.func.functional_call(holder, views, args)

    return run


class _Holding(nn.Module):
    """``loss(*args)`` as a module holding ``module``, so that ``torch.func.functional_call`` can
    run it with other tensors in place of the module's parameters."""

    def __init__(self, module: nn.Module, loss: Callable[..., Any]) -> None:
        super().__init__()
        self.module = module
        self._loss = [loss]  # in a list: a bound method of the learner is not this module's state

    def forward(self, *args: Any) -> Any:
        return self._loss[0](*args)
