//! DNS label sanitising, as Mesos-DNS `records/labels/labels.go` does it: lower-case,
//! `.` and `_` become `-`, other characters are dropped, leading and trailing hyphens (and,
//! for RFC 952, leading digits) are trimmed, and the label is cut at 63 characters (RFC 1123,
//! the default) or 24 (RFC 952).
//!
//! One deviation: Mesos-DNS can end a cut label with a hyphen when the cut lands inside a
//! run of hyphens; here a final trim guarantees the result is always a valid label (or
//! empty, which callers treat as "no name").

/// Which hostname rules labels follow (Mesos-DNS `EnforceRFC952`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LabelSpec {
    /// RFC 1123: letters, digits and inner hyphens, at most 63 characters.
    #[default]
    Rfc1123,
    /// RFC 952: as RFC 1123 but starting with a letter and at most 24 characters.
    Rfc952,
}

impl LabelSpec {
    /// The longest label this spec allows.
    pub fn max_len(self) -> usize {
        match self {
            LabelSpec::Rfc1123 => 63,
            LabelSpec::Rfc952 => 24,
        }
    }

    /// `name` as one valid label, possibly empty.
    pub fn label(self, name: &str) -> String {
        let mapped: String = name.chars().filter_map(mapping).collect();
        let left: &[char] = match self {
            LabelSpec::Rfc1123 => &['-'],
            LabelSpec::Rfc952 => &['-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9'],
        };
        trim_cut(&mapped, self.max_len(), left)
    }
}

/// `name` split at dots, each part made a label, empty ones dropped, joined with dots
/// (Mesos-DNS `DomainFrag`, used for framework names such as `marathon.prod`).
pub fn domain_frag(name: &str, spec: LabelSpec) -> String {
    name.split('.')
        .map(|part| spec.label(part))
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(".")
}

/// Whether `label` is a valid RFC 1123 label (what every generated label must be).
pub fn is_valid_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn mapping(c: char) -> Option<char> {
    match c {
        'A'..='Z' => Some(c.to_ascii_lowercase()),
        'a'..='z' | '0'..='9' => Some(c),
        '-' | '.' | '_' => Some('-'),
        _ => None,
    }
}

/// Cuts at `max` characters after trimming `left` from the start; hyphens at the cut are
/// dropped and the room they leave is filled from the rest, as Mesos-DNS's `trimCut` does.
fn trim_cut(label: &str, max: usize, left: &[char]) -> String {
    // Every character is ASCII after `mapping`, so byte indices are character indices.
    let trimmed = label.trim_start_matches(left);
    let size = trimmed.len().min(max);
    let head = trimmed[..size].trim_end_matches('-');
    if head.len() == size {
        return head.to_string();
    }
    let tail = trimmed[size..].trim_start_matches('-');
    let room = size - head.len();
    let mut out = head.to_string();
    out.push_str(&tail[..tail.len().min(room)]);
    out.trim_end_matches('-').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn marathon_names_become_mesos_dns_labels() {
        let s = LabelSpec::Rfc1123;
        assert_eq!(s.label("web.prod"), "web-prod");
        assert_eq!(s.label("My_App"), "my-app");
        assert_eq!(s.label("--a$b--"), "ab");
        assert_eq!(s.label("ünïcode"), "ncode");
        assert_eq!(LabelSpec::Rfc952.label("123abc"), "abc");
        assert_eq!(s.label(&"a".repeat(70)).len(), 63);
        assert_eq!(LabelSpec::Rfc952.label(&"b".repeat(30)).len(), 24);
        assert_eq!(domain_frag("Marathon.Prod", s), "marathon.prod");
        assert_eq!(domain_frag("..x..", s), "x");
    }

    #[test]
    fn a_cut_inside_hyphens_is_filled_from_the_rest() {
        // 62 letters, 3 hyphens, "xyz": the cut at 63 lands on a hyphen.
        let name = format!("{}---xyz", "a".repeat(62));
        let l = LabelSpec::Rfc1123.label(&name);
        assert_eq!(l, format!("{}x", "a".repeat(62)));
        // Mesos-DNS would end this one with a hyphen ("aaa" + "d-"); we never do.
        let l = trim_cut("aaa--d-e", 5, &['-']);
        assert_eq!(l, "aaad");
    }

    proptest! {
        #[test]
        fn sanitised_labels_are_always_valid(name in ".{0,200}") {
            for spec in [LabelSpec::Rfc1123, LabelSpec::Rfc952] {
                let l = spec.label(&name);
                prop_assert!(l.is_empty() || is_valid_label(&l), "{l:?}");
                prop_assert!(l.len() <= spec.max_len());
                if spec == LabelSpec::Rfc952 {
                    prop_assert!(l.is_empty() || l.as_bytes()[0].is_ascii_lowercase());
                }
                let frag = domain_frag(&name, spec);
                prop_assert!(frag.split('.').all(|p| frag.is_empty() || is_valid_label(p)));
            }
        }

        #[test]
        fn ascii_names_keep_their_letters(name in "[a-z][a-z0-9]{0,40}") {
            prop_assert_eq!(LabelSpec::Rfc1123.label(&name), name);
        }
    }
}
