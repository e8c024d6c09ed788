//! Topic names, topic filters and matching one against the other (MQTT 3.1.1 section 4.7).

use super::fields::{check_len, check_string};
use super::{Error, Field};

/// Checks a topic name as PUBLISH (or a will) carries it: a non-empty, well-formed string
/// without U+0000 and without the wildcards `+` and `#`.
pub fn check_topic_name(name: &str) -> Result<(), Error> {
    check_name(name.as_bytes(), Field::TopicName).map(|_| ())
}

/// Checks a topic filter as SUBSCRIBE and UNSUBSCRIBE carry it: non-empty, `+` only as a whole
/// level, `#` only as the whole last level.
pub fn check_topic_filter(filter: &str) -> Result<(), Error> {
    check_filter(filter.as_bytes()).map(|_| ())
}

/// Validates raw bytes as a topic name, naming `field` in the error.
#[inline]
pub(crate) fn check_name(raw: &[u8], field: Field) -> Result<&str, Error> {
    check_len(raw.len(), field)?;
    if raw.is_empty() {
        return Err(Error::EmptyTopic(field));
    }
    // One pass for the three bytes that can never appear in a name; UTF-8 checked after.
    if raw.iter().any(|&b| b == b'+' || b == b'#' || b == 0) {
        return Err(if raw.contains(&0) {
            Error::NullCharacter(field)
        } else {
            Error::WildcardInTopicName(field)
        });
    }
    check_string(raw, field)
}

/// Validates raw bytes as a topic filter.
pub(crate) fn check_filter(raw: &[u8]) -> Result<&str, Error> {
    let field = Field::TopicFilter;
    check_len(raw.len(), field)?;
    if raw.is_empty() {
        return Err(Error::EmptyTopic(field));
    }
    let s = check_string(raw, field)?;
    let mut levels = raw.split(|&b| b == b'/').peekable();
    while let Some(level) = levels.next() {
        let is_last = levels.peek().is_none();
        match level {
            b"#" if is_last => {}
            b"+" => {}
            _ if level.iter().any(|&b| b == b'+' || b == b'#') => {
                return Err(Error::InvalidTopicFilter);
            }
            _ => {}
        }
    }
    Ok(s)
}

/// Does the topic name `topic` match the topic filter `filter`?
///
/// Both are assumed valid (see [`check_topic_name`] and [`check_topic_filter`]). A filter that
/// starts with a wildcard does not match a topic that starts with `$` (MQTT-4.7.2-1), so
/// `#` does not see `$SYS/...`.
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut filter_levels = filter.split('/');
    let mut topic_levels = topic.split('/');
    loop {
        match (filter_levels.next(), topic_levels.next()) {
            // "sport/#" matches "sport" as well as everything below it (MQTT 4.7.1.2).
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(f), Some(t)) if f == t => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn test_topic_names() {
        assert_eq!(check_topic_name("a/b/c"), Ok(()));
        assert_eq!(check_topic_name("/"), Ok(()));
        assert_eq!(check_topic_name("$SYS/x"), Ok(()));
        assert_eq!(
            check_topic_name(""),
            Err(Error::EmptyTopic(Field::TopicName))
        );
        assert_eq!(
            check_topic_name("a/+/c"),
            Err(Error::WildcardInTopicName(Field::TopicName))
        );
        assert_eq!(
            check_topic_name("a/#"),
            Err(Error::WildcardInTopicName(Field::TopicName))
        );
        assert_eq!(
            check_topic_name("a\0"),
            Err(Error::NullCharacter(Field::TopicName))
        );
        assert_eq!(
            check_name(&[b'a', 0xFF], Field::WillTopic),
            Err(Error::InvalidUtf8(Field::WillTopic))
        );
    }

    #[test]
    fn test_topic_filters() {
        for ok in [
            "#",
            "+",
            "a/#",
            "+/+",
            "a/+/b",
            "/+",
            "a//b",
            "+/#",
            "sport/tennis/#",
        ] {
            assert_eq!(check_topic_filter(ok), Ok(()), "{ok}");
        }
        for bad in ["a#", "a/#/b", "#/a", "a+", "a/b+/c", "++", "##"] {
            assert_eq!(
                check_topic_filter(bad),
                Err(Error::InvalidTopicFilter),
                "{bad}"
            );
        }
        assert_eq!(
            check_topic_filter(""),
            Err(Error::EmptyTopic(Field::TopicFilter))
        );
        let long = "a".repeat(65_536);
        assert_eq!(
            check_topic_filter(&long),
            Err(Error::FieldTooLong(Field::TopicFilter))
        );
    }

    #[test]
    fn test_matching() {
        let cases = [
            ("sport/tennis/player1/#", "sport/tennis/player1", true),
            (
                "sport/tennis/player1/#",
                "sport/tennis/player1/ranking",
                true,
            ),
            (
                "sport/tennis/player1/#",
                "sport/tennis/player1/score/wimbledon",
                true,
            ),
            ("sport/#", "sport", true),
            ("#", "a/b/c", true),
            ("sport/tennis/+", "sport/tennis/player1", true),
            ("sport/tennis/+", "sport/tennis/player1/ranking", false),
            ("sport/+", "sport", false),
            ("sport/+", "sport/", true),
            ("+/+", "/finance", true),
            ("/+", "/finance", true),
            ("+", "/finance", false),
            ("a/b", "a/b", true),
            ("a/b", "a/b/c", false),
            ("a/b/c", "a/b", false),
            ("#", "$SYS/uptime", false),
            ("+/monitor/Clients", "$SYS/monitor/Clients", false),
            ("$SYS/#", "$SYS/monitor/Clients", true),
            ("$SYS/monitor/+", "$SYS/monitor/Clients", true),
        ];
        for (filter, topic, expected) in cases {
            assert_eq!(
                topic_matches(filter, topic),
                expected,
                "{filter} vs {topic}"
            );
        }
    }
}
