//! The arguments and the answer of the append script
//! ([`pulse_buffer::APPEND_BELOW_MARK_SCRIPT`]): which backlog counts it sums and which
//! entries it appends, and whether it did.

use pulse_core::buffer::ENTRY_FIELD;
use redis::Value;

use super::{BufferError, PartitionEntry};

/// What the append script did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Appended {
    /// Every entry of the script is in its stream; the backlog it summed is now `backlog`.
    Yes { backlog: u64 },
    /// Nothing was appended: the summed `backlog` plus the entries would pass the mark.
    Full { backlog: u64 },
}

impl Appended {
    pub(super) fn of(reply: &Value) -> Result<Self, BufferError> {
        let unexpected = || BufferError::Unreachable(format!("the append script answered {reply:?}"));
        let Value::Array(items) = reply else { return Err(unexpected()) };
        match items.as_slice() {
            [Value::Int(done), Value::Int(backlog)] => {
                let backlog = u64::try_from(*backlog).unwrap_or(0);
                Ok(if *done == 1 { Appended::Yes { backlog } } else { Appended::Full { backlog } })
            }
            _ => Err(unexpected()),
        }
    }
}

/// The entries one append script takes, and the backlog keys it sums.
pub(super) struct AppendGroup<'a> {
    pub(super) counted: Vec<String>,
    /// Per entry, the index of its partition's backlog key in `counted`.
    pub(super) slots: Vec<usize>,
    pub(super) entries: Vec<&'a PartitionEntry>,
    pub(super) mark: u64,
}

pub(super) enum ScriptArg<'a> {
    Number(u64),
    Bytes(&'a [u8]),
}

impl<'a> AppendGroup<'a> {
    /// ARGV of [`pulse_buffer::APPEND_BELOW_MARK_SCRIPT`].
    pub(super) fn args(&self) -> Vec<ScriptArg<'a>> {
        let mut args = vec![
            ScriptArg::Number(self.counted.len() as u64),
            ScriptArg::Number(self.mark),
            ScriptArg::Bytes(ENTRY_FIELD.as_bytes()),
        ];
        for (entry, slot) in self.entries.iter().zip(&self.slots) {
            args.push(ScriptArg::Number(*slot as u64 + 1));
            args.push(ScriptArg::Bytes(&entry.payload));
            args.push(ScriptArg::Number(entry.events));
        }
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_name_each_entrys_backlog_key_from_one() {
        let a = PartitionEntry { partition: 3, payload: b"[1]".to_vec(), events: 1 };
        let b = PartitionEntry { partition: 0, payload: b"[2,3]".to_vec(), events: 2 };
        let group = AppendGroup {
            counted: (0..4).map(|p| format!("backlog-{p}")).collect(),
            slots: vec![3, 0],
            entries: vec![&a, &b],
            mark: 120,
        };
        let text: Vec<String> = group
            .args()
            .iter()
            .map(|arg| match arg {
                ScriptArg::Number(n) => n.to_string(),
                ScriptArg::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
            })
            .collect();
        assert_eq!(text, ["4", "120", ENTRY_FIELD, "4", "[1]", "1", "1", "[2,3]", "2"]);
    }

    #[test]
    fn the_answer_says_whether_it_appended() {
        let answer = |done, backlog| Value::Array(vec![Value::Int(done), Value::Int(backlog)]);
        assert_eq!(Appended::of(&answer(1, 30)).expect("read"), Appended::Yes { backlog: 30 });
        assert_eq!(Appended::of(&answer(0, 118)).expect("read"), Appended::Full { backlog: 118 });
        assert!(Appended::of(&Value::Okay).is_err());
    }
}
