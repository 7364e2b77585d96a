"""The Trainer's sharding: FSDP2 over the student under several processes, and the whole state gathered back.

With ``TrainOptions.sharding = "fsdp"`` and several processes each child of the student that holds trained weights
is one FSDP unit and the distiller is the root unit; the frozen teacher is not a submodule and stays whole on every
process (``docs/scaling.md``).
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import torch
from torch import Tensor, nn

from distillkit.core.distiller import Distiller
from distillkit.core.taps import FeatureTaps

__all__ = ["Sharding", "shard_units"]


class Sharding:
    """The Trainer's sharding (a part of :class:`~distillkit.Trainer`; reads its ``distiller``, ``accelerator``,
    ``model`` and ``optimizer``)."""

    distiller: Distiller
    accelerator: Any
    model: Any
    optimizer: Any
    log: logging.Logger
    _sharded: bool = False

    @property
    def is_main_process(self) -> bool:
        return self.accelerator is None or self.accelerator.is_main_process

    def _shard(self) -> None:
        """FSDP2 over the student: each child that holds trained weights is one unit (its weights gathered for its
        own forward and backward only), and the distiller is the root unit (the student's other weights, adapters,
        learned loss parameters). The teacher is not a submodule: it stays whole on every process."""
        # (grad_accum_steps > 1, compile and mixed precision with sharding are refused by TrainOptions)
        if getattr(self.distiller, "peers", None):
            raise ValueError("sharding='fsdp' with mutual learning (several students) is not supported yet")
        from torch.distributed.fsdp import fully_shard

        # An unsharded twin of the student with its weights on the meta device (no memory): unsharded_student()
        # fills it with the trained weights. FSDP changes the modules it shards in place and cannot copy them.
        self._student_twin = _meta_twin(self.distiller.student, getattr(self.distiller, "_student_taps", None))

        for unit in shard_units(self.distiller.student):
            fully_shard(unit)
        fully_shard(self.distiller)
        self.log.info("sharding: the student's weights are split across %d processes (FSDP2)",
                      self.accelerator.num_processes)

    def _full_state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """The model's and the optimizer's whole state on the main process (empty dicts elsewhere); every process
        must call it when sharded."""
        if self._sharded:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

            return get_state_dict(self.distiller, self.optimizer.optimizer,
                                  options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if self.accelerator is None:  # not set up yet: the distiller as it is, no optimizer
            return self.distiller.state_dict(), {}
        if not self.is_main_process:
            return {}, {}
        return self.accelerator.unwrap_model(self.model).state_dict(), self.optimizer.optimizer.state_dict()

    def unsharded_student(self) -> nn.Module:
        """The trained student as an ordinary module on every process.

        Without sharding, the distiller's student itself. With ``sharding='fsdp'`` on several processes (every
        process must call it), a new module of the student's class holding the whole trained weights, on this
        process's device: use it to evaluate, measure or save the student in one process. The sharded student
        stays as it was (its forward is a collective of every process); the distiller's feature taps are not on
        the new module.
        """
        if not self._sharded:
            return self.distiller.student
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        whole = get_model_state_dict(self.distiller, options=StateDictOptions(full_state_dict=True))
        student = {k.removeprefix("student."): v.detach().clone() for k, v in whole.items()
                   if k.startswith("student.")}
        twin = copy.deepcopy(self._student_twin)  # each call gives its own module
        twin.load_state_dict(student, assign=True)  # the meta weights replaced by the gathered ones
        twin.train(self.distiller.student.training)
        return twin

    def consolidated_state_dict(self) -> dict[str, Tensor]:
        """The distiller's whole state (student, adapters) as ordinary tensors on the main process, also when the
        student is sharded (``sharding='fsdp'``: every process must call it; the others get ``{}``). Load its
        ``student.*`` entries into an unsharded copy of the student to use the trained model elsewhere."""
        return self._full_state()[0]


def shard_units(model: nn.Module) -> list[nn.Module]:
    """The submodules FSDP shards one by one: each child holding trained weights; but a container without a
    forward of its own (``ModuleList``, ``ModuleDict``: a language model's stack of decoder blocks) is replaced by
    its children, and a child holding a weight tied to another module (a language model's input embedding and
    output head) is opened up so that its tied part stays with the root unit, whose gathering covers both uses."""
    counts: dict[int, int] = {}
    for _, parameter in model.named_parameters(remove_duplicate=False):
        counts[id(parameter)] = counts.get(id(parameter), 0) + 1
    tied = {key for key, count in counts.items() if count > 1}

    def units(module: nn.Module) -> list[nn.Module]:
        found: list[nn.Module] = []
        for child in module.children():
            trained = [p for p in child.parameters() if p.requires_grad]
            if not trained:
                continue
            if isinstance(child, (nn.ModuleList, nn.ModuleDict)) or any(id(p) in tied for p in trained):
                found += units(child)
            else:
                found.append(child)
        return found

    return units(model)


def _meta_twin(module: nn.Module, taps: FeatureTaps | None) -> nn.Module:
    """A copy of ``module`` whose parameters are on the meta device (they take no memory; buffers are copied),
    without the hooks that ``taps`` put on it."""
    memo: dict[int, Any] = {id(p): nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
                            for p in module.parameters()}
    twin = copy.deepcopy(module, memo)
    ids = [handle.id for handle in (taps._handles if taps is not None else [])]
    for part in twin.modules():
        for hooks in (part._forward_hooks, part._forward_hooks_with_kwargs, part._forward_hooks_always_called):
            for hook_id in ids:
                hooks.pop(hook_id, None)
    return twin
