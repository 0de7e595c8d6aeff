//! How partitions are assigned under each consumer group protocol, and what that protocol lets
//! `[kafka.properties]` say.

use super::{aliases_of, Client, Need, Required};
use crate::{GroupProtocol, Job};

/// The partition assignment strategy weir uses for a job: `range` when a task reads partition p
/// of more than one topic (several input topics, or the input and its repartition topic), since
/// the range assignor gives one member partition p of all co-partitioned topics;
/// `cooperative-sticky` otherwise, which moves only the partitions that must move.
pub fn assignment_strategy(job: &Job) -> &'static str {
    let topics = job.source.topics.len() + usize::from(job.repartition_topic().is_some());
    if topics > 1 {
        "range"
    } else {
        "cooperative-sticky"
    }
}

/// The server-side assignor weir asks for under the consumer group protocol (KIP-848): `range`
/// when a task reads partition p of more than one topic (the coordinator's range assignor gives
/// one member partition p of every co-partitioned topic), `uniform` otherwise. Both are sticky.
pub fn remote_assignor(job: &Job) -> &'static str {
    if assignment_strategy(job) == "range" {
        "range"
    } else {
        "uniform"
    }
}

/// The group protocol and how partitions are assigned under it. The protocol the file names (or
/// `classic`) decides what `[kafka.properties]` may say; a `WEIR_GROUP_PROTOCOL` given at run
/// time is checked again when the worker starts (`conflicts_under`).
pub(super) fn assignment(job: &Job) -> Vec<Required> {
    assignment_under(job, job.runtime.group_protocol.unwrap_or_default())
}

pub(super) fn assignment_under(job: &Job, protocol: GroupProtocol) -> Vec<Required> {
    let tasks = "weir's tasks (partition p of every topic a task reads goes to the same member)";
    let protocol_need = match job.runtime.group_protocol {
        Some(p) => Need::Exact(p.name().to_string(), "runtime.group_protocol"),
        None => Need::AtRunTime("WEIR_GROUP_PROTOCOL or runtime.group_protocol"),
    };
    let mut all = vec![Required {
        name: "group.protocol",
        aliases: &[],
        client: Client::Consumer,
        need: protocol_need,
        why: "the consumer group protocol, which decides how weir assigns and times sessions",
        set_by_weir: true,
        instead: Some("set runtime.group_protocol (or WEIR_GROUP_PROTOCOL) instead"),
    }];
    match protocol {
        GroupProtocol::Classic => all.push(Required {
            name: "partition.assignment.strategy",
            aliases: aliases_of("partition.assignment.strategy"),
            client: Client::Consumer,
            need: Need::Exact(
                assignment_strategy(job).to_string(),
                "for this job's input topics",
            ),
            why: tasks,
            set_by_weir: true,
            instead: None,
        }),
        GroupProtocol::Consumer => {
            all.push(Required {
                name: "group.remote.assignor",
                aliases: &[],
                client: Client::Consumer,
                need: Need::Exact(
                    remote_assignor(job).to_string(),
                    "for this job's input topics",
                ),
                why: tasks,
                set_by_weir: true,
                instead: None,
            });
            let broker = "set the broker's group.consumer.session.timeout.ms / group.consumer.heartbeat.interval.ms instead, or use group_protocol = \"classic\"";
            for (name, instead) in [
                (
                    "partition.assignment.strategy",
                    "weir sets group.remote.assignor instead; or use group_protocol = \"classic\"",
                ),
                ("session.timeout.ms", broker),
                ("heartbeat.interval.ms", broker),
            ] {
                all.push(Required {
                    name,
                    aliases: &[],
                    client: Client::Consumer,
                    need: Need::Unset,
                    why: "the consumer group protocol (KIP-848), under which the coordinator assigns and the broker's group.consumer.* settings time sessions",
                    set_by_weir: false,
                    instead: Some(instead),
                });
            }
        }
    }
    all
}
