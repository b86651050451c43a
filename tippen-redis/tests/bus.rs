//! [`RedisBus`] and the store's numbered publishing against a real `redis-server` (started
//! by the test on a free port, killed by pid): numbering, log and publish are one step, so
//! messages numbered by two connections at once arrive in `seq` order; the log replays a
//! range, and says when it no longer reaches back; a replica whose bus loses messages replays
//! them from the log, or resyncs its dashboards when the log no longer reaches back.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::RedisServer;
use tippen_axum::Bus;
use tippen_core::protocol::{RemovalReason, Sequenced, ServerMessage};
use tippen_core::{Broadcast, SiteId, Store, StoreError};
use tippen_redis::{RedisBus, RedisOptions, RedisStore};
use tokio::sync::mpsc;

async fn connect(server: &RedisServer, options: RedisOptions) -> RedisStore {
    RedisStore::connect_with(&server.url(), options)
        .await
        .expect("connect to the test redis-server")
}

fn removed(id: &str) -> String {
    Sequenced::unnumbered_json(&ServerMessage::VisitorRemoved {
        visitor_id: id.to_owned(),
        reason: RemovalReason::Left,
    })
}

fn wire(id: &str, seq: u64) -> String {
    Sequenced {
        message: ServerMessage::VisitorRemoved {
            visitor_id: id.to_owned(),
            reason: RemovalReason::Left,
        },
        seq,
    }
    .to_json()
}

/// Two connections number batches of messages for one site at once; a third follows the
/// site: every message arrives once, in `seq` order, with its wire text, and the log replays
/// the same messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_numbered_by_two_replicas_arrive_in_seq_order() {
    const BATCHES: usize = 200;
    let server = RedisServer::start();
    let a = connect(&server, RedisOptions::default()).await;
    let b = connect(&server, RedisOptions::default()).await;
    let follower = connect(&server, RedisOptions::default()).await;
    let bus = RedisBus::connect(&follower).await.expect("bus");
    let site = SiteId::from("acme");
    let other = SiteId::from("other");
    let (tx, mut rx) = mpsc::channel(10_000);
    bus.subscribe(&site, tx).await.expect("subscribe");
    assert!(a.publishes_broadcasts());

    let write = |store: RedisStore, name: &'static str| {
        let (site, other) = (site.clone(), other.clone());
        tokio::spawn(async move {
            let mut texts = std::collections::HashMap::new();
            for i in 0..BATCHES {
                // Batches of one and two messages, and a write to another site between.
                let ids: Vec<String> = (0..=i % 2).map(|k| format!("{name}_{i}_{k}")).collect();
                let unnumbered: Vec<String> = ids.iter().map(|id| removed(id)).collect();
                let last = store
                    .advance_sequence_publishing(&site, &unnumbered)
                    .await
                    .expect("numbered");
                for (id, seq) in ids.iter().zip(last + 1 - ids.len() as u64..) {
                    texts.insert(seq, wire(id, seq));
                }
                store
                    .advance_sequence_publishing(&other, &[removed("elsewhere")])
                    .await
                    .expect("other site");
            }
            texts
        })
    };
    let (from_a, from_b) = (write(a.clone(), "a"), write(b.clone(), "b"));
    let mut sent = from_a.await.expect("a");
    sent.extend(from_b.await.expect("b"));
    let total = sent.len() as u64;
    assert_eq!(
        total,
        2 * (BATCHES as u64 / 2) * 3,
        "every message numbered once"
    );
    assert_eq!(a.sequence(&site).await.expect("seq"), total);

    let mut heard: Vec<Broadcast> = Vec::new();
    while (heard.len() as u64) < total {
        heard.push(rx.recv().await.expect("the bus delivers"));
    }
    for (n, message) in (1..).zip(&heard) {
        assert_eq!(message.seq, n, "in seq order, none skipped");
        assert_eq!(&*message.text, sent[&n], "the wire text of {n}");
    }
    let replayed = bus
        .replay(&site, 1, total)
        .await
        .expect("replay")
        .expect("the log holds them all");
    assert_eq!(replayed, heard, "the log holds what was published");
    let middle = bus
        .replay(&site, 5, 9)
        .await
        .expect("replay")
        .expect("held");
    assert_eq!(middle, heard[4..9]);
    assert_eq!(
        bus.replay(&site, total + 1, total + 3)
            .await
            .expect("replay"),
        None,
        "not yet numbered"
    );

    bus.unsubscribe(&site).await.expect("unsubscribe");
    a.advance_sequence_publishing(&site, &[removed("after")])
        .await
        .expect("numbered");
    // A message published after unsubscribing does not arrive; a marker on a followed site
    // shows the bus went on delivering meanwhile.
    let (tx, mut other_rx) = mpsc::channel(16);
    bus.subscribe(&other, tx).await.expect("subscribe other");
    let marker = a
        .advance_sequence_publishing(&other, &[removed("marker")])
        .await
        .expect("numbered");
    assert_eq!(other_rx.recv().await.expect("marker").seq, marker);
    assert!(rx.try_recv().is_err(), "nothing after unsubscribing");
}

/// A log of 10 messages (kept approximately, at least 10) no longer reaches back to the first
/// of 1,000: replay says so (`None`), and still replays the last ten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_is_bounded_and_replay_says_when_it_no_longer_reaches_back() {
    let server = RedisServer::start();
    let store = connect(&server, RedisOptions::default().with_log_len(10)).await;
    let bus = RedisBus::connect(&store).await.expect("bus");
    let site = SiteId::from("acme");
    let batch: Vec<String> = (0..100).map(|i| removed(&format!("v{i}"))).collect();
    for _ in 0..10 {
        store
            .advance_sequence_publishing(&site, &batch)
            .await
            .expect("numbered");
    }
    assert_eq!(bus.replay(&site, 1, 10).await.expect("replay"), None);
    assert_eq!(bus.replay(&site, 1, 1_000).await.expect("replay"), None);
    let last = bus
        .replay(&site, 991, 1_000)
        .await
        .expect("replay")
        .expect("the last ten are kept");
    let seqs: Vec<u64> = last.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (991..=1_000).collect::<Vec<_>>());
    assert_eq!(&*last[9].text, wire("v99", 1_000));
    assert_eq!(bus.replay(&site, 7, 6).await.expect("empty"), Some(vec![]));
}

/// A [`RedisBus`] that loses some messages on the way (what a dropped subscriber connection
/// does): those numbered `≤ 60` and divisible by 3, and every one in `100..=400`.
struct Lossy(RedisBus);

fn lost(seq: u64) -> bool {
    (seq <= 60 && seq.is_multiple_of(3)) || (100..=400).contains(&seq)
}

#[async_trait::async_trait]
impl Bus for Lossy {
    async fn subscribe(
        &self,
        site: &SiteId,
        to: mpsc::Sender<Broadcast>,
    ) -> Result<(), StoreError> {
        let (tx, mut rx) = mpsc::channel::<Broadcast>(10_000);
        tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                if !lost(m.seq) && to.send(m).await.is_err() {
                    return;
                }
            }
        });
        self.0.subscribe(site, tx).await
    }

    async fn unsubscribe(&self, site: &SiteId) -> Result<(), StoreError> {
        self.0.unsubscribe(site).await
    }

    async fn replay(
        &self,
        site: &SiteId,
        from: u64,
        to: u64,
    ) -> Result<Option<Vec<Broadcast>>, StoreError> {
        self.0.replay(site, from, to).await
    }
}

/// A dashboard on a replica whose bus loses messages: gaps the log still holds are replayed
/// (the dashboard hears every message, gapless, in order); a gap the log (10 messages, kept
/// approximately) no longer reaches is answered with a fresh `INITIAL_VISITORS`, after which
/// the stream goes on gapless.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_replays_lost_messages_from_the_log_or_resyncs_its_dashboards() {
    use futures_util::StreamExt;
    use tippen_core::presence::{Ping, PingKind, Visibility};
    use tippen_core::{Config, Site, SystemClock, Tippen};

    let server = RedisServer::start();
    let options = RedisOptions::default().with_log_len(10);
    let writer = Tippen::new(
        Arc::new(connect(&server, options.clone()).await),
        Arc::new(SystemClock),
        Config::default(),
    );
    let site = Site::new("a", "Site A", "pk_a", "sk_a");
    writer.put_site(&site).await.expect("site");
    let follower = connect(&server, options).await;
    let bus = Lossy(RedisBus::connect(&follower).await.expect("bus"));
    let reader = Tippen::new(Arc::new(follower), Arc::new(SystemClock), Config::default());
    let host = tippen_axum::TippenHost::with_bus(reader, Default::default(), Arc::new(bus));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = host.router();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .expect("serve");
    });
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/ws/dashboard?apiKey=sk_a"))
            .await
            .expect("dashboard connects");

    let mut last: Option<u64> = None;
    let mut resynced_at = Vec::new();
    // Reads until the dashboard has applied `until`, checking the seq rule on the way.
    let mut hear = async |until: u64, last: &mut Option<u64>, resynced_at: &mut Vec<u64>| {
        while last.is_none_or(|l| l < until) {
            let message = tokio::time::timeout(Duration::from_secs(10), ws.next())
                .await
                .expect("a message within 10 s")
                .expect("open")
                .expect("message");
            let Ok(text) = message.to_text() else {
                continue;
            };
            let v: serde_json::Value = serde_json::from_str(text).expect("JSON");
            let seq = v["seq"].as_u64().expect("seq");
            if v["type"] == "INITIAL_VISITORS" {
                if last.is_some() {
                    resynced_at.push(seq);
                }
                *last = Some(seq);
            } else {
                let l = last.expect("a snapshot first");
                assert_eq!(seq, l + 1, "gapless, in order: {v}");
                *last = Some(seq);
            }
        }
    };
    hear(0, &mut last, &mut resynced_at).await;
    let ping = |n: u64| Ping {
        kind: PingKind::PageView,
        tab_id: "tab".to_owned(),
        url: format!("https://example.com/{n}"),
        visibility: Visibility::Visible,
        referrer: None,
        user_agent: None,
        website: "example.com".to_owned(),
        client_timestamp: None,
        page_id: None,
    };
    // One message per new visitor.
    // 60 is lost: 61 shows the gap.
    for n in 1..=61 {
        let out = writer
            .track(&site.id, &format!("v{n}"), &ping(n), None)
            .await
            .expect("tracked");
        assert_eq!(out.messages.last().map(|m| m.seq), Some(n));
    }
    hear(61, &mut last, &mut resynced_at).await;
    assert!(
        resynced_at.is_empty(),
        "the first 20 lost messages were replayed: {resynced_at:?}"
    );
    for n in 62..=500 {
        writer
            .track(&site.id, &format!("v{n}"), &ping(n), None)
            .await
            .expect("tracked");
    }
    hear(500, &mut last, &mut resynced_at).await;
    assert_eq!(
        resynced_at.len(),
        1,
        "one resync for the window the log had lost: {resynced_at:?}"
    );
    assert!(
        resynced_at[0] > 400,
        "the snapshot covers the lost window: {resynced_at:?}"
    );
    assert_eq!(last, Some(500));
    host.shutdown().await;
}
