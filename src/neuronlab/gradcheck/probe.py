"""What a custom Function's backward returned before torch's engine tidied it up.

The engine silently sums an unreduced broadcast dimension and casts a gradient of the wrong
dtype, so the final gradient can look right while the backward is not. :class:`BackwardProbe`
wraps each custom Function's node in a graph: it compares the raw output of ``backward`` with
what the engine passes on (shape, dtype, device), and sees a backward that writes into its
``grad_output``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor

from .grading import same_values


class BackwardProbe:
    """Wraps each custom Function's backward node in a graph to see what it returned *before*
    the engine reduced/cast it, and whether it wrote into its grad_output.

    Args:
        leaves: ``id(leaf tensor) -> its label`` (``"input 0 (x)"``), to pin a problem on the
            input whose gradient it is.
    """

    def __init__(self, leaves: dict[int, str]) -> None:
        self.leaves = leaves
        self.notes: list[tuple[str | None, str]] = []  # (label of the input or None, msg)
        self.dtypes: dict[tuple[str | None, str, int, Any], list[Any]] = {}  # → inputs' dtypes
        self.current: Any = None  # the node whose backward ran last

    @property
    def problems(self) -> list[tuple[str | None, str]]:
        """Every problem seen, ``(label or None, message)``; a gradient of the wrong dtype is
        one line however many runs (float64, bfloat16, …) returned it."""
        lines = list(self.notes)
        for (label, node, k, got), wants in self.dtypes.items():
            inputs = " and ".join(str(w) for w in wants)
            lines.append((label, f"{node} returned gradient {k} as {got} for a {inputs} "
                                 "input: a gradient must have its input's dtype"))
        return lines

    def install(self, outputs: Sequence[Tensor]) -> None:
        """Wrap every custom Function node in the graph behind ``outputs``."""
        stack, seen = [o.grad_fn for o in outputs], set()
        while stack:
            node = stack.pop()
            if node is not None and id(node) not in seen:
                seen.add(id(node))
                if hasattr(node, "_forward_cls"):  # a Python custom Function's node (its ctx)
                    self._wrap(node)
                stack.extend(n for n, _ in node.next_functions)

    def label(self, node: Any, k: int) -> str | None:
        """The label of the leaf behind ``node``'s input ``k`` (None: not a checked input)."""
        nxt = node.next_functions[k][0] if k < len(node.next_functions) else None
        return self.leaves.get(id(getattr(nxt, "variable", None)))

    def note(self, label: str | None, msg: str) -> None:
        """Record a problem once, pinned on an input's label (or on none)."""
        if (label, msg) not in self.notes:
            self.notes.append((label, msg))

    def _wrap(self, node: Any) -> None:
        original, raw = node.apply, []

        def apply(*grads):  # the engine calls node.apply(*grad_outputs)
            self.current = node
            before = [g.clone() if isinstance(g, Tensor) else g for g in grads]
            result = original(*grads)
            for k, (g, b) in enumerate(zip(grads, before, strict=True)):
                if isinstance(g, Tensor) and not same_values(g, b):
                    self.note(None, f"{node.name()} modified its grad_output {k} in place")
            raw[:] = [r for r in (result if isinstance(result, tuple) else (result,))
                      if r is not None]
            return result

        def compare(grad_inputs, grad_outputs):  # grad_inputs: after the engine's sum_to/cast
            given = [(k, g) for k, g in enumerate(grad_inputs) if g is not None]
            for (k, g), r in zip(given, raw, strict=False):
                if r.dtype != g.dtype:
                    wants = self.dtypes.setdefault((self.label(node, k), node.name(), k,
                                                    r.dtype), [])
                    wants += [] if g.dtype in wants else [g.dtype]
                for what, got, want in (("shape", tuple(r.shape), tuple(g.shape)),
                                        ("device", r.device, g.device)):
                    if got != want:
                        hint = " (a broadcast dimension not reduced?)" if what == "shape" else ""
                        self.note(self.label(node, k), f"{node.name()} returned gradient {k} "
                                  f"with {what} {got}, expected {want}{hint}")

        node.apply = apply
        node.register_hook(compare)
