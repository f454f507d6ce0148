"""Part-world generation speed at the default 224 px size, on the CPU.

    python benchmarks/parts_generation.py --out RESULT.json [--quick]

Measures ``parts.images_per_s`` (items rendered with all their masks, one process) and
``parts.images_per_s_with_masks_written`` (``write_parts_tree``: rendering plus the RGB and
16-bit mask PNGs).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from _common import parse_args, write_result

from sparsex.partworld import PartWorld, PartWorldConfig, write_parts_tree


def main() -> None:
    args = parse_args(__doc__)
    n = 50 if args.quick else 500
    config = PartWorldConfig(train_size=n, val_size=0, test_size=0)
    dataset = PartWorld("train", config)
    dataset[0]  # warm-up (imports, allocator)
    start = time.perf_counter()
    for i in range(n):
        dataset[i]
    render_rate = n / (time.perf_counter() - start)

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        write_parts_tree(Path(tmp) / "parts", config, splits=("train",), progress=False)
        write_rate = n / (time.perf_counter() - start)

    write_result(args.out, args.quick, {
        "parts.image_size": config.image_size,
        "parts.images": n,
        "parts.images_per_s": round(render_rate, 1),
        "parts.images_per_s_with_masks_written": round(write_rate, 1),
    })


if __name__ == "__main__":
    main()
