from typing import Iterable, List, Optional

from typing_extensions import disjoint_base

class ExecSpawnError(Exception): ...
class ExecWaitError(Exception): ...

class ExecOutcome:
    stdout: bytes
    stderr: bytes
    code: Optional[int]
    success: bool
    signal: Optional[int]
    timed_out: bool
    killed: bool
    status_lost: bool

@disjoint_base
class ExecRun:
    @property
    def pid(self) -> int: ...
    def __new__(cls, program: bytes, args: Iterable[bytes], cwd: Optional[bytes],
                env: Optional[List[bytes]], stdin: Optional[bytes], timeout_ms: int,
                grace_ms: int) -> ExecRun: ...
    def finish(self) -> ExecOutcome: ...
    def kill(self) -> bool: ...
    def close(self) -> None: ...
