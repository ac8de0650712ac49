use std::time::{Duration, Instant};

use crate::{AppendError, OutboxLimits, Store, WhenFull};

fn limits(max_bytes: u64, when_full: WhenFull) -> OutboxLimits {
    OutboxLimits {
        max_bytes,
        ttl: None,
        when_full,
    }
}

const BIG: OutboxLimits = OutboxLimits {
    max_bytes: 1 << 30,
    ttl: None,
    when_full: WhenFull::Reject,
};

fn record(i: u32) -> Vec<u8> {
    format!("record {i}").into_bytes()
}

#[tokio::test]
async fn appends_read_back_in_order_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut ids = Vec::new();
    {
        let outbox = Store::open(dir.path()).unwrap().outbox(BIG);
        for i in 0..10 {
            ids.push(outbox.append(record(i)).await.unwrap());
        }
        ids.extend(
            outbox
                .append_batch((10..20).map(record).collect())
                .await
                .unwrap(),
        );
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let outbox = Store::open(dir.path()).unwrap().outbox(BIG);
    let all = outbox.read_after(0, 100).unwrap();
    let expected: Vec<_> = ids.iter().copied().zip((0..20).map(record)).collect();
    assert_eq!(all, expected);
    // `after` and `limit` page through it.
    let page = outbox.read_after(ids[4], 3).unwrap();
    assert_eq!(page, expected[5..8]);
    let stats = outbox.stats();
    assert_eq!((stats.depth, stats.appended), (20, 0));
    assert_eq!(
        stats.bytes,
        expected.iter().map(|(_, r)| r.len() as u64).sum::<u64>()
    );
    assert!(stats.oldest_age.is_some());
}

#[tokio::test]
async fn ids_are_never_reused_after_emptying_and_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let last = {
        let store = Store::open(dir.path()).unwrap();
        let outbox = store.outbox(BIG);
        let ids = outbox.append_batch(vec![record(0); 5]).await.unwrap();
        outbox.acknowledge(&ids);
        store.flush().await.unwrap();
        let stats = outbox.stats();
        assert_eq!((stats.depth, stats.bytes, stats.acknowledged), (0, 0, 5));
        assert_eq!(stats.oldest_age, None);
        ids[4]
    };
    let outbox = Store::open(dir.path()).unwrap().outbox(BIG);
    assert_eq!(outbox.read_after(0, 100).unwrap(), []);
    assert!(outbox.append(record(1)).await.unwrap() > last);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_share_commits() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Store::open(dir.path()).unwrap().outbox(BIG);
    let tasks: Vec<_> = (0..1000)
        .map(|i| {
            let outbox = outbox.clone();
            tokio::spawn(async move { outbox.append(record(i)).await.unwrap() })
        })
        .collect();
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.unwrap());
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 1000);
    let stats = outbox.stats();
    assert_eq!(stats.appended, 1000);
    // One commit per append would be 1000 (and take seconds of fsyncs).
    assert!(stats.commits < 250, "{} commits", stats.commits);
}

#[tokio::test]
async fn reject_refuses_what_does_not_fit_and_batches_are_all_or_nothing() {
    let outbox = Store::open_in_memory()
        .unwrap()
        .outbox(limits(10, WhenFull::Reject));
    let a = outbox.append(b"1234".to_vec()).await.unwrap();
    outbox.append(b"5678".to_vec()).await.unwrap();
    let err = outbox.append(b"abc".to_vec()).await.unwrap_err();
    assert!(
        matches!(err, AppendError::Full { max_bytes: 10 }),
        "{err:?}"
    );
    let err = outbox.append(vec![0; 11]).await.unwrap_err();
    assert!(
        matches!(
            err,
            AppendError::TooLarge {
                size: 11,
                max_bytes: 10
            }
        ),
        "{err:?}"
    );
    outbox.acknowledge(&[a]);
    // 6 bytes free: a batch of 3 + 4 fails whole.
    let err = outbox
        .append_batch(vec![b"123".to_vec(), b"1234".to_vec()])
        .await
        .unwrap_err();
    assert!(matches!(err, AppendError::Full { .. }), "{err:?}");
    let stats = outbox.stats();
    assert_eq!((stats.depth, stats.bytes, stats.dropped), (1, 4, 0));
    assert_eq!(outbox.append_batch(vec![]).await.unwrap(), []);
}

#[tokio::test]
async fn drop_oldest_makes_room_and_counts_persistently() {
    let dir = tempfile::tempdir().unwrap();
    let ids = {
        let outbox = Store::open(dir.path())
            .unwrap()
            .outbox(limits(10, WhenFull::DropOldest));
        let mut ids = Vec::new();
        for r in [b"aaaa", b"bbbb", b"cccc"] {
            ids.push(outbox.append(r.to_vec()).await.unwrap());
        }
        // A batch of 8 bytes drops "bbbb" too.
        ids.extend(
            outbox
                .append_batch(vec![b"dddd".to_vec(), b"eeee".to_vec()])
                .await
                .unwrap(),
        );
        let stats = outbox.stats();
        assert_eq!((stats.depth, stats.bytes, stats.dropped), (2, 8, 3));
        ids
    };
    let outbox = Store::open(dir.path())
        .unwrap()
        .outbox(limits(10, WhenFull::DropOldest));
    assert_eq!(
        outbox.read_after(0, 10).unwrap(),
        [(ids[3], b"dddd".to_vec()), (ids[4], b"eeee".to_vec())]
    );
    assert_eq!(outbox.stats().dropped, 3);
}

#[tokio::test]
async fn expired_records_are_skipped_deleted_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let ttl = Duration::from_millis(30);
    let limits = OutboxLimits {
        ttl: Some(ttl),
        ..limits(10, WhenFull::Reject)
    };
    let outbox = store.outbox(limits);
    let old = outbox.append(b"old".to_vec()).await.unwrap();
    let appended = Instant::now();
    // Time has to pass for a TTL; poll the condition against a deadline.
    let deadline = appended + Duration::from_secs(10);
    loop {
        let records = outbox.read_after(0, 10).unwrap();
        assert!(records.is_empty() || records == [(old, b"old".to_vec())]);
        store.flush().await.unwrap();
        if outbox.stats().expired == 1 {
            assert_eq!(records, []);
            break;
        }
        assert!(Instant::now() < deadline, "never expired");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(outbox.stats().depth, 0);
    // Appends remove expired records even under Reject: 6 + 6 > 10 but the first expires.
    outbox.append(b"first!".to_vec()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Err(AppendError::Full { .. }) = outbox.append(b"second".to_vec()).await {
        assert!(Instant::now() < deadline, "never expired");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(outbox.stats().expired, 2);
    drop((outbox, store));
    assert_eq!(
        Store::open(dir.path())
            .unwrap()
            .outbox(limits)
            .stats()
            .expired,
        2
    );
}

#[tokio::test]
async fn wait_after_resolves_once_a_newer_record_is_committed() {
    let outbox = Store::open_in_memory().unwrap().outbox(BIG);
    let first = outbox.append(record(0)).await.unwrap();
    // Already there: resolves at once.
    outbox.wait_after(first - 1).await;
    // Not yet: polled once, it is pending.
    tokio::select! {
        biased;
        () = outbox.wait_after(first) => panic!("resolved without a new record"),
        () = std::future::ready(()) => {}
    }
    let waiter = tokio::spawn({
        let outbox = outbox.clone();
        async move { outbox.wait_after(first).await }
    });
    let second = outbox.append(record(1)).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("wait_after did not resolve")
        .unwrap();
    assert_eq!(outbox.read_after(first, 10).unwrap(), [(second, record(1))]);
}

#[tokio::test]
async fn acknowledgements_are_committed_without_waiting_and_unknown_ids_ignored() {
    let store = Store::open_in_memory().unwrap();
    let outbox = store.outbox(BIG);
    let ids = outbox
        .append_batch((0..5).map(record).collect())
        .await
        .unwrap();
    outbox.acknowledge(&ids[..2]);
    outbox.acknowledge(&ids[..1]); // twice
    outbox.acknowledge(&[9999]);
    store.flush().await.unwrap();
    let stats = outbox.stats();
    assert_eq!((stats.depth, stats.acknowledged), (3, 2));
    assert_eq!(outbox.read_after(0, 1).unwrap(), [(ids[2], record(2))]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_append_does_not_spoil_its_group() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Store::open(dir.path())
        .unwrap()
        .outbox(limits(500, WhenFull::Reject));
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let outbox = outbox.clone();
            tokio::spawn(async move { outbox.append(vec![1; 10]).await })
        })
        .collect();
    let (mut stored, mut full) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => stored += 1,
            Err(AppendError::Full { max_bytes: 500 }) => full += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!((stored, full), (50, 50));
    let stats = outbox.stats();
    assert_eq!((stats.depth, stats.bytes, stats.appended), (50, 500, 50));
    assert_eq!(outbox.read_after(0, 1000).unwrap().len(), 50);
}

#[tokio::test]
async fn discarded_records_count_as_dropped_and_the_count_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        let outbox = store.outbox(BIG);
        let ids = outbox
            .append_batch((0..3).map(record).collect())
            .await
            .unwrap();
        outbox.discard(&ids[..2]);
        outbox.acknowledge(&ids[2..]);
        store.flush().await.unwrap();
        let stats = outbox.stats();
        assert_eq!((stats.depth, stats.dropped, stats.acknowledged), (0, 2, 1));
    }
    let outbox = Store::open(dir.path()).unwrap().outbox(BIG);
    assert_eq!(outbox.stats().dropped, 2);
}
