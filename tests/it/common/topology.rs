//! What the nodes say, parsed: `CLUSTER NODES` lines, plus the slot arithmetic the harness needs
//! (redis-cli's slot ranges, the hash slot of a key). Pure functions, no I/O.

/// Number of hash slots in a Redis Cluster.
pub(crate) const SLOT_COUNT: u16 = 16_384;

/// The slot ranges `redis-cli --cluster create` gives `primaries` primaries.
pub(crate) fn slot_ranges(primaries: usize) -> Vec<(u16, u16)> {
    let per_node = f64::from(SLOT_COUNT) / primaries as f64;
    let mut ranges = Vec::with_capacity(primaries);
    let mut first = 0u16;
    let mut cursor = 0.0f64;
    for i in 0..primaries {
        let mut last = (cursor + per_node - 1.0).round() as u16;
        if last >= SLOT_COUNT || i == primaries - 1 {
            last = SLOT_COUNT - 1;
        }
        last = last.max(first);
        ranges.push((first, last));
        first = last + 1;
        cursor += per_node;
    }
    ranges
}

/// The hash slot of `key` (CRC16-XMODEM of the hash tag or the whole key, mod 16384).
pub(crate) fn local_hash_slot(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    crc16::State::<crc16::XMODEM>::calculate(hashed) % SLOT_COUNT
}

/// One line of `CLUSTER NODES`.
#[derive(Debug, Clone)]
pub(crate) struct ViewEntry {
    pub(crate) id: String,
    pub(crate) flags: Vec<String>,
    /// `None` for a primary.
    pub(crate) primary_of: Option<String>,
    pub(crate) link_connected: bool,
    pub(crate) slots: Vec<(u16, u16)>,
    /// Slots shown as `[slot->-id]` or `[slot-<-id]` (only on the node's own line).
    pub(crate) in_transit: Vec<u16>,
    pub(crate) raw: String,
}

impl ViewEntry {
    pub(crate) fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    pub(crate) fn myself(&self) -> bool {
        self.has_flag("myself")
    }

    pub(crate) fn owns(&self, slot: u16) -> bool {
        self.slots
            .iter()
            .any(|&(first, last)| (first..=last).contains(&slot))
    }

    pub(crate) fn is_healthy(&self) -> bool {
        let bad = ["fail", "fail?", "handshake", "noaddr", "nofailover"];
        !self.flags.iter().any(|f| bad.contains(&f.as_str())) && self.link_connected
    }
}

/// The part of a view all nodes must agree on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ViewRow {
    pub(crate) id: String,
    pub(crate) primary_of: Option<String>,
    pub(crate) slots: Vec<(u16, u16)>,
}

pub(crate) fn view_rows(entries: &[ViewEntry]) -> Vec<ViewRow> {
    let mut rows: Vec<ViewRow> = entries
        .iter()
        .map(|e| ViewRow {
            id: e.id.clone(),
            primary_of: e.primary_of.clone(),
            slots: e.slots.clone(),
        })
        .collect();
    rows.sort();
    rows
}

pub(crate) fn parse_cluster_nodes(text: &str) -> Result<Vec<ViewEntry>, String> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(parse_cluster_nodes_line)
        .collect()
}

fn parse_cluster_nodes_line(line: &str) -> Result<ViewEntry, String> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.len() < 8 {
        return Err(format!("short CLUSTER NODES line: {line}"));
    }
    let mut slots = Vec::new();
    let mut in_transit = Vec::new();
    for token in &fields[8..] {
        if let Some(inner) = token.strip_prefix('[') {
            let slot = inner.split('-').next().and_then(|s| s.parse().ok());
            in_transit.push(slot.ok_or_else(|| format!("bad slot token {token}"))?);
            continue;
        }
        let (first, last) = token.split_once('-').unwrap_or((token, token));
        let parse = |s: &str| {
            s.parse::<u16>()
                .map_err(|e| format!("bad slot token {token}: {e}"))
        };
        slots.push((parse(first)?, parse(last)?));
    }
    slots.sort_unstable();
    Ok(ViewEntry {
        id: fields[0].to_string(),
        flags: fields[2].split(',').map(str::to_string).collect(),
        primary_of: (fields[3] != "-").then(|| fields[3].to_string()),
        link_connected: fields[7] == "connected",
        slots,
        in_transit,
        raw: line.to_string(),
    })
}
