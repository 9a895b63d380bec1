"""How a run's steps split into records and compiled chunks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from decjax._validation import check_int
from decjax.simulate._loop import divisor_near


@dataclass(frozen=True)
class Schedule:
    """How ``steps`` split into records (``eval_every`` steps) and compiled chunks; the
    ``remainder`` steps past the last whole record make one shorter, last record."""

    num_chunks: int
    blocks_per_chunk: int
    steps_per_chunk: int
    remainder: int = 0

    @classmethod
    def of(cls, steps: int, eval_every: int, chunks: int | None) -> Schedule:
        num_blocks, remainder = divmod(steps, eval_every)
        if num_blocks == 0:  # one record, after all the steps
            return cls(0, 1, eval_every, remainder)
        if chunks is None:
            blocks_per_chunk = num_blocks // divisor_near(num_blocks, 20)
        else:
            chunks = check_int("chunks", chunks, minimum=1)
            if num_blocks % chunks:
                raise ValueError(
                    f"chunks ({chunks}) must divide the number of records ({num_blocks} = "
                    f"steps / eval_every)"
                )
            blocks_per_chunk = num_blocks // chunks
        return cls(
            num_blocks // blocks_per_chunk,
            blocks_per_chunk,
            blocks_per_chunk * eval_every,
            remainder,
        )

    def record_steps(self) -> np.ndarray:
        """The step of every record: each whole interval's end, then the run's last step."""
        every = self.steps_per_chunk // self.blocks_per_chunk
        whole = every * np.arange(1, self.num_chunks * self.blocks_per_chunk + 1)
        if not self.remainder:
            return whole
        return np.append(whole, (whole[-1] if len(whole) else 0) + self.remainder)
