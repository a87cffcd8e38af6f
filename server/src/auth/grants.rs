//! Grants: actions on topic-name patterns, optionally limited to named
//! subscriptions, and the question every request asks of them — may this
//! principal do this action on this topic (and subscription)?

use std::fmt;

use serde::Deserialize;

/// What a request does. `admin` implies every other action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Append messages (HTTP produce, publish socket).
    Produce,
    /// Read and consume: read, tail, pull, ack, nack, extend, subscribe socket.
    Consume,
    /// Change subscriptions: create, update, delete, seek, redrive.
    Manage,
    /// Everything, topics included.
    Admin,
    /// Scrape `/metrics` when it is protected.
    Metrics,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Produce => "produce",
            Action::Consume => "consume",
            Action::Manage => "manage",
            Action::Admin => "admin",
            Action::Metrics => "metrics",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which topics a grant covers: `*`, `prefix.*` (names starting with
/// `prefix.`) or one exact name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicPattern {
    Any,
    Prefix(String),
    Exact(String),
}

impl TopicPattern {
    pub fn parse(text: &str) -> Result<TopicPattern, String> {
        if text == "*" {
            return Ok(TopicPattern::Any);
        }
        let (name, prefix) = match text.strip_suffix('*') {
            Some(head) => (head.trim_end_matches('.'), true),
            None => (text, false),
        };
        if !weir_protocol::names::is_valid_name(name) {
            return Err(format!(
                "`{text}` is not a topic pattern: use `*`, `prefix.*` or a topic name"
            ));
        }
        Ok(if prefix {
            TopicPattern::Prefix(text.trim_end_matches('*').to_owned())
        } else {
            TopicPattern::Exact(name.to_owned())
        })
    }

    pub fn matches(&self, topic: &str) -> bool {
        match self {
            TopicPattern::Any => true,
            TopicPattern::Prefix(prefix) => topic.starts_with(prefix.as_str()),
            TopicPattern::Exact(name) => name == topic,
        }
    }

    /// True when the pattern names `topic` itself rather than everything.
    pub fn names(&self, topic: &str) -> bool {
        !matches!(self, TopicPattern::Any) && self.matches(topic)
    }
}

/// One grant: these actions on these topics (and, for `consume` and
/// `manage`, only these subscriptions when listed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub actions: Vec<Action>,
    pub topics: TopicPattern,
    pub subscriptions: Option<Vec<String>>,
}

/// A grant as written in a tokens file or a JWT claim.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantSpec {
    pub actions: Vec<Action>,
    pub topics: String,
    #[serde(default)]
    pub subscriptions: Option<Vec<String>>,
}

impl GrantSpec {
    pub fn compile(self) -> Result<Grant, String> {
        if self.actions.is_empty() {
            return Err("a grant needs at least one action".into());
        }
        Ok(Grant {
            actions: self.actions,
            topics: TopicPattern::parse(&self.topics)?,
            subscriptions: self.subscriptions,
        })
    }
}

impl Grant {
    fn allows(&self, action: Action, topic: &str, subscription: Option<&str>) -> bool {
        let acts = self.actions.contains(&Action::Admin) || self.actions.contains(&action);
        if !acts || !self.topics.matches(topic) {
            return false;
        }
        match (&self.subscriptions, subscription) {
            (Some(allowed), Some(sub)) => allowed.iter().any(|s| s == sub),
            _ => true,
        }
    }
}

/// Asks every grant of a principal. `dead_letter_sources` names the topics
/// whose subscriptions dead-letter into `topic`: unless some grant names
/// `topic` itself, their grants apply to it too.
pub fn allowed(
    grants: &[Grant],
    action: Action,
    topic: &str,
    subscription: Option<&str>,
    dead_letter_sources: impl FnOnce() -> Vec<String>,
) -> bool {
    if grants.iter().any(|g| g.allows(action, topic, subscription)) {
        return true;
    }
    if grants.iter().any(|g| g.topics.names(topic)) {
        return false;
    }
    dead_letter_sources()
        .iter()
        .any(|source| grants.iter().any(|g| g.allows(action, source, None)))
}

/// True when the principal may do anything at all with `topic` (it sees
/// the topic in lists and may describe it).
pub fn sees_topic(
    grants: &[Grant],
    topic: &str,
    dead_letter_sources: impl Fn() -> Vec<String>,
) -> bool {
    // The sources are looked up at most once for the four questions.
    let sources = std::cell::OnceCell::new();
    [
        Action::Produce,
        Action::Consume,
        Action::Manage,
        Action::Admin,
    ]
    .into_iter()
    .any(|a| {
        allowed(grants, a, topic, None, || {
            sources.get_or_init(&dead_letter_sources).clone()
        })
    })
}

/// True when the principal may see `subscription` of `topic`.
pub fn sees_subscription(grants: &[Grant], topic: &str, subscription: &str) -> bool {
    [Action::Consume, Action::Manage].into_iter().any(|a| {
        grants
            .iter()
            .any(|g| g.allows(a, topic, Some(subscription)))
    })
}

/// True when the grants allow `action` somewhere, whatever the topic
/// (`/metrics` needs `metrics` or `admin` on any topic pattern).
pub fn has_action(grants: &[Grant], action: Action) -> bool {
    grants
        .iter()
        .any(|g| g.actions.contains(&action) || g.actions.contains(&Action::Admin))
}

/// True when some grant gives `admin` on every topic (`topics = "*"`):
/// what server-wide operations (backups) need.
pub fn admin_everywhere(grants: &[Grant]) -> bool {
    grants
        .iter()
        .any(|g| g.actions.contains(&Action::Admin) && g.topics == TopicPattern::Any)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn grant(actions: &[Action], topics: &str, subs: Option<&[&str]>) -> Grant {
        GrantSpec {
            actions: actions.to_vec(),
            topics: topics.into(),
            subscriptions: subs.map(|s| s.iter().map(|x| x.to_string()).collect()),
        }
        .compile()
        .unwrap()
    }

    #[test]
    fn patterns_match_exact_prefix_and_any() {
        assert!(TopicPattern::parse("orders.*")
            .unwrap()
            .matches("orders.eu"));
        assert!(!TopicPattern::parse("orders.*").unwrap().matches("orders"));
        assert!(!TopicPattern::parse("orders.*").unwrap().matches("ordersx"));
        assert!(TopicPattern::parse("orders").unwrap().matches("orders"));
        assert!(!TopicPattern::parse("orders").unwrap().matches("orders.eu"));
        assert!(TopicPattern::parse("*").unwrap().matches("x"));
        assert!(TopicPattern::parse("a b").is_err());
        assert!(TopicPattern::parse("").is_err());
    }

    #[test]
    fn actions_topics_and_subscriptions_are_checked() {
        let none = Vec::new;
        let g = vec![
            grant(&[Action::Produce], "orders.*", None),
            grant(&[Action::Consume], "orders.*", Some(&["billing"])),
        ];
        assert!(allowed(&g, Action::Produce, "orders.eu", None, none));
        assert!(!allowed(&g, Action::Produce, "payments", None, none));
        assert!(allowed(
            &g,
            Action::Consume,
            "orders.eu",
            Some("billing"),
            none
        ));
        assert!(!allowed(
            &g,
            Action::Consume,
            "orders.eu",
            Some("audit"),
            none
        ));
        assert!(!allowed(
            &g,
            Action::Manage,
            "orders.eu",
            Some("billing"),
            none
        ));
        let admin = vec![grant(&[Action::Admin], "*", None)];
        assert!(allowed(&admin, Action::Manage, "x", Some("y"), none));
        assert!(has_action(&admin, Action::Metrics));
        assert!(!has_action(&g, Action::Metrics));
    }

    #[test]
    fn dead_letter_topics_follow_their_source_unless_named() {
        let g = vec![grant(&[Action::Consume], "orders", None)];
        let sources = || vec!["orders".to_owned()];
        assert!(allowed(&g, Action::Consume, "dlq-1", None, sources));
        assert!(!allowed(&g, Action::Produce, "dlq-1", None, sources));
        // A grant naming the dead-letter topic decides alone.
        let named = vec![
            grant(&[Action::Consume], "orders", None),
            grant(&[Action::Produce], "dlq-1", None),
        ];
        assert!(!allowed(&named, Action::Consume, "dlq-1", None, sources));
        assert!(allowed(&named, Action::Produce, "dlq-1", None, sources));
    }
}
