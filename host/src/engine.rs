//! The wasmtime engine and object classes (compiled components).
//!
//! One [`Engine`] per host: component model, pooling allocator sized for the live-instance cap,
//! epoch interruption driven by an [`EpochTicker`] thread. Each class is compiled once, cached
//! on disk as a precompiled artefact keyed by the component's SHA-256 and the engine's
//! compatibility hash, and kept as an `ObjectPre` (a linked `InstancePre`), so activating an
//! object is only instantiation.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::bindings::{Object, ObjectPre};
use crate::object::ObjectState;

/// How often the epoch advances; the CPU limit is checked at this granularity.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Engine-wide settings.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Instances that may be live at once (sizes the pooling allocator).
    pub max_instances: u32,
    /// Largest linear memory of an instance, in bytes.
    pub memory_bytes: usize,
    /// Fill the guest's function tables and copy its memory images when an instance starts,
    /// rather than on first use (see [`StartSizes`]).
    pub eager_init: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_instances: 1000,
            memory_bytes: 128 * 1024 * 1024,
            eager_init: false,
        }
    }
}

/// Why a component could not be loaded as an object class.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} is not a WebAssembly file (it does not start with the \\0asm magic bytes)")]
    NotWasm(PathBuf),
    #[error(
        "{0} is a core WebAssembly module, not a component. Build for wasm32-wasip2 \
         (cargo build --target wasm32-wasip2), or wrap it with `wasm-tools component new`"
    )]
    CoreModule(PathBuf),
    #[error("{path} is not a valid component: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error(
        "{path} does not fit the dohost:object@0.1.0 world: {message}\n\
         (an object imports only dohost:object interfaces, WASI 0.2 and wasi:http, and exports \
         dohost:object/handler and dohost:object/alarm-handler)"
    )]
    Incompatible { path: PathBuf, message: String },
    #[error("cannot set up the engine: {0}")]
    Engine(String),
}

/// Builds the host's engine.
pub fn build_engine(config: &EngineConfig) -> Result<Engine, LoadError> {
    let mut pool = PoolingAllocationConfig::new();
    // Headroom over the live-object cap: an evicted object's instance is freed by its actor
    // shortly after the eviction, while the object that replaces it may already be starting.
    let cap = config.max_instances.max(1);
    let n = cap.saturating_add(cap / 8).saturating_add(16);
    // A component is one component instance but several core instances (the guest module and
    // the small adapter and shim modules its toolchain adds: a Rust component has about 4, a
    // componentize-py one about 14), one or two memories and a few tables. Core instance and
    // table slots are only counters, so they are generous; memory slots reserve address space
    // (not memory), two per instance.
    pool.total_component_instances(n)
        .total_core_instances(n.saturating_mul(32))
        .total_memories(n.saturating_mul(2))
        .total_tables(n.saturating_mul(32))
        .total_stacks(n)
        .max_memories_per_module(1)
        .max_tables_per_module(4)
        .table_elements(100_000)
        .max_component_instance_size(4 << 20)
        .max_core_instance_size(4 << 20)
        .max_memory_size(config.memory_bytes);
    let mut wasm = Config::new();
    wasm.wasm_component_model(true)
        .epoch_interruption(true)
        .table_lazy_init(!config.eager_init)
        .memory_init_cow(!config.eager_init)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&wasm).map_err(|e| LoadError::Engine(format!("{e:#}")))
}

/// Largest number of table entries (all of a component's core modules together), and of
/// bytes of memory images, that an instance prepares when it starts (see [`StartSizes`]).
const EAGER_TABLE_ELEMENTS: u64 = 1024;
const EAGER_DATA_BYTES: u64 = 1 << 20;

/// What decides how instances of a component start: the sizes of its core modules' function
/// tables and memory images (data segments), all modules together.
///
/// By default wasmtime fills a table entry on the first indirect call through it (a call into
/// the runtime), and maps a memory's image copy-on-write, so the guest's first write to each
/// page of it takes a page fault. Both keep instantiation cheap when tables and images are
/// large. But instances are started ahead of the objects that take them (`--spare-instances`),
/// so for a small component, filling the tables and copying the image at instantiation moves
/// that work off the new object's first request. Measured on the Rust game room (about 130
/// table entries), 600 new objects at 100/s, the first event's guest call at p50: 120-136 us
/// with the tables filled against 154-203 us (4 alternating rounds), and 147-159 us with the
/// image copied too against 167-201 us (8 rounds, on a slower spell of the machine); memory
/// per live object unchanged (190 KiB). JavaScript, Python and Go components have 5,000-8,000
/// table entries and MiBs of images: filling the tables alone cost the JS game room 135 KiB
/// per instance and slowed instances started in a burst, so those keep wasmtime's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartSizes {
    pub table_elements: u64,
    pub data_bytes: u64,
}

impl StartSizes {
    /// Reads the sizes from a component (or module); `None` if it cannot be read (loading it
    /// then fails with the compiler's message).
    pub fn read(bytes: &[u8]) -> Option<Self> {
        let mut sizes = Self {
            table_elements: 0,
            data_bytes: 0,
        };
        for payload in wasmparser::Parser::new(0).parse_all(bytes) {
            match payload.ok()? {
                wasmparser::Payload::TableSection(tables) => {
                    for table in tables {
                        let initial = table.ok()?.ty.initial;
                        sizes.table_elements = sizes.table_elements.saturating_add(initial);
                    }
                }
                wasmparser::Payload::DataSection(segments) => {
                    for segment in segments {
                        let len = segment.ok()?.data.len() as u64;
                        sizes.data_bytes = sizes.data_bytes.saturating_add(len);
                    }
                }
                _ => {}
            }
        }
        Some(sizes)
    }

    /// Whether instances should fill their tables and copy their memory images when they
    /// start ([`EngineConfig::eager_init`]).
    pub fn eager(&self) -> bool {
        self.table_elements <= EAGER_TABLE_ELEMENTS && self.data_bytes <= EAGER_DATA_BYTES
    }
}

/// Work the epoch thread does on each tick, after advancing the epoch; `false` once it is no
/// longer wanted (its owner is gone).
pub type TickHook = Box<dyn FnMut() -> bool + Send>;

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped, and runs the hooks given to
/// [`EpochTicker::on_tick`]: background threads are woken from here rather than from a
/// request's path (each wake-up of a sleeping thread costs the waker microseconds, and more
/// on an idle VM), by a thread that wakes every tick anyway.
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
    hooks: Arc<std::sync::Mutex<Vec<TickHook>>>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    pub fn start(engine: &Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let hooks: Arc<std::sync::Mutex<Vec<TickHook>>> = Arc::default();
        let thread = {
            let (engine, stop, hooks) = (engine.clone(), stop.clone(), hooks.clone());
            std::thread::Builder::new()
                .name("dohost-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                        if let Ok(mut hooks) = hooks.lock() {
                            hooks.retain_mut(|hook| hook());
                        }
                    }
                })
                .ok()
        };
        Self {
            stop,
            hooks,
            thread,
        }
    }

    /// Runs `hook` on every tick from now on, until it returns `false`. `false` if the ticker
    /// has no thread (it could not be spawned): the hook never runs.
    pub fn on_tick(&self, hook: TickHook) -> bool {
        if self.thread.is_none() {
            return false;
        }
        self.hooks.lock().map(|mut h| h.push(hook)).is_ok()
    }

    /// Takes over the wake-ups that `owner`'s [`Nudge`] leaves to the ticker: on the tick after
    /// one, calls `wake`; until `owner` is gone or `stopped`.
    pub fn take_over<T: Send + Sync + 'static>(
        &self,
        owner: &Arc<T>,
        nudge: fn(&T) -> &Nudge,
        wake: fn(&T),
        stopped: fn(&T) -> bool,
    ) {
        let weak = Arc::downgrade(owner);
        let hooked = self.on_tick(Box::new(move || {
            let Some(owner) = weak.upgrade() else {
                return false;
            };
            if nudge(&owner).wanted.swap(false, Ordering::AcqRel) {
                wake(&owner);
            }
            !stopped(&owner)
        }));
        nudge(owner).ticked.store(hooked, Ordering::Release);
    }
}

/// The wake-up of a background thread that can wait for the next tick: left to the epoch
/// ticker once one has taken it over ([`EpochTicker::take_over`]), done at once otherwise.
#[derive(Default)]
pub struct Nudge {
    ticked: AtomicBool,
    wanted: AtomicBool,
}

impl Nudge {
    /// Wakes the thread (`wake`) now if `urgent` or no ticker does it; otherwise asks the
    /// ticker to.
    pub fn wake(&self, urgent: bool, wake: impl FnOnce()) {
        if urgent || !self.ticked.load(Ordering::Acquire) {
            wake();
        } else {
            self.wanted.store(true, Ordering::Release);
        }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A compiled, linked object class.
pub struct Class {
    name: String,
    pre: ObjectPre<ObjectState>,
    sha256: String,
}

impl Class {
    /// Loads the component at `path` as class `name`. With `cache_dir`, reuses (or writes) a
    /// precompiled artefact there so later starts skip compilation.
    pub fn load(
        engine: &Engine,
        path: &Path,
        name: &str,
        cache_dir: Option<&Path>,
    ) -> Result<Self, LoadError> {
        Self::from_bytes(engine, path, &read_component(path)?, name, cache_dir)
    }

    /// [`Class::load`] with the file's content already read.
    pub fn from_bytes(
        engine: &Engine,
        path: &Path,
        bytes: &[u8],
        name: &str,
        cache_dir: Option<&Path>,
    ) -> Result<Self, LoadError> {
        check_header(path, bytes)?;
        let sha256 = hex::encode(Sha256::digest(bytes));
        let component = match cache_dir {
            Some(dir) => load_cached(engine, path, bytes, &sha256, dir)?,
            None => compile(engine, path, bytes)?,
        };
        let pre = link(engine, &component).map_err(|e| LoadError::Incompatible {
            path: path.to_path_buf(),
            message: e,
        })?;
        Ok(Self {
            name: name.to_string(),
            pre,
            sha256,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Hex SHA-256 of the component file.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    pub(crate) fn pre(&self) -> &ObjectPre<ObjectState> {
        &self.pre
    }
}

/// The content of the component file at `path`.
pub fn read_component(path: &Path) -> Result<Vec<u8>, LoadError> {
    std::fs::read(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn check_header(path: &Path, bytes: &[u8]) -> Result<(), LoadError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(LoadError::NotWasm(path.to_path_buf()));
    }
    if bytes[4..8] == [1, 0, 0, 0] {
        return Err(LoadError::CoreModule(path.to_path_buf()));
    }
    Ok(())
}

fn compile(engine: &Engine, path: &Path, bytes: &[u8]) -> Result<Component, LoadError> {
    Component::new(engine, bytes).map_err(|e| LoadError::Invalid {
        path: path.to_path_buf(),
        message: format!("{e:#}"),
    })
}

fn load_cached(
    engine: &Engine,
    path: &Path,
    bytes: &[u8],
    sha256: &str,
    dir: &Path,
) -> Result<Component, LoadError> {
    let mut hasher = std::hash::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let file = dir.join(format!("{sha256}-{:016x}.cwasm", hasher.finish()));
    if file.exists() {
        // SAFETY: the cache directory belongs to this host (inside its data directory) and only
        // ever receives artefacts this engine serialized; a corrupt file fails to deserialize
        // and is recompiled below.
        match unsafe { Component::deserialize_file(engine, &file) } {
            Ok(component) => {
                tracing::debug!(file = %file.display(), "loaded compiled component from cache");
                return Ok(component);
            }
            Err(e) => {
                tracing::warn!(file = %file.display(), "ignoring unusable cache entry: {e:#}")
            }
        }
    }
    let started = std::time::Instant::now();
    let component = compile(engine, path, bytes)?;
    tracing::info!(
        component = %path.display(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "compiled component"
    );
    if let Err(e) = write_cache(&component, dir, &file) {
        tracing::warn!(file = %file.display(), "cannot cache compiled component: {e:#}");
    }
    Ok(component)
}

fn write_cache(component: &Component, dir: &Path, file: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let serialized = component
        .serialize()
        .map_err(|e| anyhow::anyhow!("{e:#}"))?;
    // Unique temporary name, then an atomic rename: hosts sharing the directory never see a
    // partial file.
    let tmp = file.with_extension(
        format!(
            "tmp{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        )
        .replace(['(', ')'], ""),
    );
    std::fs::write(&tmp, serialized)?;
    std::fs::rename(&tmp, file)?;
    Ok(())
}

/// Links WASI 0.2 and the dohost interfaces, and checks the component's exports.
fn link(engine: &Engine, component: &Component) -> Result<ObjectPre<ObjectState>, String> {
    let mut linker = Linker::<ObjectState>::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| format!("{e:#}"))?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
        .map_err(|e| format!("{e:#}"))?;
    Object::add_to_linker::<ObjectState, HasSelf<ObjectState>>(&mut linker, |state| state)
        .map_err(|e| format!("{e:#}"))?;
    let pre = linker
        .instantiate_pre(component)
        .map_err(|e| format!("{e:#}"))?;
    ObjectPre::new(pre).map_err(|e| format!("{e:#}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unsigned LEB128, as wasm encodes sizes.
    fn leb(mut n: u64) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            out.push(if n == 0 { byte } else { byte | 0x80 });
            if n == 0 {
                return out;
            }
        }
    }

    /// A module with one section `id` of `content`.
    fn module(id: u8, content: &[u8]) -> Vec<u8> {
        let mut bytes = b"\0asm\x01\0\0\0".to_vec();
        bytes.push(id);
        bytes.extend(leb(content.len() as u64));
        bytes.extend(content);
        bytes
    }

    #[test]
    fn only_small_components_start_eagerly() {
        // One funcref table of `min` entries.
        let table = |min: u64| module(4, &[&[1, 0x70, 0][..], &leb(min)].concat());
        // One active data segment of `len` bytes at address 0.
        let data = |len: u64| {
            let bytes = vec![7u8; len as usize];
            module(
                11,
                &[&[1, 0, 0x41, 0, 0x0b][..], &leb(len), &bytes].concat(),
            )
        };
        let eager = |bytes: &[u8]| StartSizes::read(bytes).is_some_and(|s| s.eager());
        assert_eq!(
            StartSizes::read(&table(5000)),
            Some(StartSizes {
                table_elements: 5000,
                data_bytes: 0
            })
        );
        assert!(eager(&table(10)));
        assert!(eager(&table(1024)));
        assert!(!eager(&table(1025)));
        assert_eq!(
            StartSizes::read(&data(100)).map(|s| s.data_bytes),
            Some(100)
        );
        assert!(eager(&data(1 << 20)));
        assert!(!eager(&data((1 << 20) + 1)));
        assert!(eager(b"\0asm\x01\0\0\0"));
        // Cut off in the middle of its table section.
        assert_eq!(StartSizes::read(b"\0asm\x01\0\0\0\x04\x09\x01"), None);
    }

    #[test]
    fn rejects_files_that_are_not_components() {
        let engine = build_engine(&EngineConfig {
            max_instances: 2,
            ..Default::default()
        })
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cases: &[(&str, &[u8])] = &[
            ("empty.wasm", b""),
            ("text.wasm", b"hello world, not wasm"),
            ("core.wasm", b"\0asm\x01\0\0\0"),
            ("truncated.wasm", b"\0asm\x0d\0\x01\0\x01"),
        ];
        for (name, bytes) in cases {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            let err = Class::load(&engine, &path, "c", None)
                .err()
                .expect("must fail");
            let message = err.to_string();
            assert!(message.contains(name), "{message}");
        }
        let missing = Class::load(&engine, &dir.path().join("nope.wasm"), "c", None);
        assert!(matches!(missing, Err(LoadError::Read { .. })));
    }
}
