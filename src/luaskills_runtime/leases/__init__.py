"""Runtime leases (SPEC 9): requests, the lease model and manager with its sweeper, lease VMs."""
from luaskills_runtime.leases.manager import PUBLIC, SYSTEM, RuntimeLeases, dump_payload

__all__ = ["PUBLIC", "SYSTEM", "RuntimeLeases", "dump_payload"]
