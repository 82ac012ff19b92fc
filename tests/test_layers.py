"""The package's architecture: layers import only downward, no import cycles, and the process
core loads without Lua.

Every module's imports are read with `ast` (those inside functions too, so a late import cannot
hide a cycle).  To move a concept to another layer, edit LAYERS.
"""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

import luaskills_runtime

PACKAGE = "luaskills_runtime"
ROOT = Path(luaskills_runtime.__file__).resolve().parent   # the package under test

# Bottom-up.  A module may import its own concept and any concept of a lower layer; never a
# higher layer, nor another concept of its own layer.  A concept is the first name below the
# package: a folder (`lua`) or a top-level module (`engine`).
LAYERS = (
    ("errors", "options", "_version", "types"),   # plain data every layer uses (types: TypedDicts)
    ("_ref",),                            # reference wording
    ("lua_engine",),                      # the lupa engine module of the process (LuaJIT or 5.1)
    ("text", "_native"),                  # encodings; Cython bindings over the C core
    ("process",),                         # child processes (no Lua)
    ("lua",),                             # LuaVM, pool, JSON<->Lua, bridge, guard, cwd lock
    ("vulcan",),                          # the namespace Lua code sees
    ("runlua", "leases"),                 # the two services built on VMs
    ("lease_handle",),                    # Lease handles over dict lease calls (engine returns them)
    ("engine",),                          # wires the services
    ("ffi",),                             # the C ABI surface (its library locator is used by cli)
    ("aio",),                             # the async API
    ("mcp",),                             # the MCP server (on aio; the CLI's `mcp` subcommand)
    ("cli",),                             # command line (ffi-path / ffi-install, mcp)
    ("__main__",),                        # `python -m luaskills_runtime`
    ("__init__",),                        # the package facade (loads LuaEngine lazily)
)
LAYER_OF = {concept: index for index, names in enumerate(LAYERS) for concept in names}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def all_modules():
    return {module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


def imported_modules(path: Path, modules, own: str = "") -> set:
    """The package modules `path` (module `own`) imports; a `from package.x import name` that
    names a submodule counts as importing that submodule."""
    tree = ast.parse(path.read_text("utf-8"), str(path))
    own = own or module_name(path)
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = own.split(".")
                if not is_package:
                    anchor = anchor[:-1]
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [(base, alias.name) for alias in node.names]
        else:
            continue
        for base, name in targets:
            if not (base == PACKAGE or base.startswith(PACKAGE + ".")):
                continue
            if name is not None and f"{base}.{name}" in modules:
                found.add(f"{base}.{name}")
            elif base in modules:
                found.add(base)
    # Importing a.b.c first runs the package a.b, unless that is the importer's own package
    # (already running when its modules are): count those package imports too.
    own_packages = {own.rsplit(".", depth)[0] for depth in range(own.count(".") + 1)}
    for target in list(found):
        parts = target.split(".")
        for end in range(2, len(parts)):
            package = ".".join(parts[:end])
            if package in modules and package not in own_packages:
                found.add(package)
    found.discard(own)
    return found


def import_graph(modules=None):
    modules = modules if modules is not None else all_modules()
    return {name: imported_modules(path, modules) for name, path in modules.items()}


def concept_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def import_cycles(graph) -> list:
    """Strongly connected groups of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []
    counter = [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def test_every_concept_has_a_layer():
    concepts = {concept_of(module) for module in all_modules()}
    assert concepts - set(LAYER_OF) == set(), "add the new concept to LAYERS"


def test_no_import_cycles():
    assert import_cycles(import_graph()) == []


def test_imports_point_only_downward():
    wrong = []
    for module, targets in import_graph().items():
        concept = concept_of(module)
        for target in targets:
            other = concept_of(target)
            if other == concept:
                continue
            if LAYER_OF[other] >= LAYER_OF[concept]:
                wrong.append(f"{module} -> {target}")
    assert wrong == []


def test_the_checker_sees_a_cycle_and_an_upward_import(tmp_path):
    # The checks above must be able to fail: a hand-made graph with both faults.
    graph = {"p.a": {"p.b"}, "p.b": {"p.c"}, "p.c": {"p.a"}, "p.d": set()}
    assert import_cycles(graph) == [["p.a", "p.b", "p.c"]]
    source = tmp_path / "m.py"
    source.write_text("def late():\n    from luaskills_runtime.engine import LuaEngine\n")
    modules = dict(all_modules())
    found = imported_modules(source, modules, "luaskills_runtime.lua.fake")
    assert found == {"luaskills_runtime.engine"}


def test_the_process_core_imports_no_lua():
    probe = ("import sys\n"
             "import luaskills_runtime.process as process\n"
             "assert process.__all__ == ['ProcessSession', 'exec_command'], process.__all__\n"
             "assert callable(process.exec_command) and isinstance(process.ProcessSession, type)\n"
             "print(sorted(name for name in sys.modules\n"
             "             if name.split('.')[0] in ('lupa', 'anyio')))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60, env=_env())
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_engine_still_loads_lua():
    # the positive control of the test above: the same probe does see lupa after LuaEngine
    probe = ("import sys\nfrom luaskills_runtime import LuaEngine\n"
             "print('lupa' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60, env=_env())
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"


def test_the_async_surface_loads_anyio():
    # the positive control for anyio: only luaskills_runtime.aio brings it in
    probe = "import sys\nimport luaskills_runtime.aio\nprint('anyio' in sys.modules)\n"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60, env=_env())
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"


def _env():
    from _process_support import child_env
    return child_env()


@pytest.mark.parametrize("public", ["LuaEngine", "HostOptions", "LuaSkillsError", "engine_info",
                                    "Lease", "LeaseError"])
def test_public_api_stays(public):
    import luaskills_runtime
    assert public in luaskills_runtime.__all__
    assert getattr(luaskills_runtime, public).__name__ == public
