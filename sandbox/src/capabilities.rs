//! Capability names as runc reads them, for specs and exec processes.

/// Keeps, in each capability set of `sets`, only the names runc grants:
/// `CAP_` and a capability's name in ASCII capitals, exactly. runc ignores any
/// other name with a warning. oci-spec would take `SYS_ADMIN`,
/// `cap_sys_admin` and `CAP_CAP_SYS_ADMIN` (what CRI makes of a pod that
/// asks for `CAP_SYS_ADMIN`) as CAP_SYS_ADMIN, and refuse a name it does
/// not know: berth grants neither more nor less than runc would. Returns
/// the names taken out.
pub(crate) fn runc_names(sets: &mut serde_json::Value) -> Vec<String> {
    let known = |name: &str| {
        name.strip_prefix("CAP_").is_some_and(|rest| {
            // oci-spec folds Unicode case too (`ſ` is S to it).
            !rest.starts_with("CAP_")
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
                && serde_json::from_value::<oci_spec::runtime::Capability>(name.into()).is_ok()
        })
    };
    let mut dropped = Vec::new();
    let Some(sets) = sets.as_object_mut() else {
        return dropped;
    };
    for set in sets.values_mut() {
        if let Some(names) = set.as_array_mut() {
            names.retain(|n| match n.as_str() {
                Some(name) if known(name) => true,
                Some(name) => {
                    if !dropped.iter().any(|d| d == name) {
                        dropped.push(name.to_string());
                    }
                    false
                }
                // Not a string: left for the parser to name.
                None => true,
            });
        }
    }
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_exact_ascii_names_are_kept() {
        let mut sets =
            serde_json::json!({"ambient": ["CAP_SYS_ADMIN", "sys_admin", "CAP_\u{17f}YS_ADMIN"]});
        assert_eq!(runc_names(&mut sets), ["sys_admin", "CAP_\u{17f}YS_ADMIN"]);
        assert_eq!(sets, serde_json::json!({"ambient": ["CAP_SYS_ADMIN"]}));
    }
}
