from typing import Iterable, Optional

class ExecSpawnError(Exception): ...

class ExecWaitError(Exception): ...

class ExecOutcome:
    stdout: bytes
    stderr: bytes
    code: Optional[int]
    success: Optional[bool]
    signal: Optional[int]
    timed_out: bool
    killed: bool
    status_lost: bool

class ExecRun:
    pid: int
    def __init__(self, program: bytes, args: Iterable[bytes], cwd: Optional[bytes],
                 env: Optional[Iterable[bytes]], stdin: Optional[bytes], timeout_ms: int,
                 grace_ms: int) -> None: ...
    def finish(self) -> ExecOutcome: ...
    def kill(self) -> bool: ...
    def close(self) -> None: ...
