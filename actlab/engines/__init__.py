"""Training engines. Both take the same run specs and return the same results (see ``common``):

- ``loop``: one ``nn.Module`` and one ``torch.optim.Adam`` per run, the articles' loop: the reference.
- ``batched``: every run of a chunk stacked into one computation; same numbers, far less overhead.
"""

from actlab.engines.common import ENGINES, RunResult, RunSpec, train

__all__ = ["ENGINES", "RunResult", "RunSpec", "train"]
