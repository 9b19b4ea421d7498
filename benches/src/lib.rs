//! Benchmarks of dohost against real peers, all measured in one run on one machine.
//!
//! Two harnesses (see `benches/README.md` for how to run them and the latest results):
//!
//! - `benches/micro.rs` (criterion, `cargo bench -p dohost-benches`): instantiation from the
//!   pre-linked component, the `sql.exec` round trip from a guest, a warm request through the
//!   object actor, and activation of an existing object, each next to a baseline measured in
//!   the same run (raw rusqlite doing the same SQL);
//! - the `e2e` binary (`cargo run --release -p dohost-benches --bin e2e -- --quick`): starts
//!   dohost (the game room in Rust and, if it builds, in JavaScript), workerd serving the same
//!   Durable Object in JavaScript with SQLite storage on local disk, and the floor (plain
//!   hyper + rusqlite), loads each with this crate's own load generator over 127.0.0.1, and
//!   prints one table with every figure and the ratios.
//!
//! Modules: [`loadgen`] (connections, closed loop / fixed rate, coordinated-omission
//! correction), [`stats`] (exact percentiles), [`peers`] (starting and stopping the servers),
//! [`floor`] (the floor server), [`scenarios`] (what is measured), [`report`] (the table),
//! [`syncs`] (counting each peer's fsyncs), [`usage`] (each peer's CPU time and the machine's
//! steal), [`server_latency`] (latency at the server, from dohost's own histogram), [`machine`] and [`workspace`] (what machine, which builds).

pub mod floor;
pub mod loadgen;
pub mod machine;
pub mod peers;
pub mod report;
pub mod scenarios;
pub mod server_latency;
pub mod stats;
pub mod syncs;
pub mod usage;
pub mod workspace;
