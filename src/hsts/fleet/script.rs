//! The Lua script that applies one change to the shared store atomically, and the records it
//! reads and writes.
//!
//! One Redis hash per domain (`<prefix><domain>`) holds `s` (source: `learned`, `manual` or
//! `deleted` for a tombstone), `i` (includeSubDomains, 0/1), `o` (when the change was observed,
//! Unix ms on Redis's clock) and `e` (when it expires, same clock); the key's TTL is set to that
//! expiry with `PEXPIREAT`, so Redis forgets an entry when its max-age runs out.
//!
//! Times are measured on Redis's clock (`TIME` inside the script) so that instances whose clocks
//! disagree still agree on expiry and on which observation is newer: an instance sends how many
//! milliseconds ago it observed the change (its own monotonic clock), never a wall-clock time.
//!
//! The rules are the local store's (RFC 6797 §8.1 and Chromium's dynamic state), decided here
//! once for the whole fleet:
//! - an older observation never overwrites a newer one;
//! - a manual entry outranks a learned one: a header never replaces it, `max-age=0` never
//!   removes it;
//! - `max-age=0` forgets only a learned entry (§6.1.1);
//! - a deletion (`max-age=0` or the operator's `DELETE`) leaves a tombstone for
//!   [`TOMBSTONE_MS`], so that a slow instance replaying an older write cannot resurrect it;
//! - a "seed" (an instance offering an entry from its local copy after Redis lost its data)
//!   counts as the oldest possible observation and is written only where the key is absent.
//!
//! Every accepted change is appended to the stream `<prefix>:stream` (`XADD … MAXLEN ~`), which
//! is how the other instances hear it. A refused change re-announces the state that won, so
//! that every instance, including the writer, converges by applying the stream in order.

use redis::Script;

/// How long a deletion's tombstone outlives it. Long enough for an instance with queued
/// writes to reconnect and replay them (reconnect backoff tops out at 5 s), short enough
/// that the tombstones of a busy fleet stay few.
pub const TOMBSTONE_MS: u64 = 10 * 60 * 1000;

/// Entries kept in the change stream (approximately: `MAXLEN ~`). An instance that missed
/// more than this while disconnected does a full rescan instead of catching up.
pub const STREAM_MAXLEN: u64 = 100_000;

const APPLY_LUA: &str = r#"
local key, stream = KEYS[1], KEYS[2]
local op, incl, max_age, age_ms = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local node, tomb_ms, maxlen, domain = ARGV[5], tonumber(ARGV[6]), ARGV[7], ARGV[8]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function fmt(n) return string.format('%.0f', n) end
local cur = redis.call('HMGET', key, 's', 'i', 'o')
local cs, ci, co = cur[1], cur[2] or '0', tonumber(cur[3])
local function announce(src, inc, remaining)
  return redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*',
    'd', domain, 's', src, 'i', inc, 'r', fmt(remaining), 't', fmt(now), 'n', node)
end
local function refuse()
  if not cs then return {0, '', '0', 0, ''} end
  local pttl = redis.call('PTTL', key)
  if pttl < 0 then return {0, '', '0', 0, ''} end
  return {0, cs, ci, pttl, announce(cs, ci, pttl)}
end
local obs = now - age_ms
local seed = false
if string.sub(op, 1, 5) == 'seed-' then
  if cs then return {0, cs, ci, redis.call('PTTL', key), ''} end
  seed = true
  op = string.sub(op, 6)
  obs = 0
end
local newer = cs ~= false and cs ~= nil and co ~= nil and co > obs
if op == 'learned' then
  if cs == 'manual' or newer then return refuse() end
elseif op == 'manual' then
  if newer and cs ~= 'learned' then return refuse() end
elseif op == 'forget' then
  if cs == 'manual' or newer then return refuse() end
elseif op == 'delete' then
  if newer then return refuse() end
else
  return redis.error_reply('unknown op ' .. op)
end
if op == 'forget' or op == 'delete' then
  redis.call('DEL', key)
  redis.call('HSET', key, 's', 'deleted', 'i', '0', 'o', fmt(obs), 'e', fmt(now + tomb_ms))
  redis.call('PEXPIRE', key, tomb_ms)
  return {1, 'deleted', '0', tomb_ms, announce('deleted', '0', tomb_ms)}
end
local exp = obs + max_age * 1000
if seed then exp = now + max_age * 1000 end
if exp <= now then return refuse() end
redis.call('DEL', key)
redis.call('HSET', key, 's', op, 'i', incl, 'o', fmt(obs), 'e', fmt(exp))
redis.call('PEXPIREAT', key, fmt(exp))
return {1, op, incl, exp - now, announce(op, incl, exp - now)}
"#;

/// The script, hashed once; `EVALSHA` after `SCRIPT LOAD` at every (re)connection.
pub fn apply_script() -> Script {
    Script::new(APPLY_LUA)
}

/// What a write asks the shared store to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// A `Strict-Transport-Security` header with max-age > 0 was noted.
    Learned,
    /// The operator added an entry.
    Manual,
    /// A header with `max-age=0`: forget a learned entry only.
    Forget,
    /// The operator deleted the entry.
    Delete,
    /// From the local copy, after Redis lost it: written only where nothing is.
    SeedLearned,
    /// As [`OpKind::SeedLearned`], for a manual entry.
    SeedManual,
}

impl OpKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Learned => "learned",
            OpKind::Manual => "manual",
            OpKind::Forget => "forget",
            OpKind::Delete => "delete",
            OpKind::SeedLearned => "seed-learned",
            OpKind::SeedManual => "seed-manual",
        }
    }
}

/// What a key or a stream message says the shared state of one domain now is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoteState {
    /// An entry of this source, lasting `remaining_ms` more from when it was read.
    Entry {
        manual: bool,
        include_subdomains: bool,
        remaining_ms: u64,
    },
    /// Deleted (a tombstone): the domain must not be enforced from a dynamic entry.
    Deleted,
}

impl RemoteState {
    /// Reads the `s`, `i` and remaining-ms fields of a key or a stream message; `None` for
    /// anything this version does not understand (a newer writer's source, say), which is
    /// then left alone rather than guessed at.
    pub fn parse(source: &str, include_subdomains: &str, remaining_ms: i64) -> Option<Self> {
        let include_subdomains = include_subdomains == "1";
        match source {
            "deleted" => Some(RemoteState::Deleted),
            "learned" | "manual" if remaining_ms > 0 => Some(RemoteState::Entry {
                manual: source == "manual",
                include_subdomains,
                remaining_ms: remaining_ms as u64,
            }),
            _ => None,
        }
    }

    /// The same state, `elapsed_ms` later (a message read some time after it was written).
    /// An entry whose time ran out meanwhile reads as gone.
    pub fn aged(self, elapsed_ms: u64) -> Option<Self> {
        match self {
            RemoteState::Entry {
                manual,
                include_subdomains,
                remaining_ms,
            } => (remaining_ms > elapsed_ms).then_some(RemoteState::Entry {
                manual,
                include_subdomains,
                remaining_ms: remaining_ms - elapsed_ms,
            }),
            RemoteState::Deleted => Some(RemoteState::Deleted),
        }
    }
}

/// Whole seconds of max-age for a local entry that must last `remaining_ms`: rounded up, so
/// that an instance never drops an entry before Redis does (the store counts whole seconds).
pub fn max_age_secs(remaining_ms: u64) -> u64 {
    remaining_ms.div_ceil(1000).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_states_parse_from_fields() {
        let rows: &[(&str, &str, i64, Option<RemoteState>)] = &[
            (
                "learned",
                "1",
                5_000,
                Some(RemoteState::Entry {
                    manual: false,
                    include_subdomains: true,
                    remaining_ms: 5_000,
                }),
            ),
            (
                "manual",
                "0",
                1,
                Some(RemoteState::Entry {
                    manual: true,
                    include_subdomains: false,
                    remaining_ms: 1,
                }),
            ),
            // A tombstone whatever its time left.
            ("deleted", "0", 10, Some(RemoteState::Deleted)),
            // PTTL -2 (gone) or -1 (no TTL: not written by us): nothing to apply.
            ("learned", "1", -2, None),
            ("learned", "1", -1, None),
            // A source this version does not know is left alone.
            ("preload", "1", 5_000, None),
            ("", "0", 0, None),
        ];
        for (source, incl, remaining, expected) in rows {
            assert_eq!(
                RemoteState::parse(source, incl, *remaining),
                *expected,
                "{source} {incl} {remaining}"
            );
        }
    }

    #[test]
    fn aging_and_rounding() {
        let e = RemoteState::Entry {
            manual: false,
            include_subdomains: false,
            remaining_ms: 2_000,
        };
        assert_eq!(
            e.aged(500),
            Some(RemoteState::Entry {
                manual: false,
                include_subdomains: false,
                remaining_ms: 1_500
            })
        );
        assert_eq!(e.aged(2_000), None);
        assert_eq!(
            RemoteState::Deleted.aged(u64::MAX),
            Some(RemoteState::Deleted)
        );
        // Rounded up: never forgotten locally before Redis forgets it.
        assert_eq!(max_age_secs(1_500), 2);
        assert_eq!(max_age_secs(2_000), 2);
        assert_eq!(max_age_secs(1), 1);
        assert_eq!(max_age_secs(0), 1);
    }
}
