//! Harness shared by the fuzz targets: the capped allocator and the entry points that
//! run a `ringfs_common::fuzzing` oracle, or a structure-aware builder feeding one, with
//! the target's allocation limit in force.

pub mod capped_alloc;
pub mod namenode;
pub mod structured;

use ringfs_common::fuzzing;

#[global_allocator]
static ALLOCATOR: capped_alloc::CappedAllocator = capped_alloc::CappedAllocator;

/// Runs the byte-level oracle `name` on `data` under its allocation limit.
pub fn run(name: &str, data: &[u8]) {
    let target = fuzzing::target(name).unwrap_or_else(|| panic!("no oracle named {name}"));
    let limit = fuzzing::allocation_limit(target.allocation_cap, data.len());
    capped_alloc::with_allocation_limit(limit, || (target.oracle)(data));
}

/// Runs the structure-aware target `name`; it applies the allocation limits itself,
/// around the oracles only, since it builds large valid inputs first.
pub fn run_structured(name: &str, data: &[u8]) {
    let target = structured::target(name).unwrap_or_else(|| panic!("no structured target named {name}"));
    (target.run)(data);
}

/// Runs the namenode target `name` (edit log or image decoders); it applies its own
/// allocation limits.
pub fn run_namenode(name: &str, data: &[u8]) {
    let target = namenode::target(name).unwrap_or_else(|| panic!("no namenode target named {name}"));
    (target.run)(data);
}
