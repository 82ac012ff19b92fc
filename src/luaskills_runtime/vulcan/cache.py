"""`vulcan.cache`: one process-wide store shared by every VM of every engine (SPEC 4).

1000 entries at most (the oldest is evicted first), default and maximum TTL 1800 s, entries scoped
by the calling tool/skill and, for lease code, the lease's SID, so one skill or lease cannot read
or delete another's ids (it gets the not-found answer); ids carry a random part.  Values are stored as JSON data,
so they can cross VMs.
"""
from __future__ import annotations

import itertools
import secrets
import threading
import time
from collections import OrderedDict

from luaskills_runtime._ref.lua_args import optional_u64_arg, require_string
from luaskills_runtime.errors import LuaSkillsError

MAX_ENTRIES = 1000
DEFAULT_TTL_SEC = 1800
MAX_TTL_SEC = 1800


class CacheStore:
    def __init__(self, max_entries: int = MAX_ENTRIES, clock=time.monotonic):
        self._entries: "OrderedDict[str, tuple]" = OrderedDict()  # id -> (scope, expires, value)
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._max = max_entries
        self._clock = clock

    def put(self, scope: tuple, value, ttl_sec: int | None) -> str:
        ttl = DEFAULT_TTL_SEC if not ttl_sec else min(ttl_sec, MAX_TTL_SEC)
        with self._lock:
            self._purge_expired()
            # The counter keeps ids unique; the random part makes them unguessable (an id is
            # not a capability by itself -- the scope is checked too -- but sequential ids
            # told one scope how busy the others were).
            entry_id = (f"cache_{int(time.time() * 1000)}_{next(self._ids)}_"
                        f"{secrets.token_hex(12)}")
            self._entries[entry_id] = (scope, self._clock() + ttl, value)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
            return entry_id

    def get(self, scope: tuple, entry_id: str):
        with self._lock:
            entry = self._entries.get(entry_id)
            if entry is None or entry[0] != scope:
                return None
            if entry[1] <= self._clock():
                del self._entries[entry_id]
                return None
            return entry[2]

    def delete(self, scope: tuple, entry_id: str) -> bool:
        with self._lock:
            entry = self._entries.get(entry_id)
            if entry is None or entry[0] != scope:
                return False
            del self._entries[entry_id]
            return entry[1] > self._clock()

    def __len__(self):
        with self._lock:
            self._purge_expired()
            return len(self._entries)

    def _purge_expired(self):
        now = self._clock()
        expired = [key for key, entry in self._entries.items() if entry[1] <= now]
        for key in expired:
            del self._entries[key]


STORE = CacheStore()


def install(vm, vulcan) -> None:
    bridge = vm.bridge

    def scope():
        # tool/skill name of the request, plus the lease's SID for lease code
        internal = vm.internal_fields()
        return (internal.get("tool_name"), internal.get("skill_name"), vm.lease_sid)

    def put(value=None, ttl_sec=None):
        ttl = optional_u64_arg(ttl_sec, "vulcan.cache.put", "ttl_sec")
        if value is None:
            raise LuaSkillsError("vulcan.cache.put: value must not be nil")
        return STORE.put(scope(), bridge.to_json(value), ttl).encode()

    def get(entry_id=None):
        key = require_string(entry_id, "vulcan.cache.get", "id")
        value = STORE.get(scope(), key)
        return None if value is None else bridge.to_lua(value)

    def delete(entry_id=None):
        key = require_string(entry_id, "vulcan.cache.delete", "id")
        return STORE.delete(scope(), key)

    vulcan[b"cache"] = bridge.table(
        put=bridge.function("vulcan.cache.put", put),
        get=bridge.function("vulcan.cache.get", get),
        delete=bridge.function("vulcan.cache.delete", delete),
    )
