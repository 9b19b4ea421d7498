//! dohost: a self-hosted runtime for durable objects written as WebAssembly components.
//!
//! An object is a single-threaded component instance with a unique ID and its own SQLite
//! database. All events (HTTP requests, alarms) for one ID go through one instance, one at a
//! time, each in its own transaction that commits before its response leaves the host.
//!
//! Data flows one way:
//!
//! ```text
//! ingress (hyper) -> route (name | id) -> ObjectRegistry -> actor (one per live ID)
//!     -> LiveObject (wasmtime Store + SqlStore) -> guest export
//! guest import -> sql / alarm / fetch / identity host impls -> SQLite file
//! ```
//!
//! The contract with guests is the WIT package in `wit/` (`dohost:object@0.1.0`).

pub mod admin;
pub mod alarm;
pub mod bindings;
pub mod coldstart;
pub mod conformance;
pub mod engine;
pub mod fetch;
pub mod id;
pub mod ingress;
pub mod limits;
pub mod logs;
pub mod metrics;
pub mod object;
pub mod prestart;
pub mod registry;
pub mod server;
pub mod sql;
pub mod storage;

pub use engine::{Class, EngineConfig, LoadError};
pub use id::{IdMinter, ObjectId};
pub use limits::Limits;
pub use registry::{ObjectRegistry, RegistryConfig};
pub use server::{Server, ServerConfig};
pub use storage::{StorageConfig, SyncMode};
