//! Reading Redis's persistence settings and state from its replies, and judging them
//! against strict durability: pure functions, so the rules are tested without a server.

use redis::Value;

/// The settings strict durability needs on every master, read with every strict write.
pub(crate) const STRICT_SETTINGS: [(&str, &str); 2] = [("appendonly", "yes"), ("appendfsync", "always")];

/// (name, value) pairs of a CONFIG GET reply, from one server or every master of a cluster.
/// Node addresses may be interleaved as map keys, so only names starting with `prefix`
/// (and without a `:`) count.
pub(crate) fn config_pairs(reply: &Value, prefix: &str) -> Vec<(String, String)> {
    let mut strings = Vec::new();
    flatten_strings(reply, &mut strings);
    let mut pairs = Vec::new();
    let mut i = 0;
    while i + 1 < strings.len() {
        if strings[i].starts_with(prefix) && !strings[i].contains(':') {
            pairs.push((strings[i].clone(), strings[i + 1].clone()));
            i += 2;
        } else {
            i += 1;
        }
    }
    pairs
}

/// Whether `name` is set, and to `wanted` everywhere (every master of a cluster).
pub(crate) fn all_equal(settings: &[(String, String)], name: &str, wanted: &str) -> bool {
    let mut values = settings.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).peekable();
    values.peek().is_some() && values.all(|v| v == wanted)
}

/// Strict durability's condition on the settings read, or the reason to refuse.
pub(crate) fn strict_settings_hold(settings: &[(String, String)]) -> Result<(), String> {
    let weaker: Vec<String> = STRICT_SETTINGS
        .iter()
        .filter(|(name, wanted)| !all_equal(settings, name, wanted))
        .map(|(name, wanted)| {
            let found: Vec<&str> =
                settings.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect();
            let found = if found.is_empty() { "unknown".to_string() } else { found.join("/") };
            format!("{name} is {found} instead of {wanted}")
        })
        .collect();
    if weaker.is_empty() {
        return Ok(());
    }
    Err(format!(
        "strict durability needs Redis with appendonly yes and appendfsync always (on every master); \
         {}, so nothing is acknowledged",
        weaker.join(" and ")
    ))
}

/// Judges `INFO persistence` replies (one per master): after `CONFIG SET appendonly yes`
/// Redis writes new entries to a temporary file until its first AOF rewrite finishes, and a
/// crash before then loses them; a failed AOF write means nothing new is on disk.
pub(crate) fn aof_settled(reply: &Value) -> Result<(), String> {
    let mut sections = Vec::new();
    flatten_strings(reply, &mut sections);
    let field_is = |name: &str, wanted: &str| {
        sections
            .iter()
            .all(|section| section.lines().filter_map(|l| l.trim().strip_prefix(name)).all(|v| v == wanted))
    };
    if !field_is("aof_rewrite_in_progress:", "0") || !field_is("aof_rewrite_scheduled:", "0") {
        return Err("strict durability waits for Redis to finish rewriting its append-only file, \
                    so nothing is acknowledged"
            .to_string());
    }
    if !field_is("aof_last_write_status:", "ok") {
        return Err("Redis failed to write its append-only file, so nothing is acknowledged".to_string());
    }
    Ok(())
}

fn flatten_strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::BulkString(bytes) => out.push(String::from_utf8_lossy(bytes).into_owned()),
        Value::SimpleString(s) => out.push(s.clone()),
        Value::VerbatimString { text, .. } => out.push(text.clone()),
        Value::Array(items) | Value::Set(items) => items.iter().for_each(|v| flatten_strings(v, out)),
        Value::Map(pairs) => pairs.iter().for_each(|(k, v)| {
            flatten_strings(k, out);
            flatten_strings(v, out);
        }),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn reply(pairs: &[(&str, &str)]) -> Value {
        Value::Array(pairs.iter().flat_map(|(k, v)| [bulk(k), bulk(v)]).collect())
    }

    #[test]
    fn strict_needs_appendonly_yes_and_fsync_always_everywhere() {
        let good = reply(&[("appendonly", "yes"), ("appendfsync", "always")]);
        assert!(strict_settings_hold(&config_pairs(&good, "append")).is_ok());

        let everysec = reply(&[("appendonly", "yes"), ("appendfsync", "everysec")]);
        let why = strict_settings_hold(&config_pairs(&everysec, "append")).expect_err("everysec is refused");
        assert!(why.contains("appendfsync is everysec instead of always"), "{why}");

        assert!(strict_settings_hold(&[]).expect_err("unknown is refused").contains("appendonly is unknown"));
    }

    #[test]
    fn one_weak_master_of_a_cluster_is_enough_to_refuse() {
        let cluster = Value::Map(vec![
            (bulk("127.0.0.1:7000"), reply(&[("appendonly", "yes"), ("appendfsync", "always")])),
            (bulk("127.0.0.1:7001"), reply(&[("appendonly", "no"), ("appendfsync", "always")])),
        ]);
        let settings = config_pairs(&cluster, "append");
        assert_eq!(settings.len(), 4, "node addresses are not settings: {settings:?}");
        assert!(
            strict_settings_hold(&settings)
                .expect_err("one weak master is refused")
                .contains("appendonly is yes/no")
        );
    }

    #[test]
    fn a_rewrite_or_a_failed_write_is_not_settled() {
        let info = |rewrite: &str, status: &str| {
            bulk(&format!(
                "# Persistence\r\naof_enabled:1\r\naof_rewrite_in_progress:{rewrite}\r\n\
                 aof_rewrite_scheduled:0\r\naof_last_write_status:{status}\r\n"
            ))
        };
        assert!(aof_settled(&info("0", "ok")).is_ok());
        assert!(aof_settled(&info("1", "ok")).is_err());
        assert!(aof_settled(&info("0", "err")).is_err());
    }
}
