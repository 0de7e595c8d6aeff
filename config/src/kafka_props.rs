//! The librdkafka properties weir sets itself, and what a job's `[kafka.properties]` may say about
//! them.
//!
//! Two kinds:
//! - **required** ([`required`]): weir's guarantees depend on the value (offsets committed only
//!   with the outputs they produced, an idempotent producer, co-partitioning, the consumer group,
//!   the transactional id). The engine sets them after the job's properties; a job that gives
//!   another value is rejected at validation, naming both values ([`conflicts`]). The same value is
//!   allowed.
//! - **tunable** ([`TUNABLE_DEFAULTS`]): weir picks a default (batching, compression, memory bounds,
//!   timeouts). The engine sets them only where the job does not ([`user_value`]): the job's value
//!   wins.
//!
//! Every other property is passed through as written.

use crate::{GroupProtocol, Guarantee, Job};
use std::collections::BTreeMap;

/// Which of weir's clients a property is set on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// The producer of outputs, changelog and repartition records.
    Producer,
    /// The group consumer of the input (and, where the property applies, the changelog restore
    /// consumer).
    Consumer,
    /// Every client weir creates, admin and metadata clients included.
    Every,
}

/// The value weir needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// A boolean, read as librdkafka reads one (`true`, `t`, `1`, `false`, `f`, `0`, any case).
    Bool(bool),
    /// One of these words, any case (librdkafka's synonyms); the first is weir's.
    Word(&'static [&'static str]),
    /// Exactly this string; the second part says where weir takes it from ("" for a constant).
    Exact(String, &'static str),
    /// An integer no larger than this.
    AtMost(i64),
    /// An integer no smaller than this.
    AtLeast(i64),
    /// Computed when the worker starts, from what this says: no value written in the file can
    /// be known to agree.
    AtRunTime(&'static str),
    /// Not set at all.
    Unset,
}

impl Need {
    /// Whether `value` gives librdkafka what weir needs.
    pub fn accepts(&self, value: &str) -> bool {
        let v = value.trim();
        match self {
            Need::Bool(b) => parse_bool(v) == Some(*b),
            Need::Word(words) => words.iter().any(|w| w.eq_ignore_ascii_case(v)),
            Need::Exact(s, _) => value == s,
            Need::AtMost(n) => v.parse::<i64>().is_ok_and(|x| x <= *n),
            Need::AtLeast(n) => v.parse::<i64>().is_ok_and(|x| x >= *n),
            Need::AtRunTime(_) | Need::Unset => false,
        }
    }

    /// The value as an error message names it.
    pub fn describe(&self) -> String {
        match self {
            Need::Bool(b) => b.to_string(),
            Need::Word(words) => words[0].to_string(),
            Need::Exact(s, "") => format!("{s:?}"),
            Need::Exact(s, from) => format!("{s:?} ({from})"),
            Need::AtMost(n) => format!("at most {n}"),
            Need::AtLeast(n) => format!("at least {n}"),
            Need::AtRunTime(from) => format!("the value weir derives from {from}"),
            Need::Unset => "it unset".to_string(),
        }
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    if ["true", "t", "1"].iter().any(|w| w.eq_ignore_ascii_case(v)) {
        Some(true)
    } else if ["false", "f", "0"]
        .iter()
        .any(|w| w.eq_ignore_ascii_case(v))
    {
        Some(false)
    } else {
        None
    }
}

/// A property weir needs a value of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Required {
    /// The name weir sets.
    pub name: &'static str,
    /// The other names librdkafka takes for it: its aliases, and `topic.`-prefixed forms of topic
    /// properties.
    pub aliases: &'static [&'static str],
    pub client: Client,
    pub need: Need,
    /// What depends on the value, as the error names it.
    pub why: &'static str,
    /// Whether weir sets it, after the job's properties. When not, weir leaves the job's value
    /// (which `need` accepts) or librdkafka's default in place: `acks` under idempotence, a
    /// tunable property with a floor.
    pub set_by_weir: bool,
    /// Where to say what was meant instead, if anywhere.
    pub instead: Option<&'static str>,
}

impl Required {
    /// Whether `key` (a `[kafka.properties]` key) names this property.
    pub fn is_named(&self, key: &str) -> bool {
        key == self.name || self.aliases.contains(&key)
    }

    /// The validation error for `key = value`, which this property does not accept.
    pub fn conflict_message(&self, key: &str, value: &str) -> String {
        let mut m = format!(
            "kafka.properties.{} = {value:?} conflicts with {}, which needs {}",
            toml_key(key),
            self.why,
            self.need.describe()
        );
        if self.set_by_weir {
            m.push_str(" (weir sets it)");
        }
        if let Some(instead) = self.instead {
            m.push_str("; ");
            m.push_str(instead);
        }
        m
    }
}

/// A key as TOML writes it: bare when it can be, quoted otherwise.
fn toml_key(key: &str) -> String {
    if !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        key.to_string()
    } else {
        format!("{key:?}")
    }
}

/// The properties weir needs for this job, with the values it needs.
pub fn required(job: &Job) -> Vec<Required> {
    let exactly_once = job.processing.guarantee == Guarantee::ExactlyOnce;
    let commits = "weir's commits (offsets are committed with the outputs and state they produced)";
    let brokers = match &job.kafka.bootstrap_servers {
        Some(b) => Need::Exact(b.clone(), "kafka.bootstrap_servers"),
        None => Need::AtRunTime("--brokers, WEIR_BROKERS or kafka.bootstrap_servers"),
    };
    let instance = match &job.runtime.instance_id {
        Some(i) => Need::Exact(i.clone(), "runtime.instance_id"),
        None => Need::AtRunTime("--instance-id, WEIR_INSTANCE_ID or runtime.instance_id"),
    };
    let mut all = vec![
        Required {
            name: "bootstrap.servers",
            aliases: aliases_of("bootstrap.servers"),
            client: Client::Every,
            need: brokers,
            why: "the brokers weir connects to",
            set_by_weir: true,
            instead: Some("set kafka.bootstrap_servers instead"),
        },
        Required {
            name: "group.id",
            aliases: aliases_of("group.id"),
            client: Client::Consumer,
            need: Need::Exact(job.name.get_ref().clone(), "the job's `name`"),
            why: "the job's consumer group",
            set_by_weir: true,
            instead: Some("the group is named after the job: rename the job instead"),
        },
        Required {
            name: "group.instance.id",
            aliases: aliases_of("group.instance.id"),
            client: Client::Consumer,
            need: instance,
            why: "static membership, whose id also names the worker's transactional producer",
            set_by_weir: true,
            instead: Some("set runtime.instance_id (or --instance-id) instead"),
        },
        Required {
            name: "enable.auto.commit",
            aliases: aliases_of("enable.auto.commit"),
            client: Client::Consumer,
            need: Need::Bool(false),
            why: commits,
            set_by_weir: true,
            instead: None,
        },
        Required {
            name: "enable.auto.offset.store",
            aliases: aliases_of("enable.auto.offset.store"),
            client: Client::Consumer,
            need: Need::Bool(false),
            why: commits,
            set_by_weir: true,
            instead: None,
        },
        Required {
            name: "isolation.level",
            aliases: aliases_of("isolation.level"),
            client: Client::Consumer,
            need: Need::Word(&["read_committed"]),
            why: if exactly_once {
                "exactly-once"
            } else {
                "reading only committed records (an aborted transaction's records must not count)"
            },
            set_by_weir: true,
            instead: None,
        },
        Required {
            name: "auto.offset.reset",
            aliases: aliases_of("auto.offset.reset"),
            client: Client::Consumer,
            need: Need::Word(&["earliest", "smallest", "beginning"]),
            why: "reading every record (a new group, an offset out of range and a state restore start from the earliest record kept)",
            set_by_weir: true,
            instead: None,
        },
        Required {
            name: "enable.idempotence",
            aliases: aliases_of("enable.idempotence"),
            client: Client::Producer,
            need: Need::Bool(true),
            why: "weir's producer, which must neither duplicate nor reorder records when it retries",
            set_by_weir: true,
            instead: None,
        },
        Required {
            name: "acks",
            aliases: aliases_of("acks"),
            client: Client::Producer,
            need: Need::Word(&["all", "-1"]),
            why: "the idempotent producer (enable.idempotence = true)",
            set_by_weir: false,
            instead: None,
        },
        Required {
            name: "max.in.flight.requests.per.connection",
            aliases: aliases_of("max.in.flight.requests.per.connection"),
            client: Client::Producer,
            need: Need::AtMost(5),
            why: "the idempotent producer (enable.idempotence = true)",
            set_by_weir: false,
            instead: None,
        },
        Required {
            name: "retries",
            aliases: aliases_of("retries"),
            client: Client::Producer,
            need: Need::AtLeast(1),
            why: "the idempotent producer (enable.idempotence = true)",
            set_by_weir: false,
            instead: None,
        },
        Required {
            name: "partitioner",
            aliases: aliases_of("partitioner"),
            client: Client::Producer,
            need: Need::Exact("murmur2_random".into(), ""),
            why: "co-partitioning with the Java clients' default partitioner",
            set_by_weir: true,
            instead: None,
        },
    ];
    let idle_close = job.pipeline.iter().any(
        |op| matches!(op.get_ref(), crate::Operator::Window(w) if w.close_idle_after.is_some()),
    );
    if idle_close {
        all.push(Required {
            name: "statistics.interval.ms",
            aliases: aliases_of("statistics.interval.ms"),
            client: Client::Consumer,
            need: Need::AtLeast(1),
            why: "close_idle_after (a task is idle only once the consumer's statistics show its input read to the end)",
            set_by_weir: false,
            instead: None,
        });
    }
    all.extend(assignment(job));
    all.push(if exactly_once {
        Required {
            name: "transactional.id",
            aliases: aliases_of("transactional.id"),
            client: Client::Producer,
            need: Need::AtRunTime("the job's name and the worker's instance id"),
            why: "exactly-once (a restarted worker fences its predecessor by this id)",
            set_by_weir: true,
            instead: Some("set runtime.instance_id (or --instance-id) to make it stable"),
        }
    } else {
        Required {
            name: "transactional.id",
            aliases: aliases_of("transactional.id"),
            client: Client::Producer,
            need: Need::Unset,
            why: "at-least-once, whose producer does not use transactions",
            set_by_weir: false,
            instead: Some("set processing.guarantee = \"exactly_once\" for transactions"),
        }
    });
    all
}

/// The job's value of a property, under `name` or any other name librdkafka takes for it (among
/// the properties of [`required`] and [`TUNABLE_DEFAULTS`]): the key it is written under, and the
/// value.
pub fn user_value<'a>(
    properties: &'a BTreeMap<String, String>,
    name: &str,
) -> Option<(&'a str, &'a str)> {
    let tunable = TUNABLE_DEFAULTS.iter().map(|t| (t.name, t.aliases));
    let (canonical, aliases): (&str, &[&str]) = match ALIASES
        .iter()
        .copied()
        .chain(tunable)
        .find(|(n, a)| *n == name || a.contains(&name))
    {
        Some(found) => found,
        None => (name, &[]),
    };
    std::iter::once(canonical)
        .chain(aliases.iter().copied())
        .find_map(|k| properties.get_key_value(k))
        .map(|(k, v)| (k.as_str(), v.as_str()))
}

/// The other names librdkafka takes for a required property.
fn aliases_of(name: &str) -> &'static [&'static str] {
    ALIASES
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(&[], |(_, a)| *a)
}

/// librdkafka's aliases of the required properties, and the `topic.`-prefixed names its topic
/// properties are also set by.
const ALIASES: &[(&str, &[&str])] = &[
    ("bootstrap.servers", &["metadata.broker.list"]),
    (
        "enable.auto.commit",
        &[
            "auto.commit.enable",
            "topic.enable.auto.commit",
            "topic.auto.commit.enable",
        ],
    ),
    ("auto.offset.reset", &["topic.auto.offset.reset"]),
    (
        "acks",
        &[
            "request.required.acks",
            "topic.acks",
            "topic.request.required.acks",
        ],
    ),
    ("max.in.flight.requests.per.connection", &["max.in.flight"]),
    ("retries", &["message.send.max.retries"]),
    ("partitioner", &["topic.partitioner"]),
];

/// One `[kafka.properties]` entry that contradicts a required property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The key as written in the file.
    pub key: String,
    pub message: String,
}

/// Every entry of the job's `[kafka.properties]` that contradicts what weir needs, in key order.
pub fn conflicts(job: &Job) -> Vec<Conflict> {
    conflicts_with(job, &required(job))
}

/// [`conflicts`] for the group protocol a worker resolved at run time (`WEIR_GROUP_PROTOCOL` may
/// name another than the file): the properties that protocol does not take.
pub fn conflicts_under(job: &Job, protocol: GroupProtocol) -> Vec<Conflict> {
    conflicts_with(job, &assignment_under(job, protocol))
}

fn conflicts_with(job: &Job, required: &[Required]) -> Vec<Conflict> {
    job.kafka
        .properties
        .iter()
        .filter_map(|(key, value)| {
            let r = required.iter().find(|r| r.is_named(key))?;
            (!r.need.accepts(value)).then(|| Conflict {
                key: key.clone(),
                message: r.conflict_message(key, value),
            })
        })
        .collect()
}

mod assignment;
mod tunable;
use assignment::{assignment, assignment_under};
pub use assignment::{assignment_strategy, remote_assignor};
pub use tunable::{Tunable, TUNABLE_DEFAULTS};

#[cfg(test)]
mod tests;
