//! The shared store (`serve --state`, SPEC §9.4) coming back after a crash.

use std::time::{Duration, Instant};

use crate::store_util::redis_or_skip;
use crate::util::{Server, table};

/// After a store crash and restart, the replica is `ok` and stays so: the
/// stream reader's own connection, idle while the store was down, held the
/// error of its last reconnect attempt, and its first XREAD after the
/// breaker closed returned that stale error and opened the breaker again
/// (one more outage, up to a second of local decisions).
#[test]
fn store_back_after_a_crash_stays_up() {
    let Some(mut redis) = redis_or_skip() else {
        return;
    };
    let url = redis.url();
    let s = Server::start(
        &[("10-routes.toml", &table("alpha", 1))],
        &["--state", &url],
    );
    s.wait_health("the store up", Duration::from_secs(5), |h| {
        h["status"] == "ok" && h["state"]["up"] == true
    });
    // The reader is in its blocking XREAD when the store dies.
    std::thread::sleep(Duration::from_millis(300));
    redis.kill();
    s.wait_health("the store down", Duration::from_secs(5), |h| {
        h["status"] == "degraded" && h["state"]["up"] == false
    });
    // Long enough for every reconnect attempt to fail against the closed port.
    std::thread::sleep(Duration::from_millis(1500));
    redis.restart();
    let h = s.wait_health("the store up again", Duration::from_secs(5), |h| {
        h["status"] == "ok"
    });
    let outages = h["state"]["outages"].as_u64().expect("state.outages");
    let until = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < until {
        let h = s.health();
        assert_eq!(h["status"], "ok", "down again after it came back: {h}");
        assert_eq!(
            h["state"]["outages"].as_u64(),
            Some(outages),
            "the breaker opened again after the store came back: {h}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
