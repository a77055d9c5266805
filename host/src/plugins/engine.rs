//! The one wasmtime [`Engine`] all plugins share, and its epoch clock.
//!
//! - Pooling allocator: instance slots are reserved once, so instantiating (or recycling)
//!   a plugin costs microseconds and never maps fresh memory on the request path.
//! - Epoch interruption with a 1 ms tick: deadlines are set per call in milliseconds.
//! - Fuel is enabled engine-wide (it is an engine property) and set per call: plugins
//!   without a `fuel` budget get an unlimited amount, at a few percent of call cost.
//! - Compiled artifacts are cached on disk by wasmtime's cache, keyed by a hash of the
//!   component bytes and the engine's configuration: a Python component compiles once
//!   (~8 s) and later loads in milliseconds, across restarts.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{
    Cache, CacheConfig, Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig,
};

use super::Error;

/// One epoch tick. Deadlines are whole ticks, so a 5 ms deadline fires after 4-5 ms.
pub const TICK: Duration = Duration::from_millis(1);

/// The largest memory any plugin may be given (matches `spec::MAX_MEMORY_MB`); the pool
/// reserves (virtual, not resident) address space for it in every memory slot.
const MAX_MEMORY_BYTES: usize = 512 << 20;

/// Build the engine, with the compiled-artifact cache in `cache_dir` when given.
pub fn build(cache_dir: Option<&Path>) -> Result<Engine, Error> {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.consume_fuel(true);
    config.wasm_component_model(true);

    let mut pool = PoolingAllocationConfig::new();
    // Python and JavaScript components are made of a dozen core modules, each with its
    // own tables; the defaults (sized for single-module guests) are too small for them.
    pool.total_component_instances(256);
    pool.total_core_instances(2048);
    pool.total_memories(256);
    pool.total_tables(2048);
    pool.max_memories_per_component(16);
    pool.max_tables_per_component(64);
    pool.max_core_instances_per_component(64);
    pool.max_memory_size(MAX_MEMORY_BYTES);
    pool.table_elements(100_000);
    pool.max_core_instance_size(4 << 20);
    pool.max_component_instance_size(1 << 20);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config.memory_reservation(MAX_MEMORY_BYTES as u64);

    if let Some(dir) = cache_dir {
        let mut cache_config = CacheConfig::new();
        cache_config.with_directory(dir);
        let cache = Cache::new(cache_config).map_err(|source| Error::Engine {
            source: source.into_boxed_dyn_error(),
        })?;
        config.cache(Some(cache));
    }
    Engine::new(&config).map_err(|source| Error::Engine {
        source: source.into_boxed_dyn_error(),
    })
}

/// Advances the engine's epoch every [`TICK`] until dropped.
#[derive(Debug)]
pub struct EpochClock {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochClock {
    pub fn start(engine: &Engine) -> Result<EpochClock, Error> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("plugin-epoch".into())
            .spawn({
                let engine = engine.weak();
                let stop = stop.clone();
                move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(TICK);
                        match engine.upgrade() {
                            Some(engine) => engine.increment_epoch(),
                            None => break,
                        }
                    }
                }
            })
            .map_err(|source| Error::Thread { source })?;
        Ok(EpochClock {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EpochClock {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
