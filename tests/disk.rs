//! A full disk during writes: the event fails cleanly (rolled back, a clear error to the
//! client), earlier data stays, the host keeps serving, and the object recovers when space
//! returns. Uses a small tmpfs as the data directory (needs root, as CI runs).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;
use support::{Host, count_rows, guest};

/// A tmpfs mounted for the test's lifetime.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(path: &Path, size: &str) -> Option<SmallDisk> {
        std::fs::create_dir_all(path).ok()?;
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .ok()?;
        status.success().then(|| SmallDisk(path.to_path_buf()))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_fails_the_event_cleanly_and_the_object_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = SmallDisk::mount(&dir.path().join("disk"), "6m") else {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    let data = disk.0.join("data");
    let host = Host::start(&guest("conformance"), &data, &[]);
    let ok = host.client().run(
        "d",
        json!([
            { "op": "exec", "query": "CREATE TABLE t (b BLOB)" },
            { "op": "exec", "query": "INSERT INTO t VALUES (zeroblob(1000))" },
        ]),
    );
    assert_eq!(ok.status, 200, "{}", ok.text());

    // Fill the disk.
    let filler = disk.0.join("filler");
    let mut file = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while std::io::Write::write_all(&mut file, &chunk).is_ok() {}
    drop(file);

    // Larger than SQLite's page cache: the statement itself writes to the WAL, and fails.
    let full = host.client().run(
        "d",
        json!([{ "op": "exec", "query": "INSERT INTO t VALUES (zeroblob(3000000))" }]),
    );
    match full.status {
        // The statement failed with a typed error; the handler answered.
        200 => {
            let err = &full.json()["results"][0]["err"];
            assert!(
                err["kind"] == "database-full" || err["kind"] == "other",
                "{}",
                full.text()
            );
            // A full disk is not blamed on the object's size limit (10 GiB here).
            if err["kind"] == "database-full" {
                let message = err["message"].as_str().unwrap_or_default();
                assert!(message.contains("disk"), "{message}");
                assert!(!message.contains("size limit"), "{message}");
            }
        }
        // Or the commit or its sync failed: a clear storage error.
        500 => assert_eq!(
            full.header("x-dohost-error"),
            Some("storage-failed"),
            "{}",
            full.text()
        ),
        other => panic!("unexpected {other}: {}", full.text()),
    }
    assert_eq!(
        count_rows(&host, "d", "t"),
        1,
        "the failed event left nothing behind"
    );

    // Space returns: the object works again.
    std::fs::remove_file(&filler).unwrap();
    let again = host.client().run(
        "d",
        json!([{ "op": "exec", "query": "INSERT INTO t VALUES (zeroblob(500000))" }]),
    );
    assert_eq!(again.status, 200, "{}", again.text());
    assert!(
        again.json()["results"][0]["ok"].is_object(),
        "{}",
        again.text()
    );
    assert_eq!(count_rows(&host, "d", "t"), 2);
    host.stop();
}
