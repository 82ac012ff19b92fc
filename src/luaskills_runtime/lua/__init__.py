"""The Lua layer: LuaVM, its pool, JSON<->Lua, the callback bridge, the timeout guard, the cwd lock."""
