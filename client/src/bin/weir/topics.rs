//! `weir topics`: create, update, list, describe and delete topics.
//!
//! The server's `PUT` creates or updates; the CLI keeps the two apart so
//! that a typo in `create` never changes an existing topic: `create` fails
//! on an existing topic (unless `--if-not-exists`, which leaves it as it
//! is), and `update` fails on a missing one. Growing the partitions is an
//! `update`, with a warning: keys hash to new partitions from then on.

use clap::{Args, Subcommand};
use weir_client::{Client, Error, ErrorCode, Problem, Retention, TopicInfo, TopicSpec};

use super::output::{errln, Printer};

#[derive(Subcommand)]
pub enum TopicsCommand {
    /// Create a topic. Fails if it exists (see --if-not-exists); change an
    /// existing topic with `weir topics update`.
    Create {
        /// Name of the new topic.
        topic: String,
        #[command(flatten)]
        settings: TopicSettings,
        /// Succeed without changing anything when the topic exists already.
        #[arg(long)]
        if_not_exists: bool,
    },
    /// Change a topic's settings: partitions (grow only; keys re-map),
    /// retention, message size limit, dedupe window.
    Update {
        /// Name of the topic to change.
        topic: String,
        #[command(flatten)]
        settings: TopicSettings,
    },
    /// List topics with their partitions, messages and bytes.
    List,
    /// Describe a topic: settings and per-partition offsets.
    Describe {
        /// Name of the topic.
        topic: String,
    },
    /// Delete a topic and its data.
    Delete {
        /// Name of the topic.
        topic: String,
    },
}

#[derive(Args, Default)]
pub struct TopicSettings {
    /// Number of partitions, 1..=1024 (server default: 1). Can grow, never
    /// shrink.
    #[arg(long)]
    partitions: Option<u32>,
    /// Retention: remove messages older than this, in ms (server default:
    /// 7 days). With `create`, retention limits not given are unlimited once
    /// one is given; with `update`, they keep their value.
    #[arg(long)]
    retention_ms: Option<u64>,
    /// Retention: keep at most this many bytes per partition.
    #[arg(long)]
    retention_bytes: Option<u64>,
    /// Retention: keep at most this many messages per partition.
    #[arg(long)]
    retention_messages: Option<u64>,
    /// Largest accepted message (value + key + headers), in bytes.
    #[arg(long)]
    max_message_bytes: Option<u32>,
    /// How long an idempotency `id` is remembered, in ms.
    #[arg(long)]
    dedupe_window_ms: Option<u64>,
    /// Copies of every partition on distinct nodes, 1..=7 (server default:
    /// 3 in a cluster, 1 alone). Fixed at creation.
    #[arg(long)]
    replication_factor: Option<u32>,
}

impl TopicSettings {
    fn any(&self) -> bool {
        self.partitions.is_some()
            || self.changes_retention()
            || self.max_message_bytes.is_some()
            || self.dedupe_window_ms.is_some()
            || self.replication_factor.is_some()
    }

    fn changes_retention(&self) -> bool {
        self.retention_ms.is_some()
            || self.retention_bytes.is_some()
            || self.retention_messages.is_some()
    }

    /// The request body; retention flags override `current` field by field
    /// (`None` on creation: limits not given are unlimited).
    fn spec(&self, current: Option<&Retention>) -> TopicSpec {
        let retention = self.changes_retention().then(|| {
            let base = current.cloned().unwrap_or_default();
            Retention {
                max_age_ms: self.retention_ms.or(base.max_age_ms),
                max_bytes: self.retention_bytes.or(base.max_bytes),
                max_messages: self.retention_messages.or(base.max_messages),
            }
        });
        TopicSpec {
            partitions: self.partitions,
            retention,
            max_message_bytes: self.max_message_bytes,
            dedupe_window_ms: self.dedupe_window_ms,
            replication_factor: self.replication_factor,
        }
    }
}

pub async fn run(command: TopicsCommand, client: &Client, printer: &Printer) -> Result<(), Error> {
    match command {
        TopicsCommand::Create {
            topic,
            settings,
            if_not_exists,
        } => {
            if let Some(existing) = find(client, &topic).await? {
                if if_not_exists {
                    printer.note(&format!("topic {topic} exists already; left unchanged"));
                    printer.topic(&existing);
                    return Ok(());
                }
                return Err(exists(&existing));
            }
            printer.topic(&client.create_topic(&topic, &settings.spec(None)).await?);
        }
        TopicsCommand::Update { topic, settings } => {
            if !settings.any() {
                return Err(Error::Local(
                    "nothing to update: give --partitions, --retention-ms, --retention-bytes, \
                     --retention-messages, --max-message-bytes or --dedupe-window-ms"
                        .into(),
                ));
            }
            // `PUT` would create a missing topic: look first.
            let current = client.topic(&topic).await?;
            if let Some(partitions) = settings.partitions {
                let now = current.config.partitions;
                if partitions > now {
                    errln!(
                        "weir: growing topic {topic} from {now} to {partitions} partitions: keys \
                         re-map, so new messages of a key may go to another partition than its \
                         earlier ones (per-key order across the change is not kept)"
                    );
                }
            }
            let spec = settings.spec(Some(&current.config.retention));
            printer.topic(&client.create_topic(&topic, &spec).await?);
        }
        TopicsCommand::List => printer.topics(&client.topics().await?),
        TopicsCommand::Describe { topic } => printer.topic(&client.topic(&topic).await?),
        TopicsCommand::Delete { topic } => {
            client.delete_topic(&topic).await?;
            printer.done(&format!("deleted topic {topic}"));
        }
    }
    Ok(())
}

/// The topic, or `None` when it does not exist.
async fn find(client: &Client, topic: &str) -> Result<Option<TopicInfo>, Error> {
    match client.topic(topic).await {
        Ok(info) => Ok(Some(info)),
        Err(e) if e.code() == Some(ErrorCode::TopicNotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The refusal of `create` on an existing topic: a `conflict`, as the
/// server would answer.
fn exists(existing: &TopicInfo) -> Error {
    let name = &existing.name;
    Error::Api(Problem::new(
        ErrorCode::Conflict,
        format!(
            "topic `{name}` exists already ({} partitions); change its settings with \
             `weir topics update {name}`, or pass --if-not-exists",
            existing.config.partitions
        ),
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: TopicsCommand,
    }

    fn settings(args: &[&str]) -> TopicSettings {
        let argv = ["weir", "update", "orders"].iter().chain(args);
        match Cli::try_parse_from(argv).unwrap().command {
            TopicsCommand::Update { settings, .. } => settings,
            _ => unreachable!("parsed an update"),
        }
    }

    #[test]
    fn retention_flags_merge_with_the_current_retention() {
        let current = Retention {
            max_age_ms: Some(1000),
            max_bytes: Some(2000),
            max_messages: None,
        };
        let spec = settings(&["--retention-messages", "5"]).spec(Some(&current));
        assert_eq!(
            spec.retention,
            Some(Retention {
                max_age_ms: Some(1000),
                max_bytes: Some(2000),
                max_messages: Some(5),
            })
        );
        let spec = settings(&["--retention-ms", "7"]).spec(None);
        assert_eq!(
            spec.retention,
            Some(Retention {
                max_age_ms: Some(7),
                ..Retention::default()
            })
        );
        let spec = settings(&["--partitions", "6"]).spec(Some(&current));
        assert_eq!((spec.partitions, spec.retention), (Some(6), None));
        assert!(!settings(&[]).any());
    }
}
