//! [`RedisBus`] and the store's numbered publishing against a real `redis-server` (started
//! by the test on a free port, killed by pid): numbering, log and publish are one step, so
//! messages numbered by two connections at once arrive in `seq` order; the log replays a
//! range, and says when it no longer reaches back.

mod common;

use common::RedisServer;
use tippen_axum::Bus;
use tippen_core::protocol::{RemovalReason, Sequenced, ServerMessage};
use tippen_core::{Broadcast, SiteId, Store};
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
