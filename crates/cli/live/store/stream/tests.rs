//! Tests of the stream's entries and of the background writer.

use super::*;

fn roundtrip(e: Entry) {
    let map: HashMap<String, Value> = e
        .fields()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), Value::BulkString(v.into_bytes())))
        .collect();
    assert_eq!(Entry::parse(&map), Some(e));
}

#[test]
fn entries_read_back_as_written() {
    roundtrip(Entry::Probe {
        key: "sip:192.0.2.1:5060".into(),
        code: Some(200),
        rtt_ms: Some(12),
        error: None,
    });
    roundtrip(Entry::Probe {
        key: "sip:192.0.2.1:5060".into(),
        code: None,
        rtt_ms: None,
        error: Some("timeout".into()),
    });
    roundtrip(Entry::Report {
        key: "sip:192.0.2.1:5060".into(),
        code: 503,
        call_id: "c1".into(),
    });
    roundtrip(Entry::Mark {
        key: "sip:192.0.2.1:5060".into(),
        disable: true,
    });
    roundtrip(Entry::Event {
        call_id: "c1".into(),
        dst: "sip:192.0.2.1:5060".into(),
        event: Event::Failed {
            code: 486,
            next: Some("sip:192.0.2.2:5060".into()),
            pdd: Some(Duration::from_millis(1500)),
        },
        ended: Some(("sip:192.0.2.1:5060".into(), "uk@44".into(), false)),
    });
    roundtrip(Entry::Event {
        call_id: "c2".into(),
        dst: "sip:192.0.2.1:5060".into(),
        event: Event::Ended {
            pdd: None,
            duration: Some(Duration::from_secs(61)),
        },
        ended: Some(("sip:192.0.2.1:5060".into(), "uk".into(), true)),
    });
    roundtrip(Entry::Event {
        call_id: "c3".into(),
        dst: "sip:192.0.2.1:5060".into(),
        event: Event::Answered { pdd: None },
        ended: None,
    });
}

fn reservation(n: usize) -> Reservation {
    Reservation {
        trunk: "t".into(),
        gateway: "sip:192.0.2.1".into(),
        limits: (0, 0, 0),
        call_id: Some(format!("c{n}")),
        routes: Vec::new(),
        max_duration: Duration::from_secs(60),
        force: true,
    }
}

/// `c4route_state_pending` counts every queued write until it is
/// written or dropped, also while the writer is busy with a store that
/// does not answer. It used to be set only between two flushes, from the
/// writer's own batch, so a backlog in the queue read 0 (seen at 15,000
/// decisions a second, 50,000 records behind).
#[test]
fn pending_counts_the_backlog_while_the_writer_waits_for_the_store() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Takes connections (the kernel's backlog) and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let cfg = super::super::StoreConfig {
        url: format!("redis://{}/0", silent.local_addr().unwrap()),
        password_file: None,
        timeout: Duration::from_millis(500),
        prefix: "t:".into(),
    };
    rt.block_on(async {
        let metrics = crate::store_metrics::StoreMetrics::default();
        let store = Arc::new(Store::connect(&cfg, metrics).unwrap());
        // As if the health check had had an answer: the writer writes.
        store.breaker.reset();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(writer(store.clone(), async {
            let _ = stopped.await;
        }));
        for n in 0..3000 {
            store.send(Op::Reserve(reservation(n)));
        }
        // The writer now waits for its first write (WRITE_BOUND).
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(store.metrics.pending.get(), 3000);
        assert_eq!(store.metrics.written.get(), 0);
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the writer stops within its bound")
            .unwrap();
        // Nothing was written: all of it dropped at the stop, none left.
        assert_eq!(store.metrics.dropped.get(), 3000);
        assert_eq!(store.metrics.pending.get(), 0);
    });
    drop(silent);
}

#[test]
fn unknown_or_malformed_entries_are_skipped() {
    let mk = |pairs: &[(&str, &str)]| -> HashMap<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::BulkString(v.as_bytes().to_vec())))
            .collect()
    };
    assert_eq!(Entry::parse(&mk(&[("k", "weather")])), None);
    assert_eq!(Entry::parse(&mk(&[("k", "report"), ("gw", "sip:a")])), None);
    assert_eq!(
        Entry::parse(&mk(&[("k", "report"), ("gw", "sip:a"), ("code", "99999")])),
        None
    );
    assert_eq!(
        Entry::parse(&mk(&[
            ("k", "event"),
            ("ev", "failed"),
            ("call", "c"),
            ("dst", "sip:a")
        ])),
        None,
        "a failed event without a code"
    );
}

/// A stand-in for redis on 127.0.0.1 that answers what the writer and a
/// reservation send (the client's handshake, SCRIPT LOAD, EVALSHA, PING)
/// and reports each command with the number of the connection it came on.
/// Its threads stop when it is dropped (each polls a flag every 50 ms).
struct FakeRedis {
    addr: std::net::SocketAddr,
    commands: std::sync::mpsc::Receiver<(usize, String)>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl FakeRedis {
    fn start() -> FakeRedis {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, commands) = std::sync::mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::spawn(move || {
            let mut n = 0;
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        let (tx, flag) = (tx.clone(), flag.clone());
                        n += 1;
                        std::thread::spawn(move || serve_fake(s, n, &tx, &flag));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FakeRedis {
            addr,
            commands,
            stop,
        }
    }
}

impl Drop for FakeRedis {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// One connection of [`FakeRedis`]: RESP arrays of bulk strings in, one
/// reply each out.
fn serve_fake(
    s: std::net::TcpStream,
    conn: usize,
    tx: &std::sync::mpsc::Sender<(usize, String)>,
    stop: &std::sync::atomic::AtomicBool,
) {
    use std::io::{BufRead, Read, Write};
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = std::io::BufReader::new(s);
    let mut line = String::new();
    // One line; None when the peer is gone or the fake stops.
    let mut read_line = |r: &mut std::io::BufReader<std::net::TcpStream>| loop {
        line.clear();
        match r.read_line(&mut line) {
            Ok(0) => return None,
            Ok(_) => return Some(line.trim_end().to_owned()),
            Err(_) if !stop.load(std::sync::atomic::Ordering::Relaxed) => {}
            Err(_) => return None,
        }
    };
    while let Some(head) = read_line(&mut r) {
        let n: usize = head.strip_prefix('*').and_then(|n| n.parse().ok()).unwrap();
        let mut args = Vec::new();
        for _ in 0..n {
            let len: usize = read_line(&mut r)
                .and_then(|l| l.strip_prefix('$').and_then(|n| n.parse().ok()))
                .unwrap();
            let mut arg = vec![0; len + 2];
            r.read_exact(&mut arg).unwrap();
            arg.truncate(len);
            args.push(String::from_utf8_lossy(&arg).to_uppercase());
        }
        let cmd = args.first().cloned().unwrap_or_default();
        let reply: &[u8] = match cmd.as_str() {
            "SCRIPT" => b"$40\r\n0000000000000000000000000000000000000000\r\n",
            "EVALSHA" => b":0\r\n",
            "PING" => b"+PONG\r\n",
            _ => b"+OK\r\n",
        };
        let _ = tx.send((conn, cmd));
        if w.write_all(reply).is_err() {
            return;
        }
    }
}

/// A decision's reservation does not wait behind the writer's records:
/// they go on a connection of their own. On the decisions' connection a
/// pipeline of 512 records held a reservation past `--state-timeout`, and
/// under load the breaker kept opening (bench-store.sh: 88 % of the limited
/// decisions at 4 connections taken locally, 440,000 records dropped).
#[test]
fn the_writers_records_and_a_reservation_use_different_connections() {
    let fake = FakeRedis::start();
    let cfg = super::super::StoreConfig {
        url: format!("redis://{}/0", fake.addr),
        password_file: None,
        timeout: Duration::from_millis(500),
        prefix: "t:".into(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let metrics = crate::store_metrics::StoreMetrics::default();
        let store = Arc::new(Store::connect(&cfg, metrics).unwrap());
        store.breaker.reset();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(writer(store.clone(), async {
            let _ = stopped.await;
        }));
        for n in 0..20 {
            store.send(Op::Reserve(reservation(n)));
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while store.metrics.written.get() < 20 {
            assert!(Instant::now() < deadline, "the writer wrote nothing in 5 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut decision = reservation(99);
        decision.force = false;
        assert_eq!(
            store.reserve(&decision, None).await,
            Ok(super::super::Reserved::Taken)
        );
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the writer stops")
            .unwrap();
    });
    let evals: Vec<usize> = fake
        .commands
        .try_iter()
        .filter(|(_, c)| c == "EVALSHA")
        .map(|(conn, _)| conn)
        .collect();
    assert_eq!(evals.len(), 21, "20 records and one reservation");
    let (records, decision) = evals.split_at(20);
    assert!(
        records.iter().all(|c| *c != decision[0]),
        "the reservation went on connection {} with the records: {records:?}",
        decision[0]
    );
}
