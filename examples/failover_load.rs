//! Load generator for `scripts/bench/failover_timeline.sh`: clients doing SET and GET through one
//! address, counted per second of the run, errors included.
//!
//! `redis-benchmark` exits at the first error reply, so it can't measure a failover. Each client
//! here owns a connection and its own keys (spread over all slots), and loops: SET the next key
//! to an increasing number, then GET one of its keys at random. Per second of the run it counts
//! successful SETs and GETs, errors by their first word (client-side failures as `io`,
//! `connect` and `timeout`), the latency of successful requests, and **lost writes**: a GET
//! that returns an older value than the last SET of that key the proxy acknowledged with `+OK`
//! (or no value). After the run, every key is read once more to count the acknowledged writes
//! that are gone for good.
//!
//! Raw RESP over a TCP socket, written for this tool: no client library retries or reconnects
//! behind its back. After an I/O error or a timeout the client reconnects (the replies of a
//! connection whose request timed out can't be matched any more).
//!
//! Output on stdout: `#`-comment lines with the start time (Unix ms), the final check and up to
//! three distinct messages of each error kind, then a CSV table, one row per second (see `print_report`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Parser;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

#[derive(Debug, Parser)]
#[command(about = "SET/GET load with per-second counts, for scripts/bench/failover_timeline.sh")]
struct Args {
    /// Address to load, host:port (the proxy).
    #[arg(long)]
    addr: String,
    /// Concurrent clients, one connection each.
    #[arg(long, default_value_t = 20)]
    clients: usize,
    /// Length of the run in seconds.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Keys each client writes and reads (`fo:<client>:<n>`).
    #[arg(long, default_value_t = 500)]
    keys_per_client: usize,
    /// A request unanswered this long counts as `timeout` and its connection is replaced.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
}

/// Counts of one second of the run.
#[derive(Debug, Default, Clone)]
struct Second {
    ok_set: u64,
    ok_get: u64,
    lost: u64,
    errors: BTreeMap<String, u64>,
    latencies_us: Vec<u32>,
}

/// What one client saw.
#[derive(Debug, Default)]
struct Tally {
    seconds: Vec<Second>,
    /// The first few distinct messages of each error kind.
    samples: BTreeMap<String, Vec<String>>,
    /// After the run: keys read back, acknowledged writes missing, keys that could not be read.
    checked: u64,
    lost_final: u64,
    unreadable: u64,
}

impl Tally {
    fn second(&mut self, start: Instant) -> &mut Second {
        let index = usize::try_from(start.elapsed().as_secs()).unwrap_or(usize::MAX);
        if self.seconds.len() <= index {
            self.seconds.resize(index + 1, Second::default());
        }
        &mut self.seconds[index]
    }

    fn error(&mut self, start: Instant, kind: &str, message: &str) {
        *self
            .second(start)
            .errors
            .entry(kind.to_string())
            .or_default() += 1;
        add_sample(&mut self.samples, kind, message);
    }
}

/// Distinct messages kept per error kind.
const SAMPLES_PER_KIND: usize = 3;

fn add_sample(samples: &mut BTreeMap<String, Vec<String>>, kind: &str, message: &str) {
    let kept = samples.entry(kind.to_string()).or_default();
    if kept.len() < SAMPLES_PER_KIND && !kept.iter().any(|m| m == message) {
        kept.push(message.to_string());
    }
}

/// A reply, as far as this tool needs to tell replies apart.
#[derive(Debug)]
enum Reply {
    Status(String),
    Error(String),
    Bulk(Option<Vec<u8>>),
}

/// Why a request got no reply.
#[derive(Debug)]
enum Failure {
    Io(String),
    Timeout,
}

struct Connection {
    stream: BufReader<TcpStream>,
}

impl Connection {
    async fn open(addr: &str) -> std::io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream: BufReader::new(stream),
        })
    }

    async fn request(&mut self, args: &[&[u8]], timeout: Duration) -> Result<Reply, Failure> {
        let mut frame = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            frame.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            frame.extend_from_slice(arg);
            frame.extend_from_slice(b"\r\n");
        }
        let exchange = async {
            self.stream.get_mut().write_all(&frame).await?;
            self.read_reply().await
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => Err(Failure::Io(e.to_string())),
            Err(_) => Err(Failure::Timeout),
        }
    }

    async fn read_reply(&mut self) -> std::io::Result<Reply> {
        let mut line = Vec::new();
        if self.stream.read_until(b'\n', &mut line).await? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed by the proxy",
            ));
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        let (kind, rest) = text.split_at(text.len().min(1));
        Ok(match kind {
            "+" => Reply::Status(rest.to_string()),
            "-" => Reply::Error(rest.to_string()),
            "$" => {
                let len: i64 = rest.parse().map_err(|_| invalid(&text))?;
                if len < 0 {
                    Reply::Bulk(None)
                } else {
                    let len = usize::try_from(len).map_err(|_| invalid(&text))?;
                    let mut value = vec![0; len + 2];
                    self.stream.read_exact(&mut value).await?;
                    value.truncate(len);
                    Reply::Bulk(Some(value))
                }
            }
            // SET and GET only ever get the replies above; anything else ends the connection.
            _ => return Err(invalid(&text)),
        })
    }
}

fn invalid(line: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("unexpected reply line {line:?}"),
    )
}

/// Small xorshift generator: which key a GET reads needs no statistical quality.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        usize::try_from(self.0 % n.max(1) as u64).unwrap_or(0)
    }
}

/// A value: the write's number, zero-padded to 64 bytes like the e2e benchmark's values.
fn value_of(seq: u64) -> Vec<u8> {
    format!("{seq:064}").into_bytes()
}

fn seq_of(value: &[u8]) -> Option<u64> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// The first word of an error reply: its kind (CLUSTERDOWN, TRYAGAIN, ERR, ...).
fn error_kind(message: &str) -> String {
    message.split_whitespace().next().unwrap_or("-").to_string()
}

async fn client(id: usize, args: &Args, start: Instant, deadline: Instant) -> Tally {
    let timeout = Duration::from_millis(args.timeout_ms);
    let keys: Vec<Vec<u8>> = (0..args.keys_per_client)
        .map(|n| format!("fo:{id}:{n}").into_bytes())
        .collect();
    // Per key: the last write acknowledged with +OK (0: none yet).
    let mut acked = vec![0u64; keys.len()];
    let mut tally = Tally::default();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (id as u64 + 1));
    let mut conn: Option<Connection> = None;
    let mut seq = 0u64;
    let mut next_key = 0usize;
    let mut get_turn = false;

    while Instant::now() < deadline {
        let Some(c) = conn.as_mut() else {
            match Connection::open(&args.addr).await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    tally.error(start, "connect", &e.to_string());
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            continue;
        };
        let sent = Instant::now();
        let (key_index, reply) = if get_turn {
            let k = rng.below(keys.len());
            (k, c.request(&[b"GET", &keys[k]], timeout).await)
        } else {
            let k = next_key;
            next_key = (next_key + 1) % keys.len();
            seq += 1;
            let value = value_of(seq);
            (k, c.request(&[b"SET", &keys[k], &value], timeout).await)
        };
        let was_get = get_turn;
        get_turn = !get_turn;
        let latency = u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX);
        match reply {
            Ok(Reply::Status(status)) if !was_get && status == "OK" => {
                acked[key_index] = seq;
                let second = tally.second(start);
                second.ok_set += 1;
                second.latencies_us.push(latency);
            }
            Ok(Reply::Bulk(value)) if was_get => {
                let found = value.as_deref().and_then(seq_of).unwrap_or(0);
                let second = tally.second(start);
                second.ok_get += 1;
                second.latencies_us.push(latency);
                if found < acked[key_index] {
                    // Count it once: from now on, the value read is what the key holds.
                    second.lost += 1;
                    acked[key_index] = found;
                }
            }
            Ok(Reply::Error(message)) => tally.error(start, &error_kind(&message), &message),
            Ok(other) => tally.error(start, "unexpected", &format!("{other:?}")),
            Err(Failure::Io(e)) => {
                tally.error(start, "io", &e);
                conn = None;
            }
            Err(Failure::Timeout) => {
                tally.error(start, "timeout", &format!("no reply within {timeout:?}"));
                conn = None;
            }
        }
    }

    final_check(&args.addr, &keys, &acked, timeout, &mut tally).await;
    tally
}

/// Reads every key once more (a few tries each) and counts acknowledged writes that are gone.
async fn final_check(
    addr: &str,
    keys: &[Vec<u8>],
    acked: &[u64],
    timeout: Duration,
    tally: &mut Tally,
) {
    let mut conn: Option<Connection> = None;
    for (key, &want) in keys.iter().zip(acked) {
        let mut read = None;
        for _ in 0..5 {
            if conn.is_none() {
                conn = Connection::open(addr).await.ok();
            }
            let Some(c) = conn.as_mut() else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            match c.request(&[b"GET", key], timeout).await {
                Ok(Reply::Bulk(value)) => {
                    read = Some(value.as_deref().and_then(seq_of).unwrap_or(0));
                    break;
                }
                Ok(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                Err(_) => conn = None,
            }
        }
        match read {
            Some(found) => {
                tally.checked += 1;
                if found < want {
                    tally.lost_final += 1;
                }
            }
            None => tally.unreadable += 1,
        }
    }
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Prints the comment lines, then `second,ok_set,ok_get,lost,errors,error_kinds,p50_us,p99_us,
/// max_us`, where `error_kinds` is `KIND=n;KIND=n` and latencies are of successful requests.
fn print_report(start_unix_ms: u128, args: &Args, tallies: Vec<Tally>) {
    let mut seconds: Vec<Second> = Vec::new();
    let mut samples = BTreeMap::new();
    let (mut checked, mut lost_final, mut unreadable) = (0, 0, 0);
    for tally in tallies {
        if seconds.len() < tally.seconds.len() {
            seconds.resize(tally.seconds.len(), Second::default());
        }
        for (total, s) in seconds.iter_mut().zip(tally.seconds) {
            total.ok_set += s.ok_set;
            total.ok_get += s.ok_get;
            total.lost += s.lost;
            for (kind, n) in s.errors {
                *total.errors.entry(kind).or_default() += n;
            }
            total.latencies_us.extend(s.latencies_us);
        }
        for (kind, messages) in tally.samples {
            for message in messages {
                add_sample(&mut samples, &kind, &message);
            }
        }
        checked += tally.checked;
        lost_final += tally.lost_final;
        unreadable += tally.unreadable;
    }
    // The final check runs after the deadline; its seconds are not part of the timeline.
    seconds.truncate(usize::try_from(args.seconds).unwrap_or(usize::MAX));
    println!("# start_unix_ms={start_unix_ms}");
    println!(
        "# clients={} seconds={} keys_per_client={} timeout_ms={}",
        args.clients, args.seconds, args.keys_per_client, args.timeout_ms
    );
    println!("# final_check keys={checked} lost={lost_final} unreadable={unreadable}");
    for (kind, messages) in &samples {
        for message in messages {
            println!("# sample {kind}: {}", message.replace('\n', " "));
        }
    }
    println!("second,ok_set,ok_get,lost,errors,error_kinds,p50_us,p99_us,max_us");
    for (i, mut s) in seconds.into_iter().enumerate() {
        s.latencies_us.sort_unstable();
        let errors: u64 = s.errors.values().sum();
        let kinds: Vec<String> = s.errors.iter().map(|(k, n)| format!("{k}={n}")).collect();
        println!(
            "{i},{},{},{},{errors},{},{},{},{}",
            s.ok_set,
            s.ok_get,
            s.lost,
            kinds.join(";"),
            percentile(&s.latencies_us, 0.50),
            percentile(&s.latencies_us, 0.99),
            s.latencies_us.last().copied().unwrap_or(0),
        );
    }
}

fn main() -> anyhow::Result<()> {
    let args = Arc::new(Args::parse());
    anyhow::ensure!(args.clients > 0, "--clients must be at least 1");
    anyhow::ensure!(
        args.keys_per_client > 0,
        "--keys-per-client must be at least 1"
    );
    // One thread: the load should not take more of the machine's CPU than one core.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the tokio runtime")?;
    let start_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("system clock before 1970")?
        .as_millis();
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.seconds);
    let tallies = runtime.block_on(async {
        let mut clients = JoinSet::new();
        for id in 0..args.clients {
            let args = Arc::clone(&args);
            clients.spawn(async move { client(id, &args, start, deadline).await });
        }
        let mut tallies = Vec::with_capacity(args.clients);
        while let Some(done) = clients.join_next().await {
            tallies.push(done.context("a client task failed")?);
        }
        anyhow::Ok(tallies)
    })?;
    print_report(start_unix_ms, &args, tallies);
    Ok(())
}
