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
