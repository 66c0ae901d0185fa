//! The proxy's slot for a key is the cluster's own: 10,000 random keys against CLUSTER KEYSLOT.

use crate::common::{RawClient, TestCluster, TestProxy, encode_command};
use slotproxy::cluster::hash_slot;

/// Deterministic xorshift, so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn random_key(rng: &mut Rng) -> Vec<u8> {
    let len = (rng.next() % 24) as usize;
    let mut key: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
    // Make hash tags common: braces at random places, empty tags, nested and unmatched ones.
    match rng.next() % 6 {
        0 => key.extend_from_slice(b"{}"),
        1 => {
            let at = (rng.next() as usize) % (key.len() + 1);
            key.insert(at, b'{');
            let close = at + 1 + (rng.next() as usize) % (key.len() - at);
            key.insert(close, b'}');
        }
        2 => key
            .splice(0..0, b"{user1000}".iter().copied())
            .for_each(drop),
        3 => key.extend_from_slice(b"{{x}}"),
        _ => {}
    }
    key
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_random_keys_hash_like_cluster_keyslot() {
    let cluster = TestCluster::start(3, 1);
    let proxy = TestProxy::start(&cluster).await;
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let keys: Vec<Vec<u8>> = (0..10_000).map(|_| random_key(&mut rng)).collect();

    // One pipeline to a node, one through the proxy (answered locally from the same function).
    let mut pipeline = Vec::new();
    for key in &keys {
        pipeline.extend(encode_command(&[b"CLUSTER", b"KEYSLOT", key]));
    }
    let mut node = RawClient::connect(cluster.nodes()[0].addr.as_str()).await;
    let mut via_proxy = RawClient::connect(proxy.addr).await;
    node.send(&pipeline).await;
    via_proxy.send(&pipeline).await;
    let mut tagged = 0;
    for key in &keys {
        let want = node.read_reply().await;
        let got = via_proxy.read_reply().await;
        assert_eq!(got, want, "key {key:?}");
        assert_eq!(
            format!(":{}\r\n", hash_slot(key).0).into_bytes(),
            want,
            "key {key:?}"
        );
        tagged += usize::from(key.contains(&b'{'));
    }
    assert!(tagged > 3_000, "only {tagged} keys had braces");
}
