"""Host options: everything a host can configure on a LuaEngine."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Tuple

PoolConfig = Tuple[int, int, int]

# Policy profiles (luaskills_runtime.lua.policy; README "Safety").
DEFAULT, TRUSTED, UNTRUSTED = "default", "trusted", "untrusted"
POLICIES = (DEFAULT, TRUSTED, UNTRUSTED)
# The memory cap of `untrusted` VMs when the host sets none.
UNTRUSTED_MEMORY_CAP = 256 * 1024 * 1024


def check_policy(name: Any, what: str = "policy") -> str:
    if not isinstance(name, str) or name not in POLICIES:
        raise ValueError(f"{what} must be one of default, trusted, untrusted; got {name!r}")
    return name


def _names(values: Any, what: str) -> Tuple[str, ...]:
    """A tuple of strings; a lone string is one name, not its characters."""
    if isinstance(values, str):
        return (values,)
    try:
        return tuple(str(value) for value in values)
    except TypeError:
        raise TypeError(f"{what} must be a sequence of strings, got {values!r}") from None


def memory_cap_for(options: "HostOptions", policy: str) -> Optional[int]:
    """The per-VM memory cap under `policy`: the host's, else the untrusted default."""
    if options.max_memory_bytes:
        return options.max_memory_bytes
    return UNTRUSTED_MEMORY_CAP if policy == UNTRUSTED else None


def normalize_pool_config(config: PoolConfig) -> PoolConfig:
    """SPEC 5: min >= 1, max >= min, idle ttl >= 1 second."""
    try:
        low, high, ttl = (int(v) for v in config)
    except (TypeError, ValueError):
        raise TypeError(f"pool config must be (min, max, idle_ttl_s), got {config!r}") from None
    low = max(low, 1)
    return (low, max(high, low), max(ttl, 1))


@dataclass(frozen=True)
class HostOptions:
    """Configuration of a :class:`~luaskills_runtime.LuaEngine`.

    default_text_encoding: label used when a call names no encoding (blank = platform default).
    enable_managed_io_compat: runlua and lease VMs get the managed ``io`` library.
    system_lua_lib_dir: folder of the ``system_lua_lib`` lease profile (created when used).
    main_pool / runlua_pool: ``(min, max, idle_ttl_s)`` of the VM pools, normalised per SPEC 5.
    max_memory_bytes: per-VM memory cap for runlua and lease VMs (None = no cap).
    temp_dir / resources_dir: what ``vulcan.runtime.temp_dir`` / ``resources_dir`` report.
    policy: "default", "trusted" or "untrusted" (README "Safety"); leases may pick their own.
    fs_roots: extra folders `untrusted` code may reach (besides the lease cwd / workspace root,
        the runlua file's folder and the temp dir).
    env_allow: the environment variable names `untrusted` code may read with os.getenv.
    output: where `print` / `io.write` / `io.stdout` / `io.stderr` of run_lua and lease code go:
        None (Python's current sys.stdout / sys.stderr, looked up at each write), a callable
        ``(stream, text)`` with stream "stdout" or "stderr", a logging.Logger (INFO / WARNING),
        or a file-like object with ``write`` (both streams).
    """

    default_text_encoding: Optional[str] = None
    enable_managed_io_compat: bool = True
    system_lua_lib_dir: Optional[str] = None
    main_pool: PoolConfig = (1, 4, 60)
    runlua_pool: PoolConfig = (1, 4, 60)
    max_memory_bytes: Optional[int] = None
    temp_dir: Optional[str] = None
    resources_dir: Optional[str] = None
    policy: str = DEFAULT
    fs_roots: Tuple[str, ...] = ()
    env_allow: Tuple[str, ...] = ()
    output: Any = field(default=None, compare=False)
    extra: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "main_pool", normalize_pool_config(self.main_pool))
        object.__setattr__(self, "runlua_pool", normalize_pool_config(self.runlua_pool))
        check_policy(self.policy)
        object.__setattr__(self, "fs_roots", _names(self.fs_roots, "fs_roots"))
        object.__setattr__(self, "env_allow", _names(self.env_allow, "env_allow"))
        if self.max_memory_bytes is not None:
            if isinstance(self.max_memory_bytes, bool) or not isinstance(self.max_memory_bytes, int) \
                    or self.max_memory_bytes <= 0:
                raise ValueError(
                    f"max_memory_bytes must be a positive integer, got {self.max_memory_bytes!r}")
