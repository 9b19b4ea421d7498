//! The floor: the game room served by plain hyper + rusqlite, no WebAssembly, no actor.
//!
//! It does what the game-room object does, with the same durability as dohost's default, and
//! nothing else, so it bounds from below what any runtime can do for this workload on this
//! machine:
//!
//! - `POST /<room>/join` with `{"playerId": "...", "name": "..."}`: in one transaction,
//!   `INSERT OR REPLACE INTO players` then `SELECT count(*)`; answers `{"players": n}`.
//! - `GET /<room>/count`: `SELECT count(*)` in a transaction; answers `{"players": n}`.
//!
//! One SQLite file per room (`<data>/rooms/<room>.sqlite3`), WAL, `synchronous=FULL` (every
//! commit fsyncs the WAL before the response is written, as dohost's `--sync full`), exclusive
//! locking mode (as dohost). Requests to one room are serialized by the room's mutex (the
//! input gate's equivalent); rooms run in parallel on tokio's blocking pool. With `--max-open`,
//! the least recently used idle room's connection is closed when the cap is reached (dohost's
//! `--max-instances` equivalent), so re-activation can be measured.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rusqlite::{Connection, OpenFlags};
use serde::Deserialize;
use tokio::net::TcpListener;

/// Largest request body the floor reads.
const MAX_BODY: usize = 64 * 1024;

/// Settings of the floor server.
#[derive(Clone, Debug)]
pub struct FloorConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// Most room databases open at once; `None`: no cap.
    pub max_open: Option<usize>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Join {
    player_id: String,
    name: String,
}

/// One room: its connection while open. The mutex serializes the room's requests.
#[derive(Default)]
struct Room {
    conn: Mutex<Option<OpenRoom>>,
    last_used: AtomicU64,
}

/// An open room database.
struct OpenRoom {
    conn: Connection,
    /// The table may not exist yet: the first transaction creates it (in the same commit as
    /// the first write, so a new room costs one sync, not two).
    fresh: bool,
}

struct Floor {
    rooms_dir: PathBuf,
    max_open: Option<usize>,
    rooms: Mutex<HashMap<String, Arc<Room>>>,
    tick: AtomicU64,
}

/// Serves until the process gets SIGTERM or Ctrl-C. Open databases are not closed on the
/// way out (see the end of this function); the caller should exit the process.
pub async fn serve(config: FloorConfig) -> anyhow::Result<()> {
    let rooms_dir = config.data_dir.join("rooms");
    std::fs::create_dir_all(&rooms_dir)
        .with_context(|| format!("cannot create {}", rooms_dir.display()))?;
    let floor = Arc::new(Floor {
        rooms_dir,
        max_open: config.max_open,
        rooms: Mutex::new(HashMap::new()),
        tick: AtomicU64::new(0),
    });
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    eprintln!("floor: serving on http://{}", listener.local_addr()?);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    eprintln!("floor: accept failed: {e}");
                    continue;
                }
            },
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        };
        let _ = stream.set_nodelay(true);
        let floor = floor.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let floor = floor.clone();
                async move { Ok::<_, Infallible>(floor.handle(request).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
    // Every commit was durable before its response left, so there is nothing to flush:
    // closing a thousand databases would only checkpoint them (a sync each), which would make
    // stopping take seconds. The next open recovers from the WAL.
    std::mem::forget(floor);
    Ok(())
}

impl Floor {
    async fn handle(self: Arc<Self>, request: hyper::Request<Incoming>) -> Response<Full<Bytes>> {
        match self.route(request).await {
            Ok(players) => json(StatusCode::OK, format!("{{\"players\":{players}}}")),
            Err((status, message)) => {
                json(status, serde_json::json!({ "error": message }).to_string())
            }
        }
    }

    async fn route(
        self: Arc<Self>,
        request: hyper::Request<Incoming>,
    ) -> Result<i64, (StatusCode, String)> {
        let path = request.uri().path().to_string();
        let mut parts = path.trim_start_matches('/').splitn(2, '/');
        let room = parts.next().unwrap_or("");
        let rest = parts.next().unwrap_or("");
        if !valid_room(room) {
            return Err((StatusCode::NOT_FOUND, "expected /<room>/<path>".into()));
        }
        let room = room.to_string();
        let join = match (request.method(), rest) {
            (&Method::POST, "join") => {
                let body = Limited::new(request.into_body(), MAX_BODY)
                    .collect()
                    .await
                    .map_err(|e| (StatusCode::BAD_REQUEST, format!("cannot read body: {e}")))?
                    .to_bytes();
                let join: Join = serde_json::from_slice(&body)
                    .map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
                Some(join)
            }
            (&Method::GET, "count") => None,
            _ => return Err((StatusCode::NOT_FOUND, "not found".into())),
        };
        let handle = self.room(&room);
        tokio::task::spawn_blocking(move || self.run(&room, &handle, join.as_ref()))
            .await
            .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("panicked: {e}")))?
            .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))
    }

    /// The room's handle, evicting the least recently used idle room past the cap.
    fn room(&self, name: &str) -> Arc<Room> {
        let tick = self.tick.fetch_add(1, Ordering::Relaxed);
        let mut rooms = match self.rooms.lock() {
            Ok(rooms) => rooms,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(room) = rooms.get(name) {
            room.last_used.store(tick, Ordering::Relaxed);
            return room.clone();
        }
        if let Some(cap) = self.max_open
            && rooms.len() >= cap
        {
            // Idle = nobody else holds the handle (the map's reference is the only one).
            let victim = rooms
                .iter()
                .filter(|(_, room)| Arc::strong_count(room) == 1)
                .min_by_key(|(_, room)| room.last_used.load(Ordering::Relaxed))
                .map(|(name, _)| name.clone());
            if let Some(victim) = victim {
                // Dropping the last handle closes the connection.
                rooms.remove(&victim);
            }
        }
        let room = Arc::new(Room::default());
        room.last_used.store(tick, Ordering::Relaxed);
        rooms.insert(name.to_string(), room.clone());
        room
    }

    /// Runs one request's SQL on the room's connection (opening it if needed).
    fn run(&self, name: &str, room: &Room, join: Option<&Join>) -> anyhow::Result<i64> {
        let mut slot = match room.conn.lock() {
            Ok(slot) => slot,
            Err(poisoned) => poisoned.into_inner(),
        };
        let open = match slot.as_mut() {
            Some(open) => open,
            None => slot.insert(OpenRoom {
                conn: open_database(&self.rooms_dir.join(format!("{name}.sqlite3")))?,
                fresh: true,
            }),
        };
        let tx = open.conn.transaction()?;
        if open.fresh {
            tx.execute_batch(CREATE_PLAYERS)?;
        }
        if let Some(join) = join {
            tx.prepare_cached("INSERT OR REPLACE INTO players (id, name) VALUES (?1, ?2)")?
                .execute((&join.player_id, &join.name))?;
        }
        let players: i64 = tx
            .prepare_cached("SELECT count(*) FROM players")?
            .query_row([], |row| row.get(0))?;
        tx.commit()?;
        open.fresh = false;
        Ok(players)
    }
}

/// The game room's table.
const CREATE_PLAYERS: &str =
    "CREATE TABLE IF NOT EXISTS players (id TEXT PRIMARY KEY, name TEXT NOT NULL)";

/// Opens (creating if needed) a database with dohost's default durability: WAL,
/// `synchronous=FULL`, exclusive locking.
fn open_database(path: &Path) -> anyhow::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)
        .with_context(|| format!("cannot open {}", path.display()))?;
    conn.execute_batch(
        "PRAGMA locking_mode = EXCLUSIVE;
         PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;",
    )?;
    Ok(conn)
}

/// Opens a room database as the floor does, with its table (for the micro-benchmarks).
pub fn open_room(path: &Path) -> anyhow::Result<Connection> {
    let conn = open_database(path)?;
    conn.execute_batch(CREATE_PLAYERS)?;
    Ok(conn)
}

/// Room names the floor accepts: what the harness sends, and nothing that could leave the
/// data directory.
fn valid_room(room: &str) -> bool {
    !room.is_empty()
        && room.len() <= 128
        && room
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn json(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names() {
        assert!(valid_room("room-12_a"));
        assert!(!valid_room(""));
        assert!(!valid_room(".."));
        assert!(!valid_room("a/b"));
    }

    #[test]
    fn a_room_counts_its_players() {
        let dir = tempfile::tempdir().unwrap();
        let floor = Floor {
            rooms_dir: dir.path().to_path_buf(),
            max_open: Some(1),
            rooms: Mutex::new(HashMap::new()),
            tick: AtomicU64::new(0),
        };
        let join = |id: &str| Join {
            player_id: id.into(),
            name: "n".into(),
        };
        let lobby = floor.room("lobby");
        assert_eq!(floor.run("lobby", &lobby, Some(&join("a"))).unwrap(), 1);
        assert_eq!(floor.run("lobby", &lobby, Some(&join("b"))).unwrap(), 2);
        assert_eq!(floor.run("lobby", &lobby, Some(&join("a"))).unwrap(), 2);
        drop(lobby);
        // The cap of one closes the lobby; its data survives re-opening.
        let other = floor.room("other");
        assert_eq!(floor.run("other", &other, None).unwrap(), 0);
        drop(other);
        let lobby = floor.room("lobby");
        assert_eq!(floor.run("lobby", &lobby, None).unwrap(), 2);
    }
}
