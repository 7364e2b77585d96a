"""The teacher pass of a teacher-output cache, run as a subprocess by test_sharded_cache.py (one process or under
torchrun): writes the cache (main process) and how many samples each process ran the teacher on.

Usage: python cache_script.py OUT_DIR [--storage memory|disk]
"""

import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from distillkit import Distiller  # noqa: E402
from distillkit.training.teacher_cache import TeacherCache  # noqa: E402
from tests.conftest import make_blobs, make_mlp  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--storage", default="memory")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from accelerate import PartialState

    state = PartialState(cpu=True)
    torch.manual_seed(0)
    teacher, student = make_mlp(hidden=64), make_mlp()
    distiller = Distiller(teacher, student, feature_pairs={"1": "1"})
    data = make_blobs(n=203)  # not a multiple of the batch size or of the number of processes
    distiller.setup(data.get_batch(list(range(4))))
    seen = []
    teacher_outputs = distiller.teacher_outputs

    def counting(batch):
        seen.append(len(batch["index"]))
        return teacher_outputs(batch)

    distiller.teacher_outputs = counting
    cache = TeacherCache.build(distiller, data, batch_size=32, storage=args.storage, directory=out / "cache",
                               processes=state)
    arrays = {k: torch.as_tensor(v).clone() for k, v in cache.arrays.items()}
    save_file(arrays, str(out / f"cache-{state.process_index}.safetensors"))
    (out / f"seen-{state.process_index}.json").write_text(json.dumps({"samples": sum(seen), "world": state.num_processes,
                                                                      "fingerprint": cache.fingerprint}))
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
