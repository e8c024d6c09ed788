//! Topic names, topic filters and matching one against the other (MQTT 3.1.1 section 4.7).

use super::fields::{any_byte, check_len, check_no_null, check_string, utf8};
use super::{Error, Field};

/// Checks a topic name as PUBLISH (or a will) carries it: a non-empty, well-formed string
/// without U+0000 and without the wildcards `+` and `#`.
pub fn check_topic_name(name: &str) -> Result<(), Error> {
    check_name_str(name, Field::TopicName)
}

/// Checks a topic filter as SUBSCRIBE and UNSUBSCRIBE carry it: non-empty, `+` only as a whole
/// level, `#` only as the whole last level.
pub fn check_topic_filter(filter: &str) -> Result<(), Error> {
    check_filter_str(filter)
}

/// The rules of a topic name that are about its bytes: length, not empty, no `+`, `#` or
/// U+0000. UTF-8 is left to the caller.
#[inline(always)]
fn check_name_bytes(raw: &[u8], field: Field) -> Result<(), Error> {
    check_len(raw.len(), field)?;
    if raw.is_empty() {
        return Err(Error::EmptyTopic(field));
    }
    if cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
        name_bytes_vector(raw, field)
    } else {
        name_bytes_loop(raw, field)
    }
}

/// No `+`, `#` or U+0000, with U+0000 reported before a wildcard wherever each is: one vector
/// scan for the three bytes, and which of them it was is worked out only for a name that is
/// refused. For the hosts.
#[inline(always)]
fn name_bytes_vector(raw: &[u8], field: Field) -> Result<(), Error> {
    if any_byte(raw, |b| (b == b'+') | (b == b'#') | (b == 0)) {
        return Err(if raw.contains(&0) {
            Error::NullCharacter(field)
        } else {
            Error::WildcardInTopicName(field)
        });
    }
    Ok(())
}

/// [`name_bytes_vector`]'s answer from one byte loop, for an MCU: there `any_byte` is a byte
/// loop already, and `contains` would be a second scan through `memchr`, which the client
/// links for nothing else.
#[inline(always)]
fn name_bytes_loop(raw: &[u8], field: Field) -> Result<(), Error> {
    let mut wildcard = false;
    for &b in raw {
        if b == 0 {
            return Err(Error::NullCharacter(field));
        }
        wildcard |= (b == b'+') | (b == b'#');
    }
    if wildcard {
        Err(Error::WildcardInTopicName(field))
    } else {
        Ok(())
    }
}

/// Validates raw bytes as a topic name, naming `field` in the error.
#[inline(always)]
pub(crate) fn check_name(raw: &[u8], field: Field) -> Result<&str, Error> {
    check_name_bytes(raw, field)?;
    // Zero bytes are excluded already, so of `check_string` only the UTF-8 rule is left.
    utf8(raw).ok_or(Error::InvalidUtf8(field))
}

/// [`check_name`] for a topic that is a `str` already, so well-formed UTF-8 by its type.
#[inline]
pub(crate) fn check_name_str(name: &str, field: Field) -> Result<(), Error> {
    check_name_bytes(name.as_bytes(), field)
}

/// Validates raw bytes as a topic filter.
#[inline]
pub(crate) fn check_filter(raw: &[u8]) -> Result<&str, Error> {
    let field = Field::TopicFilter;
    check_len(raw.len(), field)?;
    if raw.is_empty() {
        return Err(Error::EmptyTopic(field));
    }
    let s = check_string(raw, field)?;
    check_filter_levels(raw)?;
    Ok(s)
}

/// [`check_filter`] for a filter that is a `str` already: the same rules in the same order,
/// without validating UTF-8 again.
#[inline]
pub(crate) fn check_filter_str(filter: &str) -> Result<(), Error> {
    let field = Field::TopicFilter;
    check_len(filter.len(), field)?;
    if filter.is_empty() {
        return Err(Error::EmptyTopic(field));
    }
    check_no_null(filter, field)?;
    check_filter_levels(filter.as_bytes())
}

/// `+` only as a whole level, `#` only as the whole last level.
#[inline]
fn check_filter_levels(raw: &[u8]) -> Result<(), Error> {
    // Most filters have no wildcard at all: one vector scan settles them.
    if !any_byte(raw, |b| (b == b'+') | (b == b'#')) {
        return Ok(());
    }
    // A wildcard is a whole level when a separator (or the start) comes before it and a
    // separator (or the end) after it, and `#` must be the last byte. All three are rules about
    // neighbouring bytes, so one branch-free pass over the pairs checks them.
    let wild = |b: u8| (b == b'+') | (b == b'#');
    let (Some((_, next)), Some((_, this))) = (raw.split_first(), raw.split_last()) else {
        return Ok(());
    };
    let ok = this.iter().zip(next).fold(true, |ok, (&x, &y)| {
        ok & (x != b'#') & (!wild(y) | (x == b'/')) & (!wild(x) | (y == b'/'))
    });
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidTopicFilter)
    }
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

    /// The level rule as the specification words it: split at `/`, then look at each level.
    fn levels_by_split(raw: &[u8]) -> Result<(), Error> {
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
        Ok(())
    }

    proptest::proptest! {
        #[test]
        fn test_name_bytes_loop_agrees_with_vector(
            raw in proptest::collection::vec(proptest::sample::select(&b"a/+#\0\xC3"[..]), 0..40)
        ) {
            // The MCU's loop is compiled out of the host's check_name; this keeps it honest.
            proptest::prop_assert_eq!(
                name_bytes_loop(&raw, Field::WillTopic),
                name_bytes_vector(&raw, Field::WillTopic)
            );
        }

        #[test]
        fn test_filter_levels_agree_with_split(raw in "[a/+#]{0,12}") {
            proptest::prop_assert_eq!(
                check_filter_levels(raw.as_bytes()),
                levels_by_split(raw.as_bytes()),
                "{}", raw
            );
        }
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
